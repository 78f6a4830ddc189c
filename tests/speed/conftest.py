"""Fixtures for the fast-path correctness tests: small random-weight CLIPs and the trained tiny model's scenes.

Nothing here is timed. ONNX exports go to a per-session cache folder under tmp, never the user's cache.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipsearch.model.models import ModelSpec


@pytest.fixture(scope="session")
def onnx_cache(model_cache):
    """Every export made by these tests lands in the session's temporary cache folder (tests/conftest.py)."""
    return model_cache


def make_embedder(options=None, name: str = "clipsearch-tiny", seed: int = 0):
    """An Embedder around a freshly initialised open_clip model (random weights, seeded): for plumbing checks."""
    import open_clip
    import torch

    from clipsearch.model.embed import Embedder, EmbedOptions
    from clipsearch.model.models import register_tiny_model

    register_tiny_model()
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    model.eval()
    spec = ModelSpec(name, f"random-seed{seed}", None)  # a distinct identity per seed for the export cache
    return Embedder(spec, model, preprocess, open_clip.get_tokenizer(name), "cpu", options or EmbedOptions())


@pytest.fixture(scope="session")
def random_tiny():
    return make_embedder()


@pytest.fixture(scope="session")
def photo_like_images() -> list[Image.Image]:
    """A dozen small photo-like pictures in assorted shapes (landscape, portrait, square, odd sizes)."""
    from benchmarks.photos import photo_pixels

    rng = np.random.default_rng(7)
    sizes = [(320, 240), (240, 320), (256, 256), (401, 173), (173, 401), (640, 480), (97, 300), (300, 97)]
    return [Image.fromarray(photo_pixels(size, rng)) for size in sizes]


@pytest.fixture(scope="session")
def trained_tiny():
    """The bundled trained clipsearch-tiny (its weights are in the repository), loaded with given EmbedOptions."""
    from clipsearch.model.embed import Embedder, EmbedOptions

    return lambda **options: Embedder.load(ModelSpec.parse("clipsearch-tiny"), EmbedOptions(**options))
