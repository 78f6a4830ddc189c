"""Nearest neighbours and similar pairs among a library's own unit vectors (inner product = cosine similarity).

Up to ``EXACT_LIMIT`` vectors the search is exact: a FAISS flat index (every pair of 10k 512-d vectors is 5 x 10^10
multiply-adds, seconds on 2 cores). Past it, every vector's neighbours among all the others is a self-join, and
answering it one query at a time through an IVF index is memory-bound: each query reads ~2,500 candidate
vectors (5 MB) from wherever their lists lie, ~1 ms a query here, 108 s for 100k photos. So the library is cut
into ``sqrt(n)`` cells by FAISS k-means, and the photos of one cell are compared, as one matrix product, with the
photos of the ``probes`` cells whose centres are nearest that cell's centre: each candidate block is read once
per cell instead of once per query. The products are small (a few hundred rows), where one BLAS thread runs at
~120 GFLOP/s here and two threads at a third of that, so they run on one. A neighbour in a cell that was not
probed is missed; ``benchmarks/bench_explore.py`` measures the recall against the exact search.
"""

from __future__ import annotations

import math

import numpy as np

EXACT_LIMIT = 10_000
KNN_PROBES = 8  # cells searched for k nearest neighbours (recall@10 0.9965 against exact at 100k, benchmark)
PAIR_PROBES = 6  # for pairs above a high threshold: two near-copies almost always share a cell or a neighbour
QUERY_BATCH = 4096
CELLS_PER_ROOT = 1.0  # sqrt(n) cells: ~320 photos each at 100k
_BLOCK_ROWS = 1024  # rows of one matrix product, so a crowded cell never needs a huge block


def flat_index(vectors: np.ndarray):
    """An exact FAISS inner-product index over ``vectors`` (row numbers are the ids)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(int(vectors.shape[1]))
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
    if count > exact_limit:
        return _cell_join_nearest(vectors, k, KNN_PROBES)
    index = flat_index(vectors)
    sims = np.empty((count, k), np.float32)
    rows = np.empty((count, k), np.int64)
    for start in range(0, count, QUERY_BATCH):
        batch = vectors[start:start + QUERY_BATCH]
        found_sims, found = index.search(batch, k + 1)
        own = found == np.arange(start, start + len(batch))[:, None]
        own[~own.any(axis=1), -1] = True  # where ties pushed the row itself out, drop the farthest instead
        sims[start:start + len(batch)] = found_sims[~own].reshape(len(batch), k)
        rows[start:start + len(batch)] = found[~own].reshape(len(batch), k)
    return sims, rows


def similar_pairs(vectors: np.ndarray, threshold: float, exact_limit: int = EXACT_LIMIT
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of rows ``i < j`` whose cosine similarity is at least ``threshold``: ``(i, j, similarity)``."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    if len(vectors) > exact_limit:
        first, second, sim = _cell_join_pairs(vectors, threshold, PAIR_PROBES)
    else:
        radius = float(threshold) - 1e-6  # FAISS keeps scores strictly above the radius; float32 rounding
        index = flat_index(vectors)
        firsts, seconds, sims = [], [], []
        for start in range(0, len(vectors), QUERY_BATCH):
            lims, found_sims, found = index.range_search(vectors[start:start + QUERY_BATCH], radius)
            firsts.append(np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64)))
            seconds.append(found.astype(np.int64))
            sims.append(found_sims)
        first, second, sim = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(sims)
    # each pair is found from both ends (or, between cells, from one): keep it once, never a row with itself
    other = first != second
    low, high, sim = np.minimum(first, second)[other], np.maximum(first, second)[other], sim[other]
    _, unique = np.unique(low * len(vectors) + high, return_index=True)
    return low[unique], high[unique], sim[unique]


# -- the cell join ----------------------------------------------------------------------------------------
def _cells(vectors: np.ndarray, probes: int):
    """Rows sorted by cell, where each cell starts in that order, and each cell's ``probes`` nearest cells
    (itself first)."""
    import faiss

    count, dim = vectors.shape
    cells = int(CELLS_PER_ROOT * math.sqrt(count))
    # a fixed sample and seed keep the cells, and so the results, the same for the same vectors
    sample = np.sort(np.random.default_rng(0).choice(count, min(count, 40 * cells), replace=False))
    kmeans = faiss.Kmeans(dim, cells, niter=10, seed=1234, spherical=True)
    kmeans.train(vectors[sample])
    _, cell = kmeans.index.search(vectors, 1)
    _, near = kmeans.index.search(kmeans.centroids, min(probes, cells))
    order = np.argsort(cell[:, 0], kind="stable")
    starts = np.searchsorted(cell[order, 0], np.arange(cells + 1))
    return order, starts, near


def _blocks(vectors: np.ndarray, probes: int):
    """For each block of rows: the rows, their candidate rows (their own cell's first) and the similarities."""
    from threadpoolctl import threadpool_limits

    order, starts, near = _cells(vectors, probes)
    with threadpool_limits(1, user_api="blas"):
        yield from _cell_blocks(vectors, order, starts, near)


def _cell_blocks(vectors, order, starts, near):
    for cell in range(len(starts) - 1):
        rows = order[starts[cell]:starts[cell + 1]]
        if not len(rows):
            continue
        ordered = [c for c in near[cell] if c >= 0 and c != cell]
        candidates = np.concatenate([rows] + [order[starts[c]:starts[c + 1]] for c in ordered])
        block = vectors[candidates]
        for offset in range(0, len(rows), _BLOCK_ROWS):
            chunk = rows[offset:offset + _BLOCK_ROWS]
            sims = vectors[chunk] @ block.T
            sims[np.arange(len(chunk)), offset + np.arange(len(chunk))] = -np.inf  # each row against itself
            yield chunk, candidates, sims


def _cell_join_nearest(vectors: np.ndarray, k: int, probes: int) -> tuple[np.ndarray, np.ndarray]:
    count = len(vectors)
    sims_out = np.full((count, k), -1.0, np.float32)
    rows_out = np.full((count, k), -1, np.int64)
    for chunk, candidates, sims in _blocks(vectors, probes):
        take = min(k, sims.shape[1] - 1)
        if take <= 0:
            continue
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        top_sims = np.take_along_axis(sims, top, axis=1)
        ranked = np.argsort(-top_sims, axis=1, kind="stable")
        sims_out[chunk, :take] = np.take_along_axis(top_sims, ranked, axis=1)
        rows_out[chunk, :take] = candidates[np.take_along_axis(top, ranked, axis=1)]
    return sims_out, rows_out


def _cell_join_pairs(vectors: np.ndarray, threshold: float, probes: int):
    firsts, seconds, found = [], [], []
    for chunk, candidates, sims in _blocks(vectors, probes):
        hit_rows, hit_cols = np.nonzero(sims >= threshold - 1e-6)
        firsts.append(chunk[hit_rows])
        seconds.append(candidates[hit_cols])
        found.append(sims[hit_rows, hit_cols])
    empty = np.zeros(0, np.int64)
    return (np.concatenate(firsts) if firsts else empty, np.concatenate(seconds) if seconds else empty,
            np.concatenate(found).astype(np.float32) if found else np.zeros(0, np.float32))
