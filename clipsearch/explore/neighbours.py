"""Nearest neighbours and similar pairs among unit vectors, with FAISS (inner product = cosine similarity).

Up to ``EXACT_LIMIT`` vectors the search is exact (a flat index; every pair of 10k 512-d vectors is 10^11
multiply-adds, a few seconds on 2 cores); past it, an inverted-file index (IVF, ``2 * sqrt(n)`` lists, ``NPROBE``
probed) keeps a 100k-photo library to seconds instead of minutes, at the recall ``benchmarks/bench_explore.py``
measures against the exact search.
"""

from __future__ import annotations

import math

import numpy as np

EXACT_LIMIT = 10_000
NPROBE = 16  # lists probed for k nearest neighbours
PAIR_NPROBE = 4  # for pairs above a high threshold: two near-copies almost always share a list or a neighbour
QUERY_BATCH = 4096


def build_index(vectors: np.ndarray, exact_limit: int = EXACT_LIMIT, nprobe: int = NPROBE):
    """A FAISS inner-product index over ``vectors`` (row numbers are the ids): flat, or IVF when large."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    if count <= exact_limit:
        index = faiss.IndexFlatIP(dim)
    else:
        lists = int(2 * math.sqrt(count))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        # FAISS wants about 40 training points per list; a fixed sample keeps the lists (and results) repeatable
        sample = np.sort(np.random.default_rng(0).choice(count, min(count, 40 * lists), replace=False))
        index.cp.seed = 1234
        index.train(vectors[sample])
        index.nprobe = nprobe
    index.add(vectors)
    return index


def nearest(vectors: np.ndarray, k: int, exact_limit: int = EXACT_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's ``k`` nearest others: ``(similarities float32[n, k], rows int64[n, k])``, nearest first.

    A vector is never its own neighbour; an identical copy of it is (it is another photo).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count = len(vectors)
    k = min(k, count - 1)
    if k <= 0:
        return np.zeros((count, 0), np.float32), np.zeros((count, 0), np.int64)
    index = build_index(vectors, exact_limit)
    sims = np.empty((count, k), np.float32)
    rows = np.empty((count, k), np.int64)
    for start in range(0, count, QUERY_BATCH):
        batch = vectors[start:start + QUERY_BATCH]
        found_sims, found = index.search(batch, k + 1)
        own = found == np.arange(start, start + len(batch))[:, None]
        own[~own.any(axis=1), -1] = True  # where the search missed the row itself, drop the farthest instead
        sims[start:start + len(batch)] = found_sims[~own].reshape(len(batch), k)
        rows[start:start + len(batch)] = found[~own].reshape(len(batch), k)
    missing = rows < 0  # an IVF probe that found fewer than k others: count them as far as can be
    sims[missing] = -1.0
    return sims, rows


def similar_pairs(vectors: np.ndarray, threshold: float, exact_limit: int = EXACT_LIMIT
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of rows ``i < j`` whose cosine similarity is at least ``threshold``: ``(i, j, similarity)``."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    index = build_index(vectors, exact_limit, PAIR_NPROBE)
    radius = float(threshold) - 1e-6  # FAISS keeps scores strictly above the radius; float32 rounding
    firsts, seconds, sims = [], [], []
    for start in range(0, len(vectors), QUERY_BATCH):
        batch = vectors[start:start + QUERY_BATCH]
        lims, found_sims, found = index.range_search(batch, radius)
        first = np.repeat(np.arange(start, start + len(batch)), np.diff(lims).astype(np.int64))
        other = found != first
        firsts.append(first[other])
        seconds.append(found[other].astype(np.int64))
        sims.append(found_sims[other])
    first, second, sim = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(sims)
    # each pair is usually found from both ends (an IVF probe may find it from one only): keep it once
    low, high = np.minimum(first, second), np.maximum(first, second)
    _, unique = np.unique(low * len(vectors) + high, return_index=True)
    return low[unique], high[unique], sim[unique]
