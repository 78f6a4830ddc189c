"""Neighbours past the exact search's limit: the cell join agrees with the exact search on clustered vectors."""

from __future__ import annotations

import numpy as np

from clipsearch.explore.neighbours import nearest, similar_pairs


def clustered(count=4000, dim=64, clusters=20, seed=0):
    """Unit vectors around a few directions (like photos of a few subjects), with planted near-copies."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    vectors = centres[rng.integers(0, clusters, count)] * 1.2 + rng.standard_normal((count, dim))
    copies = rng.choice(count - 40, 40, replace=False)
    vectors[-40:] = vectors[copies] + 0.1 * rng.standard_normal((40, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), {(int(c), count - 40 + i) for i, c in enumerate(copies)}


def test_the_cell_join_finds_nearly_every_exact_neighbour():
    vectors, _ = clustered()
    exact_sims, exact_rows = nearest(vectors, 10)
    sims, rows = nearest(vectors, 10, exact_limit=500)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact_rows)])
    assert recall >= 0.98
    assert np.all(sims <= exact_sims + 1e-5)  # never closer than the truth: only misses, no invented neighbours
    assert not np.any(rows == np.arange(len(vectors))[:, None])  # never a row itself


def test_the_cell_join_finds_every_planted_near_copy():
    vectors, copies = clustered()
    first, second, sims = similar_pairs(vectors, 0.95, exact_limit=500)
    exact = similar_pairs(vectors, 0.95)
    assert copies <= set(zip(first.tolist(), second.tolist()))
    assert set(zip(first.tolist(), second.tolist())) == set(zip(exact[0].tolist(), exact[1].tolist()))
    assert np.all(first < second) and np.all(sims >= 0.95 - 1e-5)


def test_an_identical_copy_is_a_neighbour_and_a_pair_but_never_itself():
    vectors, _ = clustered(count=300)
    vectors[200] = vectors[3]
    _, rows = nearest(vectors, 3)
    assert rows[3][0] == 200 and rows[200][0] == 3
    first, second, sims = similar_pairs(vectors, 0.999)
    assert (3, 200) in set(zip(first.tolist(), second.tolist())) and not np.any(first == second)
