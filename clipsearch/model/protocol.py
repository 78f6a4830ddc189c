"""What the indexer and ``Library`` need from a model: the one interface every embedder implements.

``clipsearch.model.embed.Embedder`` (open_clip) is the real one; ``clipsearch.testing.HashEmbedder`` is the
deterministic test double. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from clipsearch.imaging.decode import PixelSpec

if TYPE_CHECKING:
    from PIL import Image


@runtime_checkable
class EmbeddingModel(Protocol):
    """Encodes images and texts into L2-normalised float32 vectors of ``dim`` dimensions."""

    dim: int
    # How decode workers should prepare pixels for ``encode_pixels``; ``None``: send whole images instead.
    pixel_spec: PixelSpec | None

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """A uint8 batch ``(n, size, size, 3)`` prepared with ``pixel_spec`` → ``(n, dim)``."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB images → ``(n, dim)``."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → ``(n, dim)``."""
        ...
