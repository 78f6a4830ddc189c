"""Cached results follow the FAISS file's rules: reused while the catalog is unchanged, recomputed when it is
stale, from another catalog or model, or corrupt, never trusted."""

from __future__ import annotations

import shutil

import pytest

import clipsearch.explore.outliers as outlier_module
from clipsearch import Library
from clipsearch.explore.cache import ResultCache
from clipsearch.store.catalog import Catalog


@pytest.fixture
def counted(monkeypatch):
    """Counts how often the odd-ones-out scores are really computed."""
    calls = []
    real = outlier_module.outlier_scores

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(outlier_module, "outlier_scores", counting)
    return calls


def test_an_unchanged_index_reuses_the_saved_result(own_copy, counted):
    library = own_copy()
    first = library.outliers(top=5)
    assert library.outliers(top=5) == first and len(counted) == 1
    assert (library.directory / "explore" / "outliers.cache").is_file()


def test_a_catalog_change_makes_the_saved_result_stale(own_copy, counted):
    library = own_copy()
    victim = library.outliers(top=1)[0]
    writer = Catalog.open(str(library.directory / "catalog.sqlite"))
    writer.delete([victim.id])  # as an index run does when a file has gone
    writer.close()
    after = library.outliers()
    assert len(counted) == 2 and victim.id not in {o.id for o in after}


def test_a_result_made_with_another_model_is_not_trusted(own_copy, counted):
    library = own_copy()
    library.outliers()
    writer = Catalog.open(str(library.directory / "catalog.sqlite"))
    stored = writer.get_json("model")
    writer.set_json("model", dict(stored, identity=dict(stored["identity"], weights="another checksum")))
    writer.close()
    library.outliers()
    assert len(counted) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_corrupt_saved_result_is_recomputed(own_copy, counted, damage):
    library = own_copy()
    expected = library.outliers(top=5)
    path = library.directory / "explore" / "outliers.cache"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[-20] ^= 0xFF
    else:
        data = bytearray(b"not a cache at all")
    path.write_bytes(bytes(data))
    assert library.outliers(top=5) == expected and len(counted) == 2


def test_a_result_saved_by_another_index_is_not_trusted(own_copy, counted, tmp_path, planted):
    first = own_copy()
    first.outliers()
    other = Library.open(tmp_path / "other", model=planted.library.model, create=True)
    other.use_embedder(planted.library.embedder)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in sorted(planted.captions)[:12]:
        shutil.copyfile(planted.folder / name, photos / name)
    other.index([photos])
    (other.directory / "explore").mkdir()
    shutil.copyfile(first.directory / "explore" / "outliers.cache", other.directory / "explore" / "outliers.cache")
    found = other.outliers()
    assert len(found) == 12 and len(counted) == 2


def test_a_cache_file_never_unpickles(tmp_path):
    import numpy as np

    cache = ResultCache(tmp_path / "x.cache")
    cache.save({"kind": "t"}, {"ids": np.arange(3)})
    assert cache.load({"kind": "t"})[1]["ids"].tolist() == [0, 1, 2]
    cache.save({"kind": "t"}, {"objects": np.array([{"a": 1}], dtype=object)})
    assert cache.load({"kind": "t"}) is None
    assert cache.load({"kind": "other"}) is None
