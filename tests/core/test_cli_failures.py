"""The CLI when things go wrong: missing folders, failed first runs, ports in use, bad options.

Each gets one clear line (or a report and a documented exit status), the work that can go on goes on, and
nothing already stored is lost or left half made.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


@pytest.fixture
def folders(tmp_path, scenes) -> tuple[Path, Path, list[str]]:
    """Two photo folders of three scenes each, and the names of a few scenes left over."""
    source, records = scenes
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, chunk in ((a, records[:3]), (b, records[3:6])):
        folder.mkdir()
        for record in chunk:
            shutil.copy2(source / record["file"], folder / record["file"])
    return a, b, [r["file"] for r in records[6:9]]


def index_json(*args) -> tuple[int, dict]:
    result = run("index", *args, "--json")
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip().startswith("{") else result.output


def add_scene(scenes, name: str, folder: Path) -> None:
    shutil.copy2(scenes[0] / name, folder / name)


def test_index_without_folders_refreshes_every_folder_the_index_knows(tmp_path, folders, scenes):
    a, b, spare = folders
    index = tmp_path / "index"
    code, report = index_json(a, b, "--index", index, "--model", "clipsearch-tiny")
    assert code == 0 and report["indexed"] == 6
    add_scene(scenes, spare[0], b)
    next(a.iterdir()).unlink()
    code, report = index_json("--index", index)
    assert code == 0, report
    assert (report["indexed"], report["removed"], report["unchanged"]) == (1, 1, 5)


def test_a_missing_folder_does_not_stop_the_others_and_keeps_its_files(tmp_path, folders, scenes):
    a, b, spare = folders
    index = tmp_path / "index"
    assert index_json(a, b, "--index", index, "--model", "clipsearch-tiny")[0] == 0
    a.rename(tmp_path / "a-unplugged")  # the drive holding a/ is unplugged
    add_scene(scenes, spare[0], b)
    code, report = index_json(a, b, tmp_path / "typo", "--index", index)
    assert code == 3, report
    assert report["indexed"] == 1 and report["removed"] == 0
    assert set(report["missing_roots"]) == {str(a), str(tmp_path / "typo")}
    text = run("index", "--index", index)
    assert text.exit_code == 3 and f"folder not available (nothing under it was removed): {a}" in text.output

    status = run("status", "--index", index)
    assert status.exit_code == 0
    line = next(line for line in status.output.splitlines() if line.startswith("root:") and str(a) in line)
    assert line.endswith("(missing: not there, unreadable or empty; an unplugged drive? its files are kept)")
    assert f"root:    {b}\n" in status.output  # b/ is there: not marked
    listing = json.loads(run("status", "--index", index, "--json").stdout)
    assert listing["missing_roots"] == [str(a)] and listing["files"] == 7

    (tmp_path / "a-unplugged").rename(a)  # plugged in again: its files were kept, nothing is re-embedded
    code, report = index_json("--index", index)
    assert code == 0 and (report["indexed"], report["unchanged"], report["missing_roots"]) == (0, 7, [])


def test_when_no_folder_given_is_there_the_run_fails_and_a_new_index_is_not_left_behind(tmp_path):
    result = run("index", tmp_path / "nowhere", tmp_path / "neither", "--index", tmp_path / "new",
                 "--model", "clipsearch-tiny")
    assert result.exit_code == 1 and "not a folder" in result.output
    assert not (tmp_path / "new").exists()


def test_a_first_run_whose_model_cannot_load_leaves_no_index_behind(tmp_path, folders, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))  # whatever this machine has
    a, _, _ = folders
    result = run("index", a, "--index", tmp_path / "new", "--model", "ViT-B-32")  # offline: no weights
    assert result.exit_code == 1 and "could not be downloaded" in result.output
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made for the index stays, empty
    assert run("index", a, "--index", tmp_path / "mine", "--model", "ViT-B-32").exit_code == 1
    assert list((tmp_path / "mine").iterdir()) == []
    status = run("status", "--index", tmp_path / "new")
    assert status.exit_code == 1 and "no index at" in status.output


def test_a_failed_run_of_an_existing_index_keeps_everything(tmp_path, folders):
    a, _, _ = folders
    index = tmp_path / "index"
    assert index_json(a, "--index", index, "--model", "clipsearch-tiny")[0] == 0
    assert run("index", tmp_path / "nowhere", "--index", index).exit_code == 1
    assert json.loads(run("status", "--index", index, "--json").stdout)["files"] == 3


def test_refreshing_an_index_that_does_not_exist_creates_nothing(tmp_path):
    result = run("index", "--index", tmp_path / "new")
    assert result.exit_code == 1 and "no index at" in result.output
    assert not (tmp_path / "new").exists()


def test_status_never_prints_model_none_or_raw_json(tmp_path, folders):
    Library.open(tmp_path / "index", create=True).close()  # an index folder with nothing indexed yet
    empty = run("status", "--index", tmp_path / "index")
    assert empty.exit_code == 0 and "model:   none yet" in empty.output and "None" not in empty.output
    a, _, _ = folders
    assert run("index", a, "--index", tmp_path / "index", "--model", "clipsearch-tiny").exit_code == 0
    status = run("status", "--index", tmp_path / "index")
    last = next(line for line in status.output.splitlines() if line.startswith("last run:"))
    assert "indexed 3" in last and "{" not in last and '"' not in last
    assert "None" not in status.output


def test_the_exit_status_for_a_missing_folder_is_documented():
    help_text = run("index", "--help").output
    assert "3 done, but a folder was missing" in help_text
    assert "exit code 3" in README.read_text()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["search", "red", "--min-score", "1.5"], 2, "--min-score"),
        (["search", "red", "--min-score", "-1.01"], 2, "--min-score"),
        (["search", "2:"], 1, "the weight 2 has no term after it"),
        (["search", "red", "+", "0.5:"], 1, "the weight 0.5 has no term after it"),
        (["search", "red", "--folder", "{elsewhere}"], 1, "not inside the indexed folders"),
        (["serve", "--allowed-host", "http://photos.lan"], 2, "--allowed-host"),
        (["serve", "--allowed-host", "photos.lan:7860"], 2, "--allowed-host"),
        (["serve", "--host", "192.0.2.1", "--password", "p", "--port", "7999"], 1, "(check --host)"),  # TEST-NET
    ],
)
def test_bad_options_get_one_clear_line(scenes_library, tmp_path, args, code, message):
    (tmp_path / "elsewhere").mkdir()
    args = [a.format(elsewhere=tmp_path / "elsewhere") for a in args]
    result = run(*args, "--index", scenes_library.directory)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.fixture
def busy_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_serve_on_a_port_in_use_fails_in_one_line_naming_port_before_anything_loads(tmp_path, busy_port):
    # The index does not even exist: the port is checked before the index is opened, let alone the model.
    out = subprocess.run([sys.executable, "-m", "clipsearch", "serve", "--index", str(tmp_path / "none"),
                          "--port", str(busy_port)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("clipsearch: error: ")
    assert "--port" in out.stderr and f"port {busy_port}" in out.stderr and "in use" in out.stderr


def test_the_demo_on_a_port_in_use_fails_before_generating_anything(tmp_path, busy_port):
    result = run("demo", "--dir", tmp_path / "demo", "--port", busy_port)
    assert result.exit_code == 1 and "--port" in result.output
    assert not (tmp_path / "demo").exists()
