"""Odd ones out: pictures unlike anything in the generated world rank first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipsearch.explore.outliers import outlier_scores


def test_planted_odd_ones_out_rank_in_the_top_k(planted):
    k = 2 * len(planted.odd)
    top = [Path(o.path).name for o in planted.library.outliers(top=k)]
    ranks = {name: top.index(name) if name in top else None for name in planted.odd}
    assert all(rank is not None for rank in ranks.values()), ranks


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
