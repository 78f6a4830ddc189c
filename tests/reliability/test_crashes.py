"""Killed runs, broken index files, vanished roots and full disks: the catalog stays the truth and runs resume."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from clipsearch import IndexOptions, IndexStoreError, Library
from clipsearch.library import VECTORS_FILE
from clipsearch.store.vectors import MAGIC, VectorIndex
from tests.reliability.conftest import (
    HASH_SPEC,
    assert_kills_landed_mid_run,
    catalog_paths,
    needs_root,
    run_crashloop,
)
from tests.reliability.hostile import encoded, picture

REPO = Path(__file__).resolve().parents[2]


def fill(root: Path, count: int, start: int = 0) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        (root / f"p{i:03}.png").write_bytes(encoded(picture(i, (40, 30)), "PNG"))


def test_crash_loop_of_sigkilled_runs_ends_equal_to_a_clean_run(tmp_path):
    summary = run_crashloop(tmp_path / "loop", "--files", "60", "--kills", "6", "--seed", "5", "--slow", "0.05",
                            timeout=200)
    assert_kills_landed_mid_run(summary)


def test_a_kill_while_the_faiss_file_is_written_leaves_the_previous_index_loadable(tmp_path):
    path = str(tmp_path / VECTORS_FILE)
    import numpy as np

    VectorIndex.build(np.arange(3), np.eye(3, 16, dtype=np.float32), {"generation": 1}).save(path)
    child = subprocess.Popen([sys.executable, "-m", "tests.programs.save_then_hang", path], cwd=REPO,
                             stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"writing\n"  # the new file is half way: written, not yet renamed
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the killed writer's temporary file
    previous = VectorIndex.load(path, {"generation": 1})
    assert previous is not None and len(previous) == 3
    VectorIndex.build(np.arange(4), np.eye(4, 16, dtype=np.float32), {"generation": 2}).save(path)
    assert [p.name for p in tmp_path.iterdir()] == [VECTORS_FILE]  # the orphan is cleaned up by the next save


def damage_missing(path: Path) -> None:
    path.unlink()


def damage_truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def damage_flipped_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_foreign(path: Path) -> None:
    import faiss
    import numpy as np

    index = faiss.IndexFlatIP(16)
    index.add(np.eye(2, 16, dtype=np.float32))
    faiss.write_index(index, str(path))  # a real FAISS file, but not one of ours


def damage_empty(path: Path) -> None:
    path.write_bytes(b"")


def damage_magic_only(path: Path) -> None:
    path.write_bytes(MAGIC + b"\xff\xff\xff\xff")


@pytest.mark.parametrize("damage", [damage_missing, damage_truncated, damage_flipped_byte, damage_foreign,
                                    damage_empty, damage_magic_only])
def test_a_damaged_or_foreign_index_file_is_rebuilt_from_the_catalog_never_trusted_or_empty(
        damage, hash_library, tmp_path):
    fill(tmp_path / "photos", 12)
    library = hash_library()
    library.index([tmp_path / "photos"])
    before = [(h.path, round(h.score, 5)) for h in library.search("query", top_k=5)]
    library.close()
    damage(library.directory / VECTORS_FILE)
    reopened = hash_library()
    assert [(h.path, round(h.score, 5)) for h in reopened.search("query", top_k=5)] == before
    assert len(reopened.search("query", top_k=100)) == 12
    assert reopened.vector_index_is_saved()  # rewritten


def test_a_stale_index_file_from_an_older_catalog_state_is_rebuilt(hash_library, tmp_path):
    fill(tmp_path / "photos", 6)
    library = hash_library()
    library.index([tmp_path / "photos"])
    stale = (library.directory / VECTORS_FILE).read_bytes()
    fill(tmp_path / "photos", 4, start=6)
    library.index([tmp_path / "photos"])
    library.close()
    (library.directory / VECTORS_FILE).write_bytes(stale)
    assert len(hash_library().search("q", top_k=100)) == 10


def test_an_index_file_of_a_recreated_catalog_with_the_same_generation_is_not_trusted(hash_library, tmp_path):
    fill(tmp_path / "a", 5)
    fill(tmp_path / "b", 5, start=50)
    library = hash_library()
    library.index([tmp_path / "a"])
    library.close()
    old_faiss = (library.directory / VECTORS_FILE).read_bytes()
    for name in os.listdir(library.directory):
        os.unlink(library.directory / name)
    again = hash_library()
    again.index([tmp_path / "b"])  # a new catalog that reaches the same generation number
    again.close()
    (library.directory / VECTORS_FILE).write_bytes(old_faiss)
    paths = {h.path for h in hash_library().search("q", top_k=100)}
    assert paths == {str(tmp_path / "b" / f"p{i:03}.png") for i in range(50, 55)}


def test_a_missing_root_is_not_read_as_everything_deleted(hash_library, tmp_path):
    fill(tmp_path / "photos", 5)
    library = hash_library()
    library.index([tmp_path / "photos"])
    shutil.move(tmp_path / "photos", tmp_path / "unplugged")
    report = library.index()
    assert report.missing_roots == [str(tmp_path / "photos")] and report.removed == 0
    assert len(library.search("q", top_k=100)) == 5


def test_an_empty_root_folder_left_by_an_unmounted_drive_keeps_its_files(hash_library, tmp_path):
    fill(tmp_path / "photos", 5)
    library = hash_library()
    library.index([tmp_path / "photos"])
    shutil.move(tmp_path / "photos", tmp_path / "away")
    (tmp_path / "photos").mkdir()  # the bare mount point
    report = library.index()
    assert report.missing_roots == [str(tmp_path / "photos")] and report.removed == 0
    assert len(library.search("q", top_k=100)) == 5
    (tmp_path / "photos" / "other.txt").write_text("the drive is back, its photos gone")
    assert library.index().removed == 5  # a root with contents is believed


@needs_root
def test_an_empty_mount_point_is_not_read_as_everything_deleted(hash_library, tmp_path):
    mount = tmp_path / "drive"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        fill(mount, 5)
        library = hash_library()
        library.index([mount])
        for name in os.listdir(mount):
            os.unlink(mount / name)  # the same mount point, now empty (a drive that failed to come up)
        report = library.index()
        assert report.missing_roots == [str(mount)] and report.removed == 0
        assert len(library.search("q", top_k=100)) == 5
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@needs_root
def test_disk_full_while_indexing_gives_a_clear_error_keeps_committed_batches_and_resumes(hash_library, tmp_path):
    """A real full disk: the index lives on a 600 KB tmpfs; 40 rows of 16 KB vectors cannot all fit."""
    fill(tmp_path / "photos", 40)
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], check=True)
    try:
        from tests.conftest import HashEmbedder

        def wide_embedder():
            return HashEmbedder(HASH_SPEC, dim=4096)  # 16 KB per vector

        library = Library.open(disk / "index", model=HASH_SPEC, create=True)
        library.use_embedder(wide_embedder())
        with pytest.raises(IndexStoreError, match="could not write to the catalog.*disk is full.*run the same"):
            library.index([tmp_path / "photos"], IndexOptions(batch_size=4, workers=1))
        stored = len(catalog_paths(library))
        assert 0 < stored < 40 and stored % 4 == 0  # whole batches only
        assert len(library.search("q", top_k=100)) == stored  # what was committed is searchable
        library.close()
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)  # space freed
        resumed = Library.open(disk / "index", model=HASH_SPEC)
        resumed.use_embedder(wide_embedder())
        report = resumed.index(options=IndexOptions(batch_size=4, workers=1))
        assert report.indexed == 40 - stored and report.unchanged == stored
        assert len(resumed.search("q", top_k=100)) == 40
        resumed.close()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_disk_full_while_saving_the_faiss_file_costs_only_the_cache(hash_library, tmp_path, monkeypatch):
    fill(tmp_path / "photos", 6)
    library = hash_library()
    library.index([tmp_path / "photos"])
    fill(tmp_path / "photos", 2, start=6)

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    library.index([tmp_path / "photos"])  # the catalog write succeeds; the cache cannot be saved
    assert len(library.search("q", top_k=100)) == 8
    assert not [p for p in os.listdir(library.directory) if ".tmp-" in p]
    monkeypatch.undo()
    library.close()
    assert len(hash_library().search("q", top_k=100)) == 8  # the stale file on disk is rebuilt, not trusted


def test_a_run_killed_mid_batch_loses_at_most_that_batch(hash_library, tmp_path):
    """In-process version of the crash loop: the embedder dies on the third batch."""
    fill(tmp_path / "photos", 20)
    from tests.conftest import HashEmbedder

    class DiesOnThirdBatch(HashEmbedder):
        def encode_pixels(self, pixels):
            if self.calls >= 8:
                raise KeyboardInterrupt
            return super().encode_pixels(pixels)

    library = hash_library(embedder=DiesOnThirdBatch(HASH_SPEC))
    with pytest.raises(KeyboardInterrupt):
        library.index([tmp_path / "photos"], IndexOptions(batch_size=4, workers=1))
    assert len(catalog_paths(library)) == 8
    assert not [c for c in _children() if "_decode_worker" in c]  # the decode workers were stopped already
    library.use_embedder(HashEmbedder(HASH_SPEC))
    report = library.index(options=IndexOptions(batch_size=4, workers=1))
    assert (report.indexed, report.unchanged) == (12, 8)


def _children() -> list[str]:
    out = subprocess.run(["ps", "-o", "args=", "--ppid", str(os.getpid())], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "ps -o" not in line]


def test_catalog_rows_never_duplicate_a_file_after_moves_and_reruns(hash_library, tmp_path):
    fill(tmp_path / "photos", 6)
    library = hash_library()
    library.index([tmp_path / "photos"])
    os.rename(tmp_path / "photos" / "p000.png", tmp_path / "photos" / "renamed.png")
    report = library.index()
    assert report.moved == 1 and report.indexed == 0
    db = sqlite3.connect(library.directory / "catalog.sqlite")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT digest) FROM files").fetchone() == (6, 6)
