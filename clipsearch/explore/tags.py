"""Zero-shot tags: which of a few labels each photo shows, with a score from 0 to 1.

Each label is judged on its own against a neutral prompt ("a photo.", averaged over a few wordings): the score
is the probability the model gives the label in a two-way choice between the two, at the model's own
temperature (its logit scale, as in open_clip's zero-shot classification). So a photo may get several tags or
none, and a label's score does not depend on which other labels were asked for; 0.5 means "no better than
saying nothing".
"""

from __future__ import annotations

import numpy as np

NEUTRAL_PROMPTS = ("a photo.", "a picture.", "an image.", "a photo of something.")
DEFAULT_MIN_SCORE = 0.5
DEFAULT_LOGIT_SCALE = 100.0  # CLIP's trained temperature (open_clip clamps it there); used when a model has none


def tag_scores(vectors: np.ndarray, label_vectors: np.ndarray, neutral_vector: np.ndarray,
               logit_scale: float = DEFAULT_LOGIT_SCALE) -> np.ndarray:
    """float32[photos, labels]: each label's probability against the neutral prompt."""
    margin = vectors @ label_vectors.T - (vectors @ neutral_vector)[:, None]
    return (1.0 / (1.0 + np.exp(-logit_scale * margin))).astype(np.float32)


def matching(scores: np.ndarray, min_score: float) -> list[list[tuple[int, float]]]:
    """For each photo, ``(label index, score)`` of the labels at or above ``min_score``, best first."""
    result = []
    for row in scores:
        hits = np.flatnonzero(row >= min_score)
        hits = hits[np.lexsort((hits, -row[hits]))]
        result.append([(int(h), float(row[h])) for h in hits])
    return result
