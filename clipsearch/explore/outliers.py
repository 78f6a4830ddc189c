"""Odd ones out: photos least like the rest of the library.

A photo's score is its mean cosine distance (1 - similarity) to its ``k`` nearest other photos, the k-nearest-
neighbour score that cleanlab's out-of-distribution detector and FiftyOne's uniqueness build on (k = 10 there
too): a photo in a crowd of similar ones scores near 0, one with nothing like it in the library scores high.
"""

from __future__ import annotations

import numpy as np

from clipsearch.explore.neighbours import EXACT_LIMIT, nearest

DEFAULT_NEIGHBOURS = 10


def outlier_scores(vectors: np.ndarray, k: int = DEFAULT_NEIGHBOURS, exact_limit: int = EXACT_LIMIT) -> np.ndarray:
    """Every row's score (float32[n]); a library of one photo has nothing to compare with and scores 0."""
    sims, _ = nearest(vectors, k, exact_limit)
    if sims.shape[1] == 0:
        return np.zeros(len(vectors), np.float32)
    return (1.0 - sims).mean(axis=1).astype(np.float32)


def most_unusual(ids: np.ndarray, scores: np.ndarray, top: int | None = None) -> np.ndarray:
    """Rows of the ``top`` most unusual photos (all when ``None``), most unusual first; ties by id."""
    order = np.lexsort((np.asarray(ids), -np.asarray(scores)))
    return order if top is None else order[:top]
