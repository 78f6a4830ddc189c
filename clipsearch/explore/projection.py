"""The 2-D map: t-SNE (openTSNE) on the unit vectors, with FAISS for the neighbours. Imported only to make a map.

Why openTSNE rather than UMAP, measured on this machine (2 cores; ``benchmarks/RESULTS.md``): both keep
neighbourhoods (trustworthiness at 10 neighbours 0.996 and 0.995 on 6,000 clustered 512-d vectors) and both can
place new points into an existing map (``transform``), but umap-learn compiles its numba kernels in every new
process: 36 s before the first 2,000-point map and 80 s before the first ``transform``, on every CLI call,
against none for openTSNE (Cython + FFT), which also brings no numba/llvmlite. openTSNE's FFT-accelerated
gradients keep 100k points within minutes (``python -m benchmarks --only explore``).

openTSNE places new points by optimising each one against the fixed reference map (Poličar et al. 2023); here
the neighbours of new points are found by FAISS among the reference vectors, so a map can be updated after it
was saved, in another process, without rebuilding the reference's affinities.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse
from openTSNE import TSNE, TSNEEmbedding
from openTSNE.affinity import Affinities, PerplexityBasedNN, joint_probabilities_nn
from openTSNE.initialization import pca
from openTSNE.nearest_neighbors import KNNIndex

from clipsearch.explore.neighbours import flat_index, nearest

PERPLEXITY = 30.0
MIN_POINTS = 8  # below this a t-SNE has too few neighbours to work with: the map is the first two PCA axes
DEFAULT_SEED = 0


# openTSNE's "auto" switches from Barnes-Hut to FFT gradients at 10k points; measured here (1 thread) FFT is
# already ahead at 3,000 (0.036 against 0.048 s a step) and 4x ahead at 11,000 (0.09 against 0.37 s)
FFT_FROM = 3_000
# After the 250 steps of early exaggeration, openTSNE runs 500 more; at 100k points each costs ~0.22 s here, and
# trustworthiness@10 was 0.9901 after 125 of them and 0.9902 after 500: large maps stop at 250.
SHORT_RUN_FROM = 20_000
SHORT_RUN = 250
SAME_PHOTO = 0.98  # cosine above which a new photo is placed beside the one on the map it copies
PARALLEL_FROM = 10_000  # points; below, one thread (openTSNE's threads cost 10x more than they save on a busy
# 2-core machine: 33.7 s against 3.2 s for 139 points at load 10)


def _threads(count: int) -> int:
    if count < PARALLEL_FROM:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _euclidean(similarities: np.ndarray) -> np.ndarray:
    """Distances between unit vectors from their cosine similarities."""
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * similarities.astype(np.float64)))


def fit_map(vectors: np.ndarray, seed: int = DEFAULT_SEED) -> np.ndarray:
    """2-D coordinates (float32[n, 2]) for every row of ``vectors``; the same vectors and seed give the same map."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count = len(vectors)
    if count < MIN_POINTS:
        return _pca_map(vectors)
    perplexity = min(PERPLEXITY, (count - 1) / 3.0)
    neighbours = _FaissNeighbours(vectors, min(count - 1, int(3 * perplexity)))
    threads = _threads(count)
    affinities = PerplexityBasedNN(perplexity=perplexity, knn_index=neighbours, n_jobs=threads, random_state=seed)
    start = pca(vectors, random_state=seed)
    method = "fft" if count >= FFT_FROM else "bh"
    steps = SHORT_RUN if count >= SHORT_RUN_FROM else 500
    embedding = TSNE(n_iter=steps, n_jobs=threads, negative_gradient_method=method, random_state=seed).fit(
        affinities=affinities, initialization=start)
    return np.asarray(embedding, dtype=np.float32)


def place_points(reference_vectors: np.ndarray, reference_map: np.ndarray, new_vectors: np.ndarray,
                 seed: int = DEFAULT_SEED) -> np.ndarray:
    """Coordinates for ``new_vectors`` in an existing map, the reference points left where they are."""
    new_vectors = np.ascontiguousarray(new_vectors, dtype=np.float32)
    if not len(new_vectors):
        return np.zeros((0, 2), np.float32)
    # FFT interpolation against the fixed reference is what openTSNE designed transform for; its "auto" would
    # pick Barnes-Hut for a few new points, 2.5x slower per step here (0.13 s against 0.05 s, 1,000 into 11,000)
    reference = TSNEEmbedding(np.asarray(reference_map, dtype=np.float64), _Reference(reference_vectors),
                              n_jobs=_threads(len(reference_map)), negative_gradient_method="fft",
                              random_state=seed)
    placed = np.asarray(reference.transform(new_vectors), dtype=np.float32)
    # A copy of a photo on the map goes beside it: transform() puts a point among its ~5 nearest at perplexity 5,
    # which on a loosely clustered map can be a region away from the one photo it is the same as.
    similarity, nearest_row = _nearest_reference(reference_vectors, new_vectors)
    copies = similarity >= SAME_PHOTO
    if copies.any():
        spread = float(np.linalg.norm(reference_map - reference_map.mean(axis=0), axis=1).mean())
        offset = np.random.default_rng(seed).normal(0, 0.01 * spread, (int(copies.sum()), 2))
        placed[copies] = reference_map[nearest_row[copies]] + offset.astype(np.float32)
    return placed


def _nearest_reference(reference_vectors: np.ndarray, new_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarities, rows = flat_index(reference_vectors).search(new_vectors, 1)
    return similarities[:, 0], rows[:, 0]


def can_place(reference_count: int) -> bool:
    """Whether a map of ``reference_count`` points is a t-SNE that new points can be placed into."""
    return reference_count >= MIN_POINTS


def _pca_map(vectors: np.ndarray) -> np.ndarray:
    count = len(vectors)
    if count < 3:
        return np.array([[float(i), 0.0] for i in range(count)], dtype=np.float32).reshape(count, 2)
    centred = vectors - vectors.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    return (centred @ axes[:2].T).astype(np.float32)


class _FaissNeighbours(KNNIndex):
    """openTSNE's nearest-neighbour interface answered by FAISS (exact, or IVF for large libraries)."""

    VALID_METRICS = ["euclidean"]

    def __init__(self, data: np.ndarray, k: int):
        super().__init__(data, k, metric="euclidean")

    def build(self):
        similarities, rows = nearest(self.data, self.k)
        return rows, _euclidean(similarities)

    def query(self, query, k):
        index = flat_index(self.data)  # a few new points: exact, and no cells to build
        similarities, rows = index.search(np.ascontiguousarray(query, dtype=np.float32), min(k, self.n_samples))
        return rows, _euclidean(similarities)


class _Reference(Affinities):
    """The affinities of new points to a saved map's points: what openTSNE's ``transform`` needs, without the
    reference points' own affinity matrix (it is only used to optimise the reference, which stays put)."""

    def __init__(self, vectors: np.ndarray):
        super().__init__()
        self.knn_index = _FaissNeighbours(np.ascontiguousarray(vectors, dtype=np.float32), 1)
        self.P = scipy.sparse.csr_matrix((len(vectors), len(vectors)))

    def to_new(self, data, perplexity=5, return_distances=False, k_neighbors="auto"):
        count = self.knn_index.n_samples
        k = min(count, int(3 * perplexity)) if k_neighbors == "auto" else int(k_neighbors)
        perplexity = min(perplexity, k / 3.0)
        neighbours, distances = self.knn_index.query(data, k)
        P = joint_probabilities_nn(neighbours, distances, [perplexity], symmetrize=False,
                                   normalization="point-wise", n_reference_samples=count, n_jobs=_threads(count))
        return (P, neighbours, distances) if return_distances else P
