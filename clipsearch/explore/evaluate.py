"""How well text finds the right photo in a user's own library: recall@K and mean reciprocal rank.

A captions file names photos and describes them, as JSON lines (``{"file": ..., "caption": ...}``) or CSV
(``file,caption``, with or without that header); files are relative to the captions file's folder or absolute.
Each caption whose photo is indexed is a query; its photo's rank among all indexed photos (1 = the best match,
ties counted in its favour) gives recall@K (the share ranked K or better) and MRR (the mean of 1 / rank).
Indexing one folder with two models and evaluating both compares the models on the user's own photos.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.explore.userfiles import read_user_text

DEFAULT_KS = (1, 5, 10)
MAX_CAPTIONS_BYTES = 64 * 1024 * 1024
_BATCH = 256


@dataclass(frozen=True)
class Caption:
    """One usable line of a captions file: the photo's real path and the words describing it."""

    path: str
    caption: str
    line: int


@dataclass
class Evaluation:
    """Recall at each K and MRR over ``n`` captions; ``skipped`` captions, counted by ``reasons``."""

    n: int
    recall: dict[int, float]
    mrr: float
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"n": self.n, "recall": {str(k): round(v, 6) for k, v in self.recall.items()},
                "mrr": round(self.mrr, 6), "skipped": self.skipped, "reasons": dict(self.reasons)}


def read_captions(path: str | os.PathLike) -> tuple[list[Caption], Counter]:
    """The usable captions of a file and a count of the lines skipped, by reason."""
    text = read_user_text(path, "captions file", encoding="utf-8-sig", max_bytes=MAX_CAPTIONS_BYTES)
    base = os.path.dirname(os.path.abspath(os.fspath(path)))
    rows = _jsonl_rows(text) if _looks_like_jsonl(path, text) else _csv_rows(text)
    captions, skipped = [], Counter()
    for line, row in rows:
        if row is None:
            skipped["malformed line"] += 1
            continue
        file, caption = row
        if not file.strip() or not caption.strip():
            skipped["empty file or caption"] += 1
            continue
        full = os.path.join(base, os.path.expanduser(file.strip()))
        captions.append(Caption(os.path.realpath(full), caption.strip(), line))
    if not captions and not skipped:
        raise ClipsearchError(f"no captions in {path}: expected JSON lines {{\"file\": ..., \"caption\": ...}} "
                              "or CSV file,caption")
    if not captions:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items())
        raise ClipsearchError(f"no usable captions in {path} ({reasons}): expected JSON lines "
                              "{\"file\": ..., \"caption\": ...} or CSV file,caption")
    return captions, skipped


def rank_targets(queries: np.ndarray, targets: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """For each query vector, the 1-based rank of row ``targets[i]`` among all rows of ``vectors``."""
    ranks = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), _BATCH):
        block = queries[start:start + _BATCH] @ vectors.T
        own = block[np.arange(len(block)), targets[start:start + _BATCH]]
        ranks[start:start + _BATCH] = 1 + (block > own[:, None]).sum(axis=1)
    return ranks


def summarise(ranks: np.ndarray, ks: Sequence[int]) -> tuple[dict[int, float], float]:
    """Recall at each K and the mean reciprocal rank."""
    recall = {int(k): float((ranks <= k).mean()) for k in ks}
    return recall, float((1.0 / ranks).mean())


def encode_in_batches(encode_texts: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
    parts = [np.asarray(encode_texts(texts[i:i + _BATCH]), dtype=np.float32) for i in range(0, len(texts), _BATCH)]
    return np.concatenate(parts)


def _looks_like_jsonl(path, text: str) -> bool:
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension in (".jsonl", ".ndjson", ".json"):
        return True
    if extension in (".csv", ".tsv"):
        return False
    return text.lstrip().startswith("{")


def _jsonl_rows(text: str):
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            yield line, None
            continue
        if not isinstance(record, dict) or not isinstance(record.get("file"), str) \
                or not isinstance(record.get("caption"), str):
            yield line, None
            continue
        yield line, (record["file"], record["caption"])


def _csv_rows(text: str):
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text))):
            if not row or not any(cell.strip() for cell in row):
                continue
            if number == 0 and [c.strip().lower() for c in row[:2]] == ["file", "caption"]:
                continue
            yield number + 1, (row[0], ",".join(row[1:])) if len(row) >= 2 else None
    except csv.Error:
        yield 0, None
