"""Test doubles for code built on clipsearch: a deterministic stand-in model with the ``EmbeddingModel``
interface. Used by clipsearch's own tests, tools and benchmarks; no torch, no weights."""

from __future__ import annotations

import hashlib
import time

import numpy as np

from clipsearch.imaging.decode import PixelSpec, resize_and_crop
from clipsearch.model.models import ModelSpec


class HashEmbedder:
    """A trivial deterministic embedder, for plumbing tests.

    Images map to a unit vector derived from a hash of their pixels; texts from a hash of their bytes.
    ``calls`` counts how many images were encoded, so tests can prove nothing was re-embedded.
    """

    def __init__(self, spec: ModelSpec | None = None, slow: float = 0.0, dim: int = 16, size: int = 32):
        self.spec = spec or ModelSpec("hash-test", "none")
        self.dim = dim
        self.pixel_spec = PixelSpec(size=size)
        self.calls = 0
        self.slow = slow  # seconds per batch: widens the window in which a crash test's kills land mid-run

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(self.slow)
        self.calls += len(pixels)
        return np.stack([self._unit(p.tobytes()) for p in pixels])

    def encode_images(self, images) -> np.ndarray:
        return self.encode_pixels(np.stack([resize_and_crop(im, self.pixel_spec) for im in images]))

    def encode_texts(self, texts) -> np.ndarray:
        return np.stack([self._unit(t.encode()) for t in texts])

    def _unit(self, data: bytes) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)
