"""The 2-D map: neighbourhoods survive it, it is repeatable, and new photos are placed into the saved map."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from clipsearch.explore.projection import fit_map
from clipsearch.world.synthetic import generate_library
from tests.conftest import HELD_OUT_SEED


def vectors_of(library):
    chunks = list(library.iter_vectors())
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def coords(points) -> np.ndarray:
    return np.array([[p.x, p.y] for p in points])


@pytest.fixture(scope="module")
def planted_map(planted):
    return planted.library.map()


def test_neighbourhoods_survive_the_projection(planted, planted_map):
    ids, vectors = vectors_of(planted.library)
    assert [p.id for p in planted_map] == ids.tolist()
    kept = trustworthiness(vectors, coords(planted_map), n_neighbors=10, metric="cosine")
    print(f"map trustworthiness@10: {kept:.3f}")
    assert kept >= 0.9


def test_the_map_is_the_same_for_the_same_index(planted, planted_map, own_copy):
    assert np.array_equal(coords(own_copy().map()), coords(planted_map))  # computed afresh in another folder


def test_every_point_carries_its_theme_name(planted, planted_map):
    names = {t.name for t in planted.library.themes()}
    assert {p.theme for p in planted_map} <= names and all(p.theme for p in planted_map)


def test_new_photos_are_placed_into_the_saved_map_without_moving_the_others(tmp_path, planted, own_copy):
    library = own_copy()
    before = {p.id: (p.x, p.y) for p in library.map()}
    extra = tmp_path / "more"
    generate_library(extra, 6, HELD_OUT_SEED + 7)
    originals = sorted(planted.captions)[:4]
    for name in originals:
        shutil.copyfile(planted.folder / name, extra / f"again-{name}")
    assert library.index([extra]).indexed == 10
    after = library.map()
    moved = [p for p in after if p.id in before and (p.x, p.y) != pytest.approx(before[p.id])]
    assert moved == [] and len(after) == len(before) + 10
    by_name = {Path(p.path).name: p for p in after if Path(p.path).parent == planted.folder}
    spread = np.linalg.norm(coords(after) - coords(after).mean(axis=0), axis=1).mean()
    for name in originals:
        copy = next(p for p in after if Path(p.path).name == f"again-{name}")
        gap = np.hypot(copy.x - by_name[name].x, copy.y - by_name[name].y)
        assert gap < 0.2 * spread  # a copy lands beside its original
    ids, vectors = vectors_of(library)
    assert trustworthiness(vectors, coords(after), n_neighbors=10, metric="cosine") >= 0.9


def test_removed_photos_leave_the_map_and_recompute_starts_afresh(tmp_path, planted, own_copy):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = sorted(planted.captions)[:30]
    for name in names:
        shutil.copyfile(planted.folder / name, photos / name)
    from clipsearch import Library

    library = Library.open(tmp_path / "index", model=planted.library.model, create=True)
    library.use_embedder(planted.library.embedder)
    library.index([photos])
    first = {p.id: (p.x, p.y) for p in library.map()}
    (photos / names[0]).unlink()
    library.index()
    kept = library.map()
    assert len(kept) == 29 and all(first[p.id] == pytest.approx((p.x, p.y)) for p in kept)
    fresh = library.map(recompute=True)
    _, vectors = vectors_of(library)
    assert np.allclose(coords(fresh), fit_map(vectors))
