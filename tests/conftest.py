"""Fixtures shared by every test: the bundled tiny model, generated scenes, and libraries under tmp_path.

Nothing is downloaded and nothing is written into the repository: every on-disk state lives under tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from clipsearch import Library, ModelSpec  # noqa: E402
from clipsearch.decode import PixelSpec  # noqa: E402

HELD_OUT_SEED = 424242  # never used in training (tools/train_tiny.py)


@pytest.fixture(scope="session")
def tiny_spec() -> ModelSpec:
    return ModelSpec.parse("clipsearch-tiny")


@pytest.fixture(scope="session")
def tiny_embedder(tiny_spec):
    """The bundled, trained clipsearch-tiny model, loaded once per test session."""
    from clipsearch.embed import Embedder

    return Embedder.load(tiny_spec)


@pytest.fixture(scope="session")
def scenes(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A held-out library of 120 generated scenes with captions: (folder, records)."""
    from clipsearch.synthetic import generate_library

    folder = tmp_path_factory.mktemp("scenes")
    records = generate_library(folder, 120, HELD_OUT_SEED)
    return folder, records


@pytest.fixture(scope="session")
def scenes_library(tmp_path_factory, scenes, tiny_spec, tiny_embedder) -> Library:
    """The held-out scenes indexed once with the tiny model (read-only for tests)."""
    library = Library.open(tmp_path_factory.mktemp("scenes-index"), model=tiny_spec, create=True)
    library.use_embedder(tiny_embedder)
    library.index([scenes[0]])
    return library


@pytest.fixture
def make_library(tmp_path, tiny_spec, tiny_embedder):
    """Factory: a fresh library under tmp_path that shares the session's tiny model."""

    def make(name: str = "index", embedder=None, spec: ModelSpec | None = None) -> Library:
        library = Library.open(tmp_path / name, model=spec or tiny_spec, create=True)
        library.use_embedder(embedder or tiny_embedder)
        return library

    return make


class HashEmbedder:
    """A trivial deterministic embedder with the Embedder interface, for plumbing tests.

    Images map to a unit vector derived from their pixels' mean colour and a hash; texts from a hash.
    ``calls`` counts how many images were encoded, so tests can prove nothing was re-embedded.
    """

    dim = 16

    def __init__(self, spec: ModelSpec | None = None):
        self.spec = spec or ModelSpec("hash-test", "none")
        self.pixel_spec = PixelSpec(size=32)
        self.calls = 0

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.calls += len(pixels)
        return np.stack([self._unit(p.tobytes()) for p in pixels])

    def encode_images(self, images) -> np.ndarray:
        from clipsearch.decode import resize_and_crop

        return self.encode_pixels(np.stack([resize_and_crop(im, self.pixel_spec) for im in images]))

    def encode_texts(self, texts) -> np.ndarray:
        return np.stack([self._unit(t.encode()) for t in texts])

    def _unit(self, data: bytes) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


def read_captions(folder: Path) -> dict[str, str]:
    with open(folder / "captions.jsonl") as handle:
        return {json.loads(line)["file"]: json.loads(line)["caption"] for line in handle}
