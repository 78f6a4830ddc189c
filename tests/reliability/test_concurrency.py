"""Readers during a write, two writers, and catalogs this version must not touch."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipsearch import IndexLockedError, IndexOptions, IndexStoreError, Library, ModelMismatchError, ModelSpec
from clipsearch.cli import main
from tests.conftest import HashEmbedder
from tests.reliability.conftest import HASH_SPEC, SteppedEmbedder
from tests.reliability.hostile import encoded, picture

REPO = Path(__file__).resolve().parents[2]


def fill(root: Path, count: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"p{i:03}.png").write_bytes(encoded(picture(i, (40, 30)), "PNG"))


def test_searches_stay_consistent_while_an_index_run_is_in_progress(hash_library, tmp_path):
    fill(tmp_path / "photos", 24)
    embedder = SteppedEmbedder(HASH_SPEC)
    writer = hash_library(embedder=embedder)
    reader = Library.open(writer.directory)  # a second handle, like the web app's
    reader.use_embedder(HashEmbedder(HASH_SPEC))
    run = threading.Thread(target=writer.index, args=([tmp_path / "photos"], IndexOptions(batch_size=4, workers=1)))
    run.start()
    seen = []
    for _ in range(6):
        assert embedder.next_batch_waiting()
        hits = reader.search("anything", top_k=100)  # between two commits
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert len({h.path for h in hits}) == len(hits)
        seen.append(len(hits))
        embedder.go.release()
    run.join(60)
    assert not run.is_alive()
    writer.close()
    assert seen == [0, 4, 8, 12, 16, 20]  # each search saw exactly the batches committed before it
    assert len(reader.search("anything", top_k=100)) == 24


def test_a_second_writer_is_refused_with_a_clear_message_and_nothing_is_corrupted(hash_library, tmp_path):
    fill(tmp_path / "photos", 24)
    embedder = SteppedEmbedder(HASH_SPEC)
    first = hash_library(embedder=embedder)
    run = threading.Thread(target=first.index, args=([tmp_path / "photos"], IndexOptions(batch_size=4, workers=1)))
    run.start()
    try:
        assert embedder.next_batch_waiting()  # the first run holds the lock, mid-run
        second = hash_library()
        with pytest.raises(IndexLockedError, match="another clipsearch process is indexing into"):
            second.index([tmp_path / "photos"])
        result = CliRunner().invoke(main, ["index", str(tmp_path / "photos"), "--index", str(second.directory)])
        assert result.exit_code == 1
        assert result.output.startswith("clipsearch: error: another clipsearch process is indexing into")
        assert "Traceback" not in result.output
    finally:
        for _ in range(6):
            embedder.go.release()
        run.join(60)
    db = sqlite3.connect(second.directory / "catalog.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone() == (24,)
    second.index([tmp_path / "photos"])  # the lock is free again


def test_a_writer_in_another_process_holds_the_lock_until_it_dies(hash_library, tmp_path):
    fill(tmp_path / "photos", 3)
    library = hash_library()
    holder = subprocess.Popen([sys.executable, "-m", "tests.programs.hold_write_lock", str(library.directory)],
                              cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(IndexLockedError):
            library.index([tmp_path / "photos"])
    finally:
        holder.kill()
        holder.wait()
    assert library.index([tmp_path / "photos"]).indexed == 3  # a killed writer's lock dies with it


def test_a_catalog_from_a_newer_version_is_refused_with_a_clear_message(hash_library, tmp_path):
    fill(tmp_path / "photos", 2)
    library = hash_library()
    library.index([tmp_path / "photos"])
    library.close()
    db = sqlite3.connect(library.directory / "catalog.sqlite")
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(IndexStoreError, match="written by a newer clipsearch.*upgrade"):
        Library.open(library.directory)
    result = CliRunner().invoke(main, ["status", "--index", str(library.directory)])
    assert result.exit_code == 1 and "newer clipsearch" in result.output and "Traceback" not in result.output


def test_an_index_of_another_model_is_refused_with_a_clear_message(hash_library, tmp_path):
    fill(tmp_path / "photos", 2)
    library = hash_library()
    library.index([tmp_path / "photos"])
    library.close()
    with pytest.raises(ModelMismatchError, match="holds vectors of hash-test/none, not other-model"):
        Library.open(library.directory, model=ModelSpec("other-model", "x"))


def test_a_file_that_is_not_a_catalog_is_refused_not_overwritten(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    (index / "catalog.sqlite").write_bytes(b"this is not a database, it is someone's notes" * 100)
    with pytest.raises(IndexStoreError, match="unreadable"):
        Library.open(index, model=HASH_SPEC, create=True)
    assert (index / "catalog.sqlite").read_bytes().startswith(b"this is not a database")
