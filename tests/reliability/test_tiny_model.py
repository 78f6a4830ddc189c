"""The few reliability checks that need the real (bundled, trained) model and the installed CLI entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from clipsearch import Library
from tests.reliability.conftest import assert_kills_landed_mid_run, rel, run_crashloop

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("clipsearch"))


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    return subprocess.run([CLI, *args], capture_output=True, timeout=timeout, env=env)


def test_installed_cli_indexes_a_hostile_library_with_the_bundled_model(hostile, tmp_path):
    index = str(tmp_path / "index")
    out = run_cli("index", str(hostile.root), "--index", index, "--model", "clipsearch-tiny", "--json")
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["indexed"] == len(hostile.good)
    assert {rel(hostile, os.fsencode(s["path"])) for s in report["skipped"]} == set(hostile.skipped)
    status = json.loads(run_cli("status", "--index", index, "--json").stdout)
    assert status["files"] == len(hostile.good) and len(status["skipped"]) == len(hostile.skipped)
    found = json.loads(run_cli("search", "a red circle", "--index", index, "--top", "100", "--json").stdout)
    assert len(found) == len(hostile.good) == len({h["path"] for h in found})  # every good file, once
    library = Library.open(index)  # the installed CLI ranks exactly as the library does, scores and all
    expected = library.search("a red circle", top_k=100)
    library.close()
    assert [h["path"] for h in found] == [h.path for h in expected]
    np.testing.assert_allclose([h["score"] for h in found], [h.score for h in expected], atol=1e-4)
    assert found[0]["score"] - found[-1]["score"] > 0.1  # a ranking, not a list of ties
    example = next(h["path"] for h in found if h["path"].endswith(os.sep + "plain.png"))
    ranked = json.loads(run_cli("search", example, "--index", index, "--top", "3", "--json").stdout)
    assert ranked[0]["path"] == example and ranked[0]["score"] > 0.99  # ranking: a photo finds itself first
    again = json.loads(run_cli("index", str(hostile.root), "--index", index, "--json").stdout)
    assert again["indexed"] == 0 and again["skipped"] == []


def test_cli_runs_killed_at_random_moments_end_equal_to_a_clean_run_with_the_bundled_model(tmp_path):
    summary = run_crashloop(tmp_path / "loop", "--mode", "cli", "--files", "40", "--kills", "3", "--seed", "8",
                            timeout=400)
    assert_kills_landed_mid_run(summary)
