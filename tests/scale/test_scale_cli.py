"""The CLI's part of scaling out: --engine ray without Ray says how to install it; status shows the index type."""

from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from clipsearch.cli import main
from clipsearch.store.catalog import Catalog, Embedded, FileStat
from clipsearch.store.vectors import DerivedIndex, IndexPolicy
from clipsearch.world.vectors import clustered_unit_vectors


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_engine_ray_without_ray_installed_says_in_one_line_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like to an import
    (tmp_path / "photos").mkdir()
    result = run("index", tmp_path / "photos", "--index", tmp_path / "index", "--engine", "ray")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        'clipsearch: error: the Ray engine needs Ray: pip install "clipsearch[ray]" (or pip install "ray[data]")']
    assert not (tmp_path / "index").exists()  # refused before anything was opened


def test_a_ray_address_without_the_ray_engine_is_a_usage_error(tmp_path):
    (tmp_path / "photos").mkdir()
    result = run("index", tmp_path / "photos", "--index", tmp_path / "index", "--ray-address", "auto")
    assert result.exit_code == 2 and "--ray-address needs --engine ray" in result.output


def test_status_shows_the_index_type_exact_or_approximate(tmp_path):
    catalog = Catalog.open(str(tmp_path / "catalog.sqlite"), create=True)
    vectors = clustered_unit_vectors(300, dim=32, seed=8)
    catalog.store_embedded(Embedded(FileStat(f"/p/{i}.jpg", 1, 0, i, 1), "0" * 32, 4, 3, v)
                           for i, v in enumerate(vectors))
    path = str(tmp_path / "vectors.faiss")
    result = run("status", "--index", tmp_path)
    assert "vectors: no FAISS index yet" in result.output
    DerivedIndex(catalog, path).current()
    result = run("status", "--index", tmp_path)
    assert result.exit_code == 0 and "vectors: IDMap2,Flat (exact)" in result.output
    DerivedIndex(catalog, path, IndexPolicy(approximate=True)).save()  # as an index run ends: rebuilt now
    status = json.loads(run("status", "--index", tmp_path, "--json").output)
    assert status["index_type"] == "IVF4,PQ2x2np (approximate: 4 of 4 lists probed, best 200 re-ranked exactly)"
    catalog.close()
