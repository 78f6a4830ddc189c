"""The catalog's schema, as named steps applied oldest first, each in one transaction.

``meta.schema_version`` says how many steps a catalog has had. Opening a catalog applies the steps it lacks;
a step killed halfway leaves the catalog as it was before that step (SQLite rolls the transaction back), and
the next open runs it again. A catalog newer than this release is refused, never touched.

Add a step by appending a function to ``MIGRATIONS``; never edit a released one.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable

from clipsearch.errors import IndexStoreError


def m001_initial(db: sqlite3.Connection) -> None:
    """Release 0.1: roots, files (stat, digest, status, reason, size, vector), runs and meta."""
    for statement in (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS roots (path BLOB PRIMARY KEY, added REAL NOT NULL)",
        """CREATE TABLE IF NOT EXISTS files (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path BLOB NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            device INTEGER NOT NULL,
            digest TEXT,
            status TEXT NOT NULL CHECK (status IN ('ok', 'skipped')),
            reason TEXT,
            width INTEGER,
            height INTEGER,
            vector BLOB,
            updated REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS files_digest ON files (size, digest)",
        """CREATE TABLE IF NOT EXISTS runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started REAL NOT NULL,
            finished REAL,
            summary TEXT
        )""",
    ):
        db.execute(statement)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', '0')")
    # Tells this catalog from a re-created one whose generation counter happens to match.
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?)", (uuid.uuid4().hex,))


def m002_change_log(db: sqlite3.Connection) -> None:
    """Which generation last changed each row, and a log of removed ids: readers update their in-memory
    vector index with only what changed instead of re-reading every vector."""
    db.execute("ALTER TABLE files ADD COLUMN changed INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX files_changed ON files (changed)")
    db.execute("CREATE TABLE removed (id INTEGER PRIMARY KEY, generation INTEGER NOT NULL)")
    # Changes before this step were not logged: a reader that last looked before it rebuilds.
    db.execute(
        "INSERT OR REPLACE INTO meta (key, value) "
        "SELECT 'log_floor', value FROM meta WHERE key = 'generation'"
    )


def m003_date_taken(db: sqlite3.Connection) -> None:
    """When each photo was taken (EXIF ``DateTimeOriginal``, else the file's modification time), for browsing by
    date and the date filters. Rows indexed before this step get their modification time: their vectors stay,
    nothing is re-read; a photo's EXIF date arrives when it is next embedded."""
    db.execute("ALTER TABLE files ADD COLUMN taken_ns INTEGER")
    db.execute("UPDATE files SET taken_ns = mtime_ns")
    db.execute("CREATE INDEX files_taken ON files (taken_ns)")


def m004_tags(db: sqlite3.Connection) -> None:
    """Zero-shot tags saved per file (``clipsearch tag --save``), for the ``--tag`` search filter. A tag goes with
    its file: dropped when the file is removed or its vector replaced (the tag described the old picture)."""
    db.execute(
        "CREATE TABLE tags (file_id INTEGER NOT NULL, label TEXT NOT NULL, score REAL NOT NULL,"
        " PRIMARY KEY (label, file_id)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX tags_file ON tags (file_id)")
    db.execute("CREATE TRIGGER tags_follow_deletes AFTER DELETE ON files BEGIN"
               " DELETE FROM tags WHERE file_id = OLD.id; END")
    db.execute("CREATE TRIGGER tags_follow_new_vectors AFTER UPDATE OF vector ON files"
               " WHEN NEW.vector IS NOT OLD.vector BEGIN DELETE FROM tags WHERE file_id = OLD.id; END")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    m001_initial, m002_change_log, m003_date_taken, m004_tags,
]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: sqlite3.Connection) -> int:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:
        return 0  # no meta table: a new, empty file
    return int(row[0]) if row else 0


def upgrade(db: sqlite3.Connection, path: str) -> None:
    """Apply the steps the catalog at ``db`` lacks, each in its own ``BEGIN IMMEDIATE`` transaction."""
    version = schema_version(db)
    if version > SCHEMA_VERSION:
        raise IndexStoreError(
            f"this index was written by a newer clipsearch (catalog schema {version}, this version reads "
            f"{SCHEMA_VERSION}); upgrade clipsearch to use it"
        )
    while version < SCHEMA_VERSION:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise IndexStoreError(
                f"the index {path} must be upgraded to this version's format but cannot be written ({exc}); "
                "open it once where it is writable"
            ) from None
        try:
            version = schema_version(db)  # another process may have upgraded it meanwhile
            if version < SCHEMA_VERSION:
                MIGRATIONS[version](db)
                version += 1
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),)
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
