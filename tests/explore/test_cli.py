"""The explore commands from the CLI: their JSON, and one clear line with the right exit code for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def empty_index(tmp_path_factory, tiny_spec):
    """An index that exists but holds no photos yet."""
    folder = tmp_path_factory.mktemp("empty-index")
    Library.open(folder, model=tiny_spec, create=True).close()
    return folder


def test_duplicates_json_lists_groups_with_keeper_paths_and_similarity(planted):
    result = run("duplicates", "--index", planted.library.directory, "--json")
    assert result.exit_code == 0, result.output
    groups = json.loads(result.stdout)
    assert groups and all({"keep", "paths", "similarity"} <= set(g) for g in groups)
    assert all(g["keep"] == g["paths"][0] and len(g["paths"]) >= 2 and 0 < g["similarity"] <= 1 for g in groups)
    assert [g["similarity"] for g in groups] == sorted((g["similarity"] for g in groups), reverse=True)


def test_outliers_json_is_most_unusual_first(planted):
    result = run("outliers", "--index", planted.library.directory, "--top", "7", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert len(found) == 7 and [o["score"] for o in found] == sorted((o["score"] for o in found), reverse=True)
    assert all(Path(o["path"]).is_file() for o in found)


def test_themes_json_names_sizes_representatives_and_members(planted, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("# colours\nred\nblue\n\ngreen\n")
    result = run("themes", "--index", planted.library.directory, "--count", "4", "--labels", labels, "--json")
    assert result.exit_code == 0, result.output
    themes = json.loads(result.stdout)
    assert len(themes) == 4 and {t["name"] for t in themes} <= {"red", "blue", "green"}
    assert all(t["size"] == len(t["paths"]) and t["representative"] in t["paths"] for t in themes)
    assert sum(t["size"] for t in themes) == planted.library.status().files


def test_map_json_gives_every_photo_coordinates_and_a_theme(planted):
    result = run("map", "--index", planted.library.directory, "--json")
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)
    assert len(points) == planted.library.status().files
    assert all({"path", "x", "y", "theme"} <= set(p) and p["theme"] for p in points)


def test_tag_json_lists_photos_with_their_labels(planted):
    result = run("tag", "--index", planted.library.directory, "--labels", "red, white", "--json")
    assert result.exit_code == 0, result.output
    photos = json.loads(result.stdout)
    assert photos and all(t["label"] in ("red", "white") and 0.5 <= t["score"] <= 1 for p in photos for t in p["tags"])


@pytest.mark.parametrize(("args", "code", "message"), [
    (["duplicates", "--index", "{empty}"], 1, "holds no photos"),
    (["outliers", "--index", "{empty}"], 1, "holds no photos"),
    (["themes", "--index", "{empty}", "--labels", "{labels}"], 1, "holds no photos"),
    (["map", "--index", "{empty}"], 1, "holds no photos"),
    (["tag", "--index", "{empty}", "--labels", "red"], 1, "holds no photos"),
    (["duplicates", "--index", "{missing}"], 1, "no index at"),
    (["duplicates", "--index", "{index}", "--threshold", "0"], 2, "--threshold"),
    (["duplicates", "--index", "{index}", "--threshold", "1.5"], 2, "--threshold"),
    (["duplicates", "--index", "{index}", "--threshold", "-0.2"], 2, "--threshold"),
    (["outliers", "--index", "{index}", "--top", "0"], 2, "--top"),
    (["themes", "--index", "{index}", "--count", "0"], 2, "--count"),
    (["themes", "--index", "{index}", "--count", "100000"], 1, "cannot make 100000 themes"),
    (["themes", "--index", "{index}", "--labels", "{missing}"], 1, "labels file not found"),
    (["themes", "--index", "{index}", "--labels", "{blank}"], 1, "no labels in"),
    (["map", "--index", "{index}", "--labels", "{missing}"], 1, "labels file not found"),
    (["tag", "--index", "{index}"], 2, "--labels"),
    (["tag", "--index", "{index}", "--labels", "red", "--labels-file", "{labels}"], 2, "either"),
    (["tag", "--index", "{index}", "--labels", " , ,"], 1, "no labels in --labels"),
    (["tag", "--index", "{index}", "--labels-file", "{missing}"], 1, "labels file not found"),
    (["tag", "--index", "{index}", "--labels", "red", "--min-score", "2"], 2, "--min-score"),
    (["eval", "{missing}", "--index", "{index}"], 1, "captions file not found"),
    (["eval", "{labels}", "--index", "{index}", "--k", "0"], 2, "--k"),
    (["eval", "{labels}", "--index", "{index}", "--k", "one"], 2, "--k"),
    (["search", "#999999", "--index", "{index}"], 1, "no indexed file with id 999999"),
])
def test_bad_input_gets_one_clear_line_and_the_right_exit_code(planted, empty_index, tmp_path, args, code, message):
    (tmp_path / "labels.txt").write_text("red\nblue\n")
    (tmp_path / "blank.txt").write_text("# nothing but comments\n\n")
    names = {"index": planted.library.directory, "empty": empty_index, "missing": tmp_path / "missing",
             "labels": tmp_path / "labels.txt", "blank": tmp_path / "blank.txt"}
    result = run(*[a.format(**names) for a in args])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    if code == 1:
        assert result.output.startswith("clipsearch: error: ") and result.output.count("\n") == 1


def test_explore_commands_run_from_the_installed_entry_point(planted):
    """A real process, as a user runs it; --help for every command loads neither torch nor scikit-learn."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-m", "clipsearch", "outliers", "--index", str(planted.library.directory),
                          "--top", "3"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 3 and all("#" in line for line in out.stdout.splitlines())
    program = Path(__file__).with_name("help_imports.py")
    loaded = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, env=env, timeout=120)
    assert loaded.stdout.strip() == "[]", loaded.stderr
