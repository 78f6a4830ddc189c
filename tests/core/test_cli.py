"""The CLI: in-process through click's CliRunner (with a table of bad arguments), and as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipsearch.cli import main
from tests.conftest import read_captions


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, scenes):
    """A CLI-built index over 40 of the held-out scenes (shared by this module's read-only tests)."""
    photos = tmp_path_factory.mktemp("cli-photos")
    folder, records = scenes
    for record in records[:40]:
        shutil.copy2(folder / record["file"], photos / record["file"])
    with open(photos / "captions.jsonl", "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records[:40])
    index_dir = tmp_path_factory.mktemp("cli-index")
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(index_dir), "--model", "clipsearch-tiny",
                                       "--json"])
    assert result.exit_code == 0, result.output
    return photos, index_dir, json.loads(result.stdout)


REPO = Path(__file__).resolve().parents[2]


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_index_reports_counts_as_json(indexed):
    _, _, report = indexed
    assert report["indexed"] == 40 and report["skipped"] == [] and report["removed"] == 0


def test_index_text_summary_and_rerun(indexed):
    photos, index_dir, _ = indexed
    result = run("index", photos, "--index", index_dir)
    assert result.exit_code == 0, result.output
    assert "indexed 0, unchanged 40, moved 0, removed 0, skipped 0" in result.output


def test_search_json_lists_hits_best_first(indexed):
    photos, index_dir, _ = indexed
    result = run("search", "red", "--index", index_dir, "--top", "5", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 5
    assert all({"path", "score"} <= set(h) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    captions = read_captions(photos)
    assert " red " in captions[Path(hits[0]["path"]).name].split(" over ")[0] + " "


def test_search_mixes_images_and_words(indexed):
    photos, index_dir, _ = indexed
    first = sorted(read_captions(photos))[0]
    result = run("search", photos / first, "+", "0.2:a photo", "--index", index_dir, "--json", "--top", "1")
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.stdout)[0]["path"]).name == first


def test_search_text_output_has_score_and_path(indexed):
    _, index_dir, _ = indexed
    result = run("search", "circle", "-", "red", "--index", index_dir, "--top", "3")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and all(float(line.split()[0]) <= 1.0 for line in lines)


def test_min_score_cuts_results_at_the_given_similarity(indexed):
    _, index_dir, _ = indexed
    ranked = json.loads(run("search", "a red circle", "--index", index_dir, "--top", "10", "--json").stdout)
    cut = (ranked[2]["score"] + ranked[3]["score"]) / 2  # between the third and the fourth result
    assert ranked[2]["score"] > cut > ranked[3]["score"]
    result = run("search", "a red circle", "--index", index_dir, "--top", "10", "--min-score", str(cut), "--json")
    assert result.exit_code == 0
    assert [h["path"] for h in json.loads(result.stdout)] == [h["path"] for h in ranked[:3]]


def test_status_json_shape(indexed):
    photos, index_dir, _ = indexed
    result = run("status", "--index", index_dir, "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["model"] == "clipsearch-tiny" and status["files"] == 40 and status["skipped"] == []
    assert status["roots"] == [str(photos.resolve())]
    assert status["last_run"]["summary"]["unchanged"] in (0, 40)


def test_environment_variables_stand_in_for_options(indexed, tmp_path):
    photos, index_dir, _ = indexed
    result = run("status", "--json", env={"CLIPSEARCH_INDEX": str(index_dir)})
    assert result.exit_code == 0 and json.loads(result.stdout)["files"] == 40
    (tmp_path / "p").mkdir()
    result = run("index", tmp_path / "p", env={"CLIPSEARCH_INDEX": str(index_dir), "CLIPSEARCH_MODEL": "ViT-B-32"})
    assert result.exit_code == 1 and "cannot be mixed" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["search", "cat", "--index", "{missing}"], 1, "no index at"),
        (["status", "--index", "{missing}"], 1, "no index at"),
        (["search", "cat", "+", "--index", "{index}"], 1, "ends with an operator"),
        (["search", "./nope.jpg", "--index", "{index}"], 1, "image not found"),
        (["search", "cat", "--top", "0", "--index", "{index}"], 2, "--top"),
        (["search", "--index", "{index}"], 2, "Missing argument"),
        (["index", "{missing}", "--index", "{new}", "--model", "clipsearch-tiny"], 1, "not a folder"),
        (["index", "{photos}", "--index", "{new}", "--model", "NoSuchNet"], 1, "unknown model"),
        (["index", "{photos}", "--index", "{new}", "--checkpoint", "{missing}"], 1, "not found"),
        (["index", "{photos}", "--index", "{index}", "--model", "ViT-B-32"], 1, "cannot be mixed"),
        (["index", "--index", "{missing}"], 1, "no index at"),  # without folders: refresh an existing index
        (["synthetic", "{new}", "--count", "0"], 2, "--count"),
        (["synthetic", "{new}", "--variants", "midnight"], 2, "bad variant 'midnight'"),
    ],
)
def test_bad_arguments_get_one_clear_line(indexed, tmp_path, args, code, message):
    photos, index_dir, _ = indexed
    names = {"missing": tmp_path / "missing", "index": index_dir, "new": tmp_path / "new", "photos": photos}
    result = run(*[a.format(**names) for a in args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_synthetic_writes_images_and_captions(tmp_path):
    result = run("synthetic", tmp_path / "s", "--count", "6", "--seed", "3")
    assert result.exit_code == 0, result.output
    captions = read_captions(tmp_path / "s")
    assert len(captions) == 6 and all((tmp_path / "s" / name).is_file() for name in captions)


def test_synthetic_renders_each_photo_scene_again_at_night_when_asked(tmp_path):
    result = run("synthetic", tmp_path / "s", "--count", "5", "--seed", "3", "--variants", "night",
                 "--photo-share", "1")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "s" / "captions.jsonl") as handle:
        records = [json.loads(line) for line in handle]
    groups = {r["group"] for r in records}
    assert len(groups) == 5 and all(r["kind"] == "photo" for r in records)
    for group in groups:  # every scene has a night render (itself, when it already was at night)
        assert any(r["group"] == group and r["time"] == "night" for r in records)
    assert any(r["variant"] == "night" and "at night" in r["caption"] for r in records)


def test_installed_entry_point_runs_as_a_subprocess(indexed):
    photos, index_dir, _ = indexed
    exe = Path(sys.executable).with_name("clipsearch")
    env = dict(os.environ, CLIPSEARCH_INDEX=str(index_dir))
    out = subprocess.run([exe, "search", "a blue square", "--json", "--top", "3"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 3
    out = subprocess.run([sys.executable, "-m", "clipsearch", "status", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["files"] == 40
    out = subprocess.run([exe, "search", "x", "--index", str(index_dir / "nope")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("clipsearch: error:") and "Traceback" not in out.stderr


def test_a_hub_model_that_is_not_cached_fails_fast_without_network(indexed, tmp_path):
    """In a fresh process with an empty Hugging Face cache, whatever this machine has cached."""
    photos, _, _ = indexed
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-m", "clipsearch", "index", str(photos), "--index", str(tmp_path / "new"),
                          "--model", "ViT-B-32"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("clipsearch: error: model weights for ViT-B-32/laion2b_s34b_b79k could not be "
                                 "downloaded"), out.stderr


def cli_imports(*args: str) -> dict:
    """Run the CLI in a fresh process; which heavy modules did it import?"""
    out = subprocess.run([sys.executable, "-m", "tests.programs.cli_imports", *map(str, args)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_neither_torch_nor_the_web_app():
    assert cli_imports("--help") == {"exit": 0, "imported": []}


def test_an_index_run_over_unchanged_photos_imports_neither_torch_nor_faiss(indexed):
    photos, index_dir, _ = indexed
    assert cli_imports("index", photos, "--index", index_dir) == {"exit": 0, "imported": []}


def test_status_of_an_index_imports_neither_torch_nor_faiss_nor_the_web_app(indexed):
    _, index_dir, _ = indexed
    assert cli_imports("status", "--index", index_dir) == {"exit": 0, "imported": []}


def test_reference_path_gives_the_same_ranking(indexed):
    _, index_dir, _ = indexed
    fast = run("search", "a large green star", "--index", index_dir, "--json", "--top", "5")
    plain = run("search", "a large green star", "--index", index_dir, "--json", "--top", "5", "--reference",
                "--text-backend", "torch")
    assert fast.exit_code == 0 and plain.exit_code == 0, plain.output
    assert [h["path"] for h in json.loads(fast.stdout)] == [h["path"] for h in json.loads(plain.stdout)]
