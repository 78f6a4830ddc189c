"""Themes: the library clustered in the full embedding space, each cluster named by zero-shot labels.

Clustering is scikit-learn's k-means on the unit vectors (Euclidean distance on unit vectors orders pairs as
cosine similarity does), seeded, so an index always gives the same themes. Unless a count is given, k is the
candidate with the best silhouette (cosine), each candidate fitted on a fixed sample of at most
``SAMPLE_FIT`` vectors and scored on ``SAMPLE_SCORE``; the chosen k is then fitted on every vector. HDBSCAN would
choose k by itself but is quadratic in high dimensions and leaves photos unassigned; every photo here is in
exactly one theme.

Names: each label's similarity to every photo is standardised over the library (a z-score per label), and a
theme takes the label whose mean z-score over its members is highest: the label that sets the theme apart,
not the one the model likes for every photo (on the tiny model's scenes this raised the share of members whose
caption holds the theme's name from 0.55 to 0.76). The representative is the member nearest the theme's mean
direction, which is also the member with the highest mean similarity to the others (the cosine medoid).
"""

from __future__ import annotations

import math

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.explore.results import Theme

CANDIDATE_COUNTS = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)
MAX_THEMES = 100
MIN_THEMES = 8  # the floor never rises above this: 100k photos of 40 true themes must still be able to give 40
SAMPLE_FIT = 5_000  # enough for 100 themes of 50 photos; 17 candidate fits stay seconds at 100k photos
SAMPLE_SCORE = 2_500
TOP_LABELS = 3


def candidate_counts(count: int) -> list[int]:
    """The numbers of themes tried for ``count`` photos: from half the rule of thumb sqrt(count / 2) (but at
    most ``MIN_THEMES``) up to about sqrt(count), at most ``MAX_THEMES``. Silhouette alone favours the coarsest
    split (on the demo's 300 scenes: 0.36 for 2 themes, photo scenes against shape scenes, 0.17-0.21 for 6-17),
    which names nothing a person would call a theme."""
    ceiling = min(MAX_THEMES, max(2, int(math.sqrt(count))), count - 1)
    floor = min(ceiling, MIN_THEMES, max(2, math.ceil(math.sqrt(count / 2) / 2)))
    return [k for k in CANDIDATE_COUNTS if floor <= k <= ceiling]


def cluster(vectors: np.ndarray, count: int | None = None, seed: int = 0) -> np.ndarray:
    """A theme number (0..k-1) for every row; k is ``count`` or chosen by silhouette."""
    from sklearn.cluster import KMeans

    total = len(vectors)
    if total == 0:
        raise ClipsearchError("there are no photos to group into themes")
    if count is not None and not 1 <= count <= total:
        raise ClipsearchError(f"cannot make {count} themes from {total} photos: give 1 to {total}")
    if count is None:
        count = choose_count(vectors, seed)
    if count == 1:
        return np.zeros(total, np.int64)
    model = KMeans(count, n_init=2, random_state=seed).fit(vectors)
    return _renumber(model.labels_)


def choose_count(vectors: np.ndarray, seed: int = 0) -> int:
    """The candidate number of themes with the best silhouette; 1 for a library too small to split."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    candidates = candidate_counts(len(vectors))
    if not candidates:
        return 1
    rng = np.random.default_rng(seed)
    fit_rows = _sample(rng, len(vectors), SAMPLE_FIT)
    score_rows = np.sort(rng.choice(len(fit_rows), min(len(fit_rows), SAMPLE_SCORE), replace=False))
    best, best_score = 1, -np.inf
    for k in candidates:
        labels = KMeans(k, n_init=1, max_iter=100, random_state=seed).fit_predict(vectors[fit_rows])
        scored = labels[score_rows]
        if len(np.unique(scored)) < 2:
            continue
        score = silhouette_score(vectors[fit_rows][score_rows], scored, metric="cosine")
        if score > best_score + 1e-9:
            best, best_score = k, score
    return best


def describe(ids: np.ndarray, vectors: np.ndarray, assignment: np.ndarray, labels: list[str],
             label_vectors: np.ndarray) -> list[Theme]:
    """Name each theme and pick its representative; themes largest first (paths are left for the caller)."""
    scores = vectors @ label_vectors.T  # (photos, labels) cosine similarities
    spread = scores.std(axis=0)
    z = (scores - scores.mean(axis=0)) / np.where(spread > 1e-9, spread, 1.0)
    themes = []
    for number in range(int(assignment.max()) + 1):
        rows = np.flatnonzero(assignment == number)
        if not len(rows):
            continue
        mean_z = z[rows].mean(axis=0)
        best = np.lexsort((np.arange(len(labels)), -mean_z))[:TOP_LABELS]
        centre = vectors[rows].mean(axis=0)
        representative = int(ids[rows[int(np.argmax(vectors[rows] @ centre))]])
        themes.append(Theme(labels[best[0]], tuple(int(i) for i in ids[rows]), representative,
                            tuple((labels[b], round(float(mean_z[b]), 4)) for b in best)))
    return sorted(themes, key=lambda t: (-t.size, t.ids[0]))


def _sample(rng: np.random.Generator, total: int, size: int) -> np.ndarray:
    return np.arange(total) if total <= size else np.sort(rng.choice(total, size, replace=False))


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Theme numbers in order of first appearance, so equal clusterings give equal numbers."""
    values, first = np.unique(labels, return_index=True)
    mapping = np.zeros(int(values.max()) + 1, np.int64)
    mapping[values[np.argsort(first)]] = np.arange(len(values))
    return mapping[labels]
