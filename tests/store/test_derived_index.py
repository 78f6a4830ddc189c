"""The FAISS index is derived from the catalog: a reader catches up with a writer's batches by applying only
what changed, and rebuilds from the catalog when it cannot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch import IndexOptions, Library, ModelSpec
from clipsearch.store import catalog as catalog_module
from clipsearch.store import vectors as vectors_module
from clipsearch.testing import HashEmbedder

SPEC = ModelSpec("hash-test", "none")


def photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def open_library(directory: Path, embedder: HashEmbedder) -> Library:
    library = Library.open(directory, model=SPEC, create=True)
    library.use_embedder(embedder)
    return library


@pytest.fixture
def rebuilds(monkeypatch) -> list[int]:
    """Counts full rebuilds of a FAISS index from the catalog's vectors."""
    calls: list[int] = []
    original = vectors_module.VectorIndex.build_from_chunks.__func__

    def counting(cls, chunks, stamp):
        calls.append(1)
        return original(cls, chunks, stamp)

    monkeypatch.setattr(vectors_module.VectorIndex, "build_from_chunks", classmethod(counting))
    return calls


def indexed(tmp_path: Path, count: int) -> tuple[Path, HashEmbedder, Library]:
    """``count`` photos, indexed once: (photo folder, the embedder, the writing library)."""
    photos = tmp_path / "photos"
    for i in range(count):
        photo(photos / f"p{i}.png", i)
    embedder = HashEmbedder(SPEC)
    writer = open_library(tmp_path / "index", embedder)
    writer.index([photos], IndexOptions(workers=0))
    return photos, embedder, writer


def paths_found(library: Library) -> set[str]:
    return {os.path.basename(h.path) for h in library.search("anything", top_k=1000)}


def test_a_reader_catches_up_with_added_changed_and_deleted_files_without_a_rebuild(tmp_path, rebuilds):
    photos, embedder, writer = indexed(tmp_path, 6)
    reader = open_library(tmp_path / "index", embedder)
    assert paths_found(reader) == {f"p{i}.png" for i in range(6)}
    rebuilds.clear()
    photo(photos / "p6.png", 6)  # new
    photo(photos / "p0.png", 100)  # changed
    (photos / "p1.png").unlink()  # deleted
    (photos / "p2.png").write_bytes(b"now broken")  # was indexed, now skipped
    writer.index(options=IndexOptions(workers=0))
    assert paths_found(reader) == {"p0.png", "p3.png", "p4.png", "p5.png", "p6.png"}
    assert rebuilds == []  # only what changed was applied
    changed = reader.file(next(h.id for h in reader.search("x", top_k=10) if h.path.endswith("p0.png")))
    expected = embedder.encode_images([Image.open(photos / "p0.png").convert("RGB")])[0]
    assert np.allclose(reader.vector_of(changed.id), expected)
    assert np.isclose(reader.search_vector(expected, 1)[0].score, 1.0, atol=1e-5)  # its new vector is searched


def test_a_reader_further_behind_than_the_removal_log_rebuilds_from_the_catalog(tmp_path, rebuilds, monkeypatch):
    monkeypatch.setattr(catalog_module, "REMOVAL_LOG_GENERATIONS", 1)
    photos, embedder, writer = indexed(tmp_path, 4)
    reader = open_library(tmp_path / "index", embedder)
    assert len(paths_found(reader)) == 4
    rebuilds.clear()
    for name in ("p0.png", "p1.png"):  # two runs, two generations of removals: the log keeps one
        (photos / name).unlink()
        writer.index(options=IndexOptions(workers=0))
    assert paths_found(reader) == {"p2.png", "p3.png"}
    assert rebuilds == [1]


def test_the_writer_saves_the_caught_up_index_so_a_new_reader_loads_it_without_a_rebuild(tmp_path, rebuilds):
    photos, embedder, writer = indexed(tmp_path, 5)
    photo(photos / "p5.png", 5)
    writer.index(options=IndexOptions(workers=0))
    rebuilds.clear()
    fresh = open_library(tmp_path / "index", embedder)
    assert fresh.vector_index_is_saved()
    assert len(paths_found(fresh)) == 6 and rebuilds == []


def test_a_file_whose_stat_changed_but_not_its_bytes_keeps_its_vector(tmp_path):
    photos = tmp_path / "photos"
    for i in range(3):
        photo(photos / f"p{i}.png", i)
    photo(photos / "p3.bmp", 3)  # uncompressed: other pixels, same size
    embedder = HashEmbedder(SPEC)
    library = open_library(tmp_path / "index", embedder)
    library.index([photos], IndexOptions(workers=0))
    before = {h.path: h.id for h in library.search("x", top_k=10)}
    embedder.calls = 0
    os.utime(photos / "p0.png", (2_000_000_000, 2_000_000_000))  # touched
    shutil.copy2(photos / "p1.png", tmp_path / "backup.png")  # restored from a backup: new inode, old times
    os.replace(tmp_path / "backup.png", photos / "p1.png")
    size = (photos / "p3.bmp").stat().st_size
    photo(photos / "p3.bmp", 33)  # same size, other bytes: embedded again
    assert (photos / "p3.bmp").stat().st_size == size
    report = library.index(options=IndexOptions(workers=0))
    assert (report.indexed, report.unchanged, report.skipped) == (1, 3, [])
    assert embedder.calls == 1  # the rewritten file only; the touched and the restored ones keep their vectors
    after = {h.path: h.id for h in library.search("x", top_k=10)}
    assert after[str(photos / "p0.png")] == before[str(photos / "p0.png")]
    assert after[str(photos / "p1.png")] == before[str(photos / "p1.png")]
    row = library.file(after[str(photos / "p1.png")])
    assert row.inode == os.stat(photos / "p1.png").st_ino  # the new stat is recorded: next run skips by stat
    embedder.calls = 0
    again = library.index(options=IndexOptions(workers=0))
    assert again.indexed == 0 and again.unchanged == 4 and embedder.calls == 0
