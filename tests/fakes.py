"""Test doubles shared by the tests and tools/crashloop.py."""

from __future__ import annotations

import hashlib
import time

import numpy as np

from clipsearch.decode import PixelSpec
from clipsearch.models import ModelSpec


class HashEmbedder:
    """A trivial deterministic embedder with the Embedder interface, for plumbing tests.

    Images map to a unit vector derived from their pixels' mean colour and a hash; texts from a hash.
    ``calls`` counts how many images were encoded, so tests can prove nothing was re-embedded.
    """

    dim = 16

    def __init__(self, spec: ModelSpec | None = None, slow: float = 0.0):
        self.spec = spec or ModelSpec("hash-test", "none")
        self.pixel_spec = PixelSpec(size=32)
        self.calls = 0
        self.slow = slow  # seconds per batch: widens the window in which the crash loop's kills land mid-run

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(self.slow)
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
