"""The offline demo: its sample searches find what they say, and its planted files are there to be explored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipsearch import Library
from clipsearch.cli import main
from clipsearch.demo import DEMO_QUERIES
from clipsearch.world.synthetic import record_matches

# What each sample search asks for, in the generated world's attributes.
ASKED = {
    "red": {"colour": "red"},
    "a forest in the snow": {"place": "forest", "weather": "snow"},
    "a red car": {"object": "car", "colour": "red"},
    "a yellow house": {"object": "house", "colour": "yellow"},
    "a beach at sunset": {"place": "beach", "time": "sunset"},
    "a tree on the left": {"object": "tree", "position": "left"},
}


class Demo:
    def __init__(self, folder: Path):
        self.folder = folder
        self.photos = folder / "photos"
        self.library = Library.open(folder / "index")


def run(folder: Path):
    return CliRunner().invoke(main, ["demo", "--dir", str(folder), "--count", "300", "--no-serve"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    output = run(folder)
    assert output.exit_code == 0, output.output
    assert "indexed 300, unchanged 0, skipped 0" in output.output
    result = Demo(folder)
    with open(result.photos / "captions.jsonl") as handle:
        records = {r["file"]: r for r in map(json.loads, handle)}
    return result, records, output.output.splitlines()


def relative(result, path: str) -> str:
    return Path(path).relative_to(result.photos).as_posix()


def test_every_sample_search_is_asked_for(demo):
    _, _, lines = demo
    assert set(ASKED) == set(DEMO_QUERIES)
    printed = {line.removeprefix("search: ") for line in lines if line.startswith("search: ")}
    assert set(DEMO_QUERIES) <= printed


@pytest.mark.parametrize("query", DEMO_QUERIES)
def test_sample_search_finds_what_it_says(demo, query):
    result, records, _ = demo
    top = [records[relative(result, h.path)] for h in result.library.search(query, top_k=3)]
    assert record_matches(top[0], **ASKED[query]), top[0]["caption"]
    assert sum(record_matches(r, **ASKED[query]) for r in top) >= 2, [r["caption"] for r in top]


def test_day_photo_minus_day_plus_night_finds_its_night_render_first(demo):
    result, records, _ = demo
    pairs = [r for r in records.values() if r["file"].startswith("pairs/") and r["time"] == "day"]
    assert pairs
    for day in pairs:
        hits = result.library.search([str(result.photos / day["file"]), "-", "day", "+", "night"], top_k=1)
        found = records[relative(result, hits[0].path)]
        assert found["group"] == day["group"] and found["time"] == "night"


def test_planted_copies_and_odd_ones_out_are_found_by_the_explore_functions(demo):
    result, records, _ = demo
    planted = {(r["duplicate_of"], r["file"]) for r in records.values() if r.get("duplicate_of")}
    odd = {f for f, r in records.items() if r["kind"] == "odd"}
    assert len(planted) == 5 and len(odd) == 5
    groups = [{relative(result, p) for p in group.paths} for group in result.library.duplicates()]
    for original, copy in planted:
        assert any({original, copy} <= group for group in groups)
    # The bundled model embeds pictures from outside its world near the middle of its space (tools/TRAINING.md),
    # so the planted ones are not all first: measured ranks 7, 12, 28, 61 and 164 of 300.
    ranks = [i for i, o in enumerate(result.library.outliers(), 1) if relative(result, o.path) in odd]
    assert len(ranks) == len(odd) and min(ranks) <= 10 and sum(ranks) / len(ranks) <= 100, ranks


def test_a_second_run_reuses_the_photos_and_the_index(demo):
    result, _, _ = demo
    again = run(result.folder)
    assert again.exit_code == 0 and "indexed 0, unchanged 300" in again.output
