"""Fixtures for the reliability tests: a hostile library generator and hash-embedder libraries under tmp_path.

Most tests use the deterministic ``HashEmbedder`` (plumbing); none needs the trained model except where said.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from clipsearch import Library, ModelSpec
from tests.conftest import HashEmbedder
from tests.reliability.hostile import Expected, header_bomb_png, make_hostile_library, palette_bomb_png

HASH_SPEC = ModelSpec("hash-test", "none")
# Mounting a tmpfs or dropping capabilities needs root: CI runs as root, so these run there.
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts a tmpfs / drops capabilities)")


@pytest.fixture(scope="session")
def bomb_bytes() -> dict[str, bytes]:
    """The two decompression bombs, built once (the 144 MP one takes a moment to compress)."""
    return {"palette": palette_bomb_png(), "header": header_bomb_png()}


@pytest.fixture
def hostile(tmp_path, bomb_bytes) -> Expected:
    """A fresh hostile library under tmp_path/photos."""
    return make_hostile_library(tmp_path / "photos", bomb_bytes)


@pytest.fixture
def hash_library(tmp_path):
    """Factory: a library under tmp_path using the HashEmbedder (returns the library; embedder at .embedder)."""

    def make(name: str = "index", embedder=None) -> Library:
        library = Library.open(tmp_path / name, model=HASH_SPEC, create=True)
        library.use_embedder(embedder or HashEmbedder(HASH_SPEC))
        return library

    return make


def catalog_paths(library: Library) -> dict[bytes, tuple[str, str | None]]:
    """Every catalog row as {raw path bytes: (status, reason)}, read straight from SQLite."""
    import sqlite3

    db = sqlite3.connect(os.path.join(library.directory, "catalog.sqlite"))
    try:
        return {bytes(p): (s, r) for p, s, r in db.execute("SELECT path, status, reason FROM files")}
    finally:
        db.close()


def rel(expected: Expected, path: bytes) -> bytes:
    return os.path.relpath(path, os.fsencode(expected.root))



REPO = Path(__file__).resolve().parents[2]


def run_crashloop(work: Path, *args: str, timeout: int) -> dict:
    """Run tools/crashloop.py (kill indexing runs at random, restart, compare with a clean run); its summary."""
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "crashloop.py"), *args, "--work", str(work)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )
    summary = json.loads(out.stdout)
    assert out.returncode == 0 and summary["equal"], (summary["problems"], f"seed {summary['seed']}")
    return summary


def assert_kills_landed_mid_run(summary: dict) -> None:
    """At least one kill came after its own run had committed a batch (read from the catalog's generation, not
    from where the loop aimed) while the catalog still lacked rows: a run that was cut off and resumed."""
    stored, commits, total = summary["stored_at_kill"], summary["commits_before_each_kill"], summary["rows"]
    assert len(stored) == len(commits) == summary["kills"], summary
    assert any(c >= 1 and 0 < n < total for c, n in zip(commits, stored)), (
        f"no kill landed after a commit of its run (commits before each kill {commits}, stored rows at each kill "
        f"{stored} of {total}; seed {summary['seed']})")


class SteppedEmbedder(HashEmbedder):
    """Encodes one batch per ``step()`` of the test: the run pauses before each batch until the test lets it go,
    so the test decides what happens between two commits (no sleeps, no races)."""

    def __init__(self, spec):
        super().__init__(spec)
        self.waiting = threading.Semaphore(0)  # released when a batch is ready to be encoded
        self.go = threading.Semaphore(0)

    def encode_pixels(self, pixels):
        self.waiting.release()
        assert self.go.acquire(timeout=60), "the test never let the batch go"
        return super().encode_pixels(pixels)

    def next_batch_waiting(self) -> bool:
        return self.waiting.acquire(timeout=60)
