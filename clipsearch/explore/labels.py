"""Zero-shot labels: vocabularies, and one text vector per label averaged over prompt templates.

A label is read through every template ("a photo of {}.", ...), each text encoded and normalised, the mean
normalised again: the classifier that open_clip's ``build_zero_shot_classifier`` builds, which is more robust
than one prompt (Radford et al. 2021, section 3.1.4). The default vocabulary (``labels.txt`` beside this file)
is plain text a user can edit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.explore.userfiles import read_user_text

DEFAULT_LABELS_FILE = Path(__file__).with_name("labels.txt")
TEMPLATES = (
    "{}",
    "a photo of {}.",
    "a photo of the {}.",
    "a picture of {}.",
    "an image showing {}.",
    "a close-up photo of {}.",
    "a blurry photo of {}.",
)
MAX_LABEL_CHARS = 200
_TEXT_BATCH = 256


def read_labels_file(path: str | os.PathLike) -> list[str]:
    """Labels from a plain text file: one per line; blank lines and lines starting with ``#`` are skipped."""
    text = read_user_text(path, "labels file")
    lines = (line.strip() for line in text.splitlines())
    return clean_labels((line for line in lines if not line.startswith("#")), source=str(path))


def parse_labels(text: str) -> list[str]:
    """Labels from a comma-separated list: ``"beach, snow, city"``."""
    return clean_labels(text.split(","), source="--labels")


def clean_labels(labels: Iterable[str], source: str = "labels") -> list[str]:
    """Stripped, non-empty, each once (first spelling kept, case-insensitively); at least one."""
    seen: dict[str, str] = {}
    for label in labels:
        label = " ".join(label.split())
        if not label:
            continue
        if len(label) > MAX_LABEL_CHARS:
            raise ClipsearchError(f"a label in {source} is longer than {MAX_LABEL_CHARS} characters")
        seen.setdefault(label.casefold(), label)
    if not seen:
        raise ClipsearchError(f"no labels in {source}: give at least one")
    return list(seen.values())


def default_labels() -> list[str]:
    return read_labels_file(DEFAULT_LABELS_FILE)


def label_vectors(encode_texts: Callable[[Sequence[str]], np.ndarray], labels: Sequence[str],
                  templates: Sequence[str] = TEMPLATES) -> np.ndarray:
    """One unit vector per label (float32[len(labels), dim]): the normalised mean of its templates' vectors."""
    texts = [template.format(label) for label in labels for template in templates]
    encoded = np.concatenate([np.asarray(encode_texts(texts[i:i + _TEXT_BATCH]), dtype=np.float32)
                              for i in range(0, len(texts), _TEXT_BATCH)])
    encoded /= np.maximum(np.linalg.norm(encoded, axis=1, keepdims=True), 1e-12)
    means = encoded.reshape(len(labels), len(templates), -1).mean(axis=1)
    return (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)
