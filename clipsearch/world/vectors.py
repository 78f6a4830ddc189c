"""Generated embeddings for index tests and benchmarks: a seeded mixture of clusters on the unit sphere.

Photo archives embed as clusters (events, places, people), each spread along a few directions, not as uniform
noise: uniform random vectors in 512 dimensions are all nearly orthogonal, an unrealistic worst case for any
approximate index. Here each cluster of about ``per_cluster`` points has a random centre on the sphere and
spreads in its own ``rank``-dimensional subspace (variance 0.4) plus isotropic noise (variance 0.16); points are
then normalised. A point's cosine to its centre is about 0.8; nearest neighbours are at about 0.8-0.9.
"""

from __future__ import annotations

import numpy as np


def clustered_unit_vectors(count: int, dim: int = 512, seed: int = 0, per_cluster: int = 500,
                           rank: int = 16) -> np.ndarray:
    """``count`` float32 unit vectors of ``dim``, the same for the same arguments."""
    return np.concatenate(list(clustered_chunks(count, dim, seed, per_cluster, rank)) or
                          [np.zeros((0, dim), np.float32)])


def clustered_chunks(count: int, dim: int = 512, seed: int = 0, per_cluster: int = 500, rank: int = 16,
                     chunk: int = 20_000):
    """The same vectors as ``clustered_unit_vectors``, ``chunk`` at a time (for sizes that do not fit twice)."""
    rng = np.random.default_rng(seed)
    clusters = max(20, count // per_cluster)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, clusters, count)
    local, noise = float(np.sqrt(0.4 / rank)), float(np.sqrt(0.16 / dim))
    for start in range(0, count, chunk):
        part = labels[start:start + chunk]
        z = rng.standard_normal((len(part), rank), dtype=np.float32) * local
        x = centres[part] + noise * rng.standard_normal((len(part), dim), dtype=np.float32)
        for c in np.unique(part):
            rows = part == c
            # each cluster's subspace comes from its own seed: none has to be kept for every cluster at once
            basis = np.random.default_rng([seed, int(c)]).standard_normal((rank, dim), dtype=np.float32)
            x[rows] += z[rows] @ (basis / np.sqrt(dim))
        yield (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32, copy=False)
