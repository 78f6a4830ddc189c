"""Fixtures shared by every test: the bundled tiny model, generated scenes, and libraries under tmp_path.

Nothing is downloaded and nothing is written into the repository: every on-disk state lives under tmp_path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from clipsearch import Library, ModelSpec  # noqa: E402
from clipsearch.testing import HashEmbedder  # noqa: E402,F401  (re-exported for tests)

HELD_OUT_SEED = 424242  # never used in training (tools/train_tiny.py)


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Exported towers (``$CLIPSEARCH_CACHE``: ONNX image towers, light bundles) go to one session folder under
    tmp, never the user's cache; subprocesses inherit it."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("clipsearch-cache")
    mp.setenv("CLIPSEARCH_CACHE", str(folder))
    yield folder
    mp.undo()


@pytest.fixture(scope="session")
def tiny_spec() -> ModelSpec:
    return ModelSpec.parse("clipsearch-tiny")


@pytest.fixture(scope="session")
def tiny_embedder(tiny_spec):
    """The bundled, trained clipsearch-tiny model, loaded once per test session."""
    from clipsearch.model.embed import Embedder

    return Embedder.load(tiny_spec)


@pytest.fixture(scope="session")
def scenes(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A held-out library of 120 generated scenes with captions: (folder, records)."""
    from clipsearch.world.synthetic import generate_library

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


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


def read_captions(folder: Path) -> dict[str, str]:
    with open(folder / "captions.jsonl") as handle:
        return {json.loads(line)["file"]: json.loads(line)["caption"] for line in handle}


def all_vectors(library: Library):
    """Every (id, vector) of a library, through its public chunked read API."""
    import numpy as np

    chunks = list(library.iter_vectors())
    if not chunks:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])
