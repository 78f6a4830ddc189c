"""Odd ones out: pictures unlike anything else in the library rank first.

The library is an archive as people keep them: a dozen subjects with several shots of each (the same generated
scene rendered eight times, each with its own jitter, size and noise), so that every photo has similar ones,
as the score's 10 nearest neighbours assume. Planted among them: noise, pages of text and gradients.
(In a library of 130 one-off scenes the tiny model puts noise and text pages among the scenes, ranks 14 to 116:
it embeds what it has never seen near the middle of its space, so nothing is odd when everything is unique.)
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from clipsearch import Library
from clipsearch.explore.outliers import outlier_scores
from clipsearch.world.synthetic import random_scene, render
from tests.explore.conftest import make_odd_ones

SUBJECTS, SHOTS = 12, 8


@pytest.fixture(scope="module")
def archive(tmp_path_factory, tiny_spec, tiny_embedder):
    folder = tmp_path_factory.mktemp("archive")
    rng = random.Random(2024)
    for subject in range(SUBJECTS):
        scene = random_scene(rng)
        for shot in range(SHOTS):
            size = (rng.randint(200, 360), rng.randint(200, 360))
            render(scene, size, random.Random(rng.random())).save(folder / f"s{subject:02d}-{shot}.jpg", quality=90)
    odd = make_odd_ones(folder)
    library = Library.open(tmp_path_factory.mktemp("archive-index"), model=tiny_spec, create=True)
    library.use_embedder(tiny_embedder)
    assert library.index([folder]).indexed == SUBJECTS * SHOTS + len(odd)
    return library, odd


def test_planted_odd_ones_out_rank_in_the_top_k(archive):
    library, odd = archive
    k = 2 * len(odd)
    top = [Path(o.path).name for o in library.outliers(top=k)]
    assert set(odd) <= set(top), {name: top.index(name) if name in top else None for name in odd}


def test_the_most_unusual_come_first_with_higher_scores(archive):
    library, _ = archive
    found = library.outliers()
    assert len(found) == library.status().files
    assert [o.score for o in found] == sorted((o.score for o in found), reverse=True)
    assert library.outliers(top=3) == found[:3]


def test_scores_are_mean_distances_to_the_ten_nearest_photos(planted):
    chunks = list(planted.library.iter_vectors())
    ids = np.concatenate([c[0] for c in chunks])
    vectors = np.concatenate([c[1] for c in chunks])
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    expected = 1 - np.sort(sims, axis=1)[:, -10:].mean(axis=1)
    assert np.allclose(outlier_scores(vectors), expected, atol=1e-5)
    by_id = {o.id: o.score for o in planted.library.outliers()}
    assert np.allclose([by_id[int(i)] for i in ids], expected, atol=1e-5)


def test_a_library_of_one_photo_has_no_odd_one_out():
    assert outlier_scores(np.eye(1, 8, dtype=np.float32)).tolist() == [0.0]
