"""What the analyses return through ``Library``: small frozen dataclasses that carry catalog ids and paths.

The analyses work on ids; ``Library`` fills in the paths. ``to_dict`` gives what ``--json`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos that are the same picture: ``ids``/``paths`` with the suggested keeper first, and the lowest cosine
    similarity between two of them."""

    ids: tuple[int, ...]
    paths: tuple[str, ...]
    similarity: float

    @property
    def keep(self) -> str:
        return self.paths[0]

    @property
    def keep_id(self) -> int:
        return self.ids[0]

    def to_dict(self) -> dict:
        return {"keep": self.keep, "paths": list(self.paths), "similarity": round(self.similarity, 6),
                "ids": list(self.ids)}


@dataclass(frozen=True)
class Outlier:
    """A photo and how unusual it is: its mean cosine distance to its nearest neighbours (higher = odder)."""

    id: int
    path: str
    score: float

    def to_dict(self) -> dict:
        return {"path": self.path, "score": round(self.score, 6), "id": self.id}


@dataclass(frozen=True)
class Theme:
    """A group of similar photos, named by the label that sets it apart; ``labels`` are the best few with their
    mean standardised scores."""

    name: str
    ids: tuple[int, ...]
    representative_id: int
    labels: tuple[tuple[str, float], ...] = ()
    paths: tuple[str, ...] = ()
    representative: str = ""

    @property
    def size(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "representative": self.representative,
                "paths": list(self.paths), "labels": [{"label": n, "z": z} for n, z in self.labels]}


@dataclass(frozen=True)
class MapPoint:
    """Where a photo sits on the 2-D map, and the name of its theme."""

    id: int
    path: str
    x: float
    y: float
    theme: str

    def to_dict(self) -> dict:
        return {"path": self.path, "x": round(self.x, 4), "y": round(self.y, 4), "theme": self.theme, "id": self.id}


@dataclass(frozen=True)
class PhotoTags:
    """A photo's matching labels, best first, with their scores (0..1)."""

    id: int
    path: str
    tags: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict:
        return {"path": self.path, "tags": [{"label": t, "score": round(s, 6)} for t, s in self.tags], "id": self.id}
