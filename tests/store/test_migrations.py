"""Catalog migrations: an index written by release 0.1 (schema 1) upgrades itself and keeps every vector.

``tests/data/schema1`` holds a catalog made by that release (see its README) and the photos it indexed.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch import IndexStoreError, Library, SearchFilter
from clipsearch.store import migrations
from clipsearch.store.catalog import Catalog
from clipsearch.testing import HashEmbedder
from tests.conftest import all_vectors

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "data" / "schema1"
OLD_ROOT = b"/tmp/clipsearch-schema1/photos"


@pytest.fixture
def old_index(tmp_path) -> tuple[Path, Path]:
    """The schema-1 catalog and its photos, copied under tmp_path (times kept, new inodes), paths moved there."""
    photos = tmp_path / "photos"
    shutil.copytree(FIXTURE / "photos", photos)  # copy2: same bytes and mtimes, new inodes
    index = tmp_path / "index"
    index.mkdir()
    shutil.copy(FIXTURE / "catalog.sqlite", index / "catalog.sqlite")
    db = sqlite3.connect(index / "catalog.sqlite")
    new_root = str(photos).encode()
    with db:
        for table in ("files", "roots"):
            for (path,) in db.execute(f"SELECT path FROM {table}").fetchall():
                db.execute(f"UPDATE {table} SET path = ? WHERE path = ?", (path.replace(OLD_ROOT, new_root), path))
    db.close()
    return index, photos


def schema_of(index: Path) -> int:
    db = sqlite3.connect(index / "catalog.sqlite")
    try:
        return int(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        db.close()


def test_the_fixture_is_a_schema_1_catalog_with_six_vectors(old_index):
    index, _ = old_index
    assert schema_of(index) == 1
    db = sqlite3.connect(index / "catalog.sqlite")
    assert db.execute("SELECT status, COUNT(*) FROM files GROUP BY status ORDER BY status").fetchall() == [
        ("ok", 6), ("skipped", 1)]
    assert "changed" not in {row[1] for row in db.execute("PRAGMA table_info(files)")}


def test_a_schema_1_index_opens_upgraded_searches_and_reindexes_without_re_embedding(old_index):
    index, photos = old_index
    embedder = HashEmbedder()
    library = Library.open(index)
    library.use_embedder(embedder)
    assert schema_of(index) == migrations.SCHEMA_VERSION
    assert library.model.name == "hash-test"  # the model recorded by the old release
    ids, vectors = all_vectors(library)
    assert len(ids) == 6
    # the stored vectors are the ones the old release made from these very files
    by_path = {library.file(int(i)).path: v for i, v in zip(ids, vectors)}
    fresh = embedder.encode_images([Image.open(p).convert("RGB") for p in sorted(by_path)])
    assert np.allclose(np.stack([by_path[p] for p in sorted(by_path)]), fresh, atol=1e-6)
    embedder.calls = 0
    hits = library.search("anything", top_k=10)
    assert sorted(h.path for h in hits) == sorted(by_path)
    report = library.index()  # every known root: the copies have new inodes but the same bytes
    assert (report.indexed, report.unchanged, report.removed) == (0, 6, 0)
    assert embedder.calls == 0
    assert [p.rsplit("/", 1)[1] for p, _ in report.skipped] == ["broken.jpg"]
    assert report.skipped[0][1].startswith("not a readable image")
    assert sorted(h.path for h in library.search("anything", top_k=10)) == sorted(by_path)
    library.close()


def test_a_kill_during_the_upgrade_loses_nothing_and_the_next_open_finishes_it(old_index):
    index, _ = old_index
    out = subprocess.run([sys.executable, "-m", "tests.programs.upgrade_and_die", str(index / "catalog.sqlite")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == -9 and "upgraded, not committed" in out.stdout
    assert schema_of(index) == migrations.SCHEMA_VERSION - 1  # the killed step was rolled back
    library = Library.open(index)
    library.use_embedder(HashEmbedder())
    assert schema_of(index) == migrations.SCHEMA_VERSION
    assert len(all_vectors(library)[0]) == 6 and len(library.search("x", top_k=10)) == 6
    library.close()


def test_each_step_runs_once_in_order_and_a_reopened_catalog_runs_none(tmp_path, monkeypatch):
    calls = []
    names = [f.__name__ for f in migrations.MIGRATIONS]
    steps = [lambda db, f=f: (calls.append(f.__name__), f(db)) for f in migrations.MIGRATIONS]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    Catalog.open(str(tmp_path / "c.sqlite"), create=True).close()
    assert calls == names and names[:2] == ["m001_initial", "m002_change_log"]
    calls.clear()
    Catalog.open(str(tmp_path / "c.sqlite")).close()
    assert calls == []


def upgrade_to(catalog: Path, version: int, monkeypatch) -> None:
    """Upgrade ``catalog`` only as far as an older release would have (its first ``version`` steps)."""
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:version])
        patch.setattr(migrations, "SCHEMA_VERSION", version)
        Catalog.open(str(catalog)).close()


def columns_of(index: Path) -> set[str]:
    db = sqlite3.connect(index / "catalog.sqlite")
    try:
        return {row[1] for row in db.execute("PRAGMA table_info(files)")}
    finally:
        db.close()


def test_a_schema_2_index_gains_dates_taken_from_mtimes_without_re_embedding(old_index, monkeypatch):
    index, photos = old_index
    upgrade_to(index / "catalog.sqlite", 2, monkeypatch)
    assert schema_of(index) == 2 and "changed" in columns_of(index) and "taken_ns" not in columns_of(index)
    db = sqlite3.connect(index / "catalog.sqlite")
    before = dict(db.execute("SELECT id, vector FROM files WHERE status = 'ok'").fetchall())
    mtimes = dict(db.execute("SELECT id, mtime_ns FROM files").fetchall())
    db.close()

    embedder = HashEmbedder()
    library = Library.open(index)
    library.use_embedder(embedder)
    assert schema_of(index) == migrations.SCHEMA_VERSION and "taken_ns" in columns_of(index)
    rows = library.files(list(mtimes))
    assert {i: r.taken_ns for i, r in rows.items()} == mtimes  # backfilled: each row's date is its mtime
    ids, vectors = all_vectors(library)
    assert {int(i): v.tobytes() for i, v in zip(ids, vectors)} == before  # every vector kept, bit for bit

    oldest = library.browse(order="oldest").hits
    assert [h.id for h in oldest] == sorted(before, key=lambda i: (mtimes[i], i))
    assert all(h.taken == h.mtime for h in oldest)
    newest_day = max(mtimes.values()) / 1e9
    assert library.search("x", top_k=10, where=SearchFilter(since=newest_day + 1)) == []
    report = library.index()
    assert (report.indexed, report.unchanged) == (0, 6) and embedder.calls == 0
    library.close()


def test_a_catalog_of_a_newer_schema_is_refused_and_left_untouched(tmp_path):
    Catalog.open(str(tmp_path / "c.sqlite"), create=True).close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    before = (tmp_path / "c.sqlite").read_bytes()
    with pytest.raises(IndexStoreError, match="newer clipsearch.*schema 99"):
        Catalog.open(str(tmp_path / "c.sqlite"))
    assert (tmp_path / "c.sqlite").read_bytes() == before
