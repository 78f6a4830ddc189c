"""How close a fast path's vectors are to the reference path's, measured against the spread between inputs.

Random weights put different inputs close together (two random photo-like pictures reach cosine 0.987 on a
random clipsearch-tiny), so "cosine >= 0.99" alone proves little: a path can pass it while confusing one input
with another. These measures compare each vector's error with the distance to the nearest *other* input.
"""

from __future__ import annotations

import numpy as np


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def error_against_spread(got: np.ndarray, reference: np.ndarray) -> float:
    """The largest (1 - cos(got_i, reference_i)) / (1 - max_j≠i cos(reference_i, reference_j)): 0 is exact; 1 means
    a vector sits as far from its own reference as the nearest different input does. Needs two inputs or more."""
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    others = unit @ unit.T
    np.fill_diagonal(others, -np.inf)
    return float(np.max((1 - cosines(got, reference)) / (1 - others.max(axis=1))))


def top_k_overlap(reference_scores: np.ndarray, scores: np.ndarray, k: int = 10, drop_self: bool = False) -> float:
    """Mean share of each row's reference top k that the other scores also rank in their top k. With ``drop_self``
    (square query-by-corpus scores of one set) each row's own column is left out: an item always finds itself."""
    if drop_self:
        reference_scores, scores = reference_scores.astype(float), scores.astype(float)
        np.fill_diagonal(reference_scores, -np.inf)
        np.fill_diagonal(scores, -np.inf)
    return float(np.mean([len(set(np.argsort(-r)[:k]) & set(np.argsort(-s)[:k])) / k
                          for r, s in zip(reference_scores, scores)]))
