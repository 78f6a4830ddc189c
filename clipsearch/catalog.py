"""The SQLite catalog: the single source of truth for files, their identity, skip reasons and vectors.

Paths are stored as raw bytes (``os.fsencode``) so names that are not valid UTF-8 survive a round trip.
Each embedded batch is written in one transaction: a killed run loses at most the batch in flight.
Every change to the set of vectors bumps ``generation``; the FAISS index is stamped with it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from clipsearch.errors import IndexStoreError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (path BLOB PRIMARY KEY, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files (
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
);
CREATE INDEX IF NOT EXISTS files_digest ON files (size, digest);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    summary TEXT
);
"""


@dataclass(frozen=True)
class FileStat:
    """What a scan sees of a file: enough to tell cheaply whether it changed."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: str, st: os.stat_result) -> FileStat:
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


@dataclass(frozen=True)
class FileRow:
    """One catalog row (without its vector)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    inode: int
    device: int
    digest: str | None
    status: str
    reason: str | None
    width: int | None
    height: int | None

    def same_stat(self, stat: FileStat) -> bool:
        return (self.size, self.mtime_ns, self.inode) == (stat.size, stat.mtime_ns, stat.inode)


@dataclass(frozen=True)
class Embedded:
    """A file the indexer decoded and embedded, ready to store."""

    stat: FileStat
    digest: str
    width: int
    height: int
    vector: np.ndarray


_ROW_COLUMNS = "id, path, size, mtime_ns, inode, device, digest, status, reason, width, height"


def _row(values: tuple) -> FileRow:
    return FileRow(values[0], os.fsdecode(values[1]), *values[2:])


def _clamp_ns(seconds: float) -> int:
    """Seconds to nanoseconds within SQLite's 64-bit integers (dates past 2262 would overflow)."""
    return int(max(-9.2e18, min(9.2e18, seconds * 1e9)))


def _key(path: str) -> bytes:
    return os.fsencode(path)


class Catalog:
    """A connection to one catalog file. Readers and one writer may use the same file at once (WAL)."""

    def __init__(self, path: str, connection: sqlite3.Connection):
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, path: str, create: bool = False) -> Catalog:
        if not create and not os.path.isfile(path):
            raise IndexStoreError(f"no index at {os.path.dirname(path) or '.'} (run `clipsearch index` first)")
        try:
            db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            catalog = cls(path, db)
            catalog._init_schema()
            return catalog
        except sqlite3.DatabaseError as exc:
            raise IndexStoreError(f"the catalog {path} is unreadable ({exc}); move it aside to start afresh") from None

    def _init_schema(self) -> None:
        version = self._meta_raw("schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise IndexStoreError(
                f"this index was written by a newer clipsearch (catalog schema {version}, this version reads "
                f"{SCHEMA_VERSION}); upgrade clipsearch to use it"
            )
        if version is None:
            with self.transaction():
                for statement in _SCHEMA.strip().split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._set_meta("schema_version", str(SCHEMA_VERSION))
                self._set_meta("generation", "0")
                # Tells this catalog from a re-created one whose generation counter happens to match.
                self._set_meta("instance", uuid.uuid4().hex)

    def close(self) -> None:
        self._db.close()

    def transaction(self):
        return _transaction(self._db)

    # -- meta ---------------------------------------------------------------------------------------------
    def _meta_raw(self, key: str) -> str | None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None  # no meta table yet: a new catalog
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_json(self, key: str) -> dict | None:
        raw = self._meta_raw(key)
        return json.loads(raw) if raw else None

    def set_json(self, key: str, value: dict) -> None:
        with self.transaction():
            self._set_meta(key, json.dumps(value, sort_keys=True))

    def generation(self) -> int:
        return int(self._meta_raw("generation") or 0)

    def instance(self) -> str | None:
        """A random id given to this catalog when it was created."""
        return self._meta_raw("instance")

    def snapshot(self):
        """A read transaction: every read inside sees one committed state, whatever a writer does meanwhile."""
        return _transaction(self._db, "BEGIN")

    def _bump(self) -> None:
        self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    # -- roots --------------------------------------------------------------------------------------------
    def add_roots(self, roots: Iterable[str]) -> None:
        with self.transaction():
            for root in roots:
                self._db.execute("INSERT OR IGNORE INTO roots (path, added) VALUES (?, ?)", (_key(root), time.time()))

    def roots(self) -> list[str]:
        return [os.fsdecode(r[0]) for r in self._db.execute("SELECT path FROM roots ORDER BY path")]

    # -- files --------------------------------------------------------------------------------------------
    def rows_under(self, root: str) -> dict[str, FileRow]:
        """Every row whose path lies under ``root`` (the root itself included)."""
        prefix = _key(root.rstrip(os.sep) + os.sep)
        rows = self._db.execute(
            f"SELECT {_ROW_COLUMNS} FROM files WHERE substr(path, 1, ?) = ? OR path = ?",
            (len(prefix), prefix, _key(root)),
        )
        return {row.path: row for row in map(_row, rows)}

    def get(self, file_id: int) -> FileRow | None:
        values = self._db.execute(f"SELECT {_ROW_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone()
        return _row(values) if values else None

    def get_vector(self, file_id: int) -> np.ndarray | None:
        values = self._db.execute("SELECT vector FROM files WHERE id = ? AND status = 'ok'", (file_id,)).fetchone()
        return np.frombuffer(values[0], dtype=np.float32).copy() if values and values[0] else None

    def store_embedded(self, batch: Iterable[Embedded]) -> None:
        """Insert or replace embedded files, all in one transaction."""
        now = time.time()
        with self.transaction():
            for item in batch:
                s = item.stat
                self._db.execute(
                    "INSERT INTO files (path, size, mtime_ns, inode, device, digest, status, reason, width, height,"
                    " vector, updated) VALUES (?, ?, ?, ?, ?, ?, 'ok', NULL, ?, ?, ?, ?)"
                    " ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
                    " inode=excluded.inode, device=excluded.device, digest=excluded.digest, status='ok',"
                    " reason=NULL, width=excluded.width, height=excluded.height, vector=excluded.vector,"
                    " updated=excluded.updated",
                    (_key(s.path), s.size, s.mtime_ns, s.inode, s.device, item.digest, item.width, item.height,
                     np.ascontiguousarray(item.vector, dtype=np.float32).tobytes(), now),
                )
            self._bump()

    def store_skipped(self, items: Iterable[tuple[FileStat, str]]) -> None:
        """Record files that could not be indexed, with the reason; a former vector of that path is dropped."""
        now = time.time()
        with self.transaction():
            for s, reason in items:
                self._db.execute(
                    "INSERT INTO files (path, size, mtime_ns, inode, device, status, reason, updated)"
                    " VALUES (?, ?, ?, ?, ?, 'skipped', ?, ?)"
                    " ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
                    " inode=excluded.inode, device=excluded.device, digest=NULL, status='skipped',"
                    " reason=excluded.reason, width=NULL, height=NULL, vector=NULL, updated=excluded.updated",
                    (_key(s.path), s.size, s.mtime_ns, s.inode, s.device, reason, now),
                )
            self._bump()

    def move(self, moves: Iterable[tuple[int, FileStat]]) -> None:
        """Give existing rows (and their vectors) new paths: renamed or moved files."""
        with self.transaction():
            for file_id, s in moves:
                self._db.execute("DELETE FROM files WHERE path = ? AND id != ?", (_key(s.path), file_id))
                self._db.execute(
                    "UPDATE files SET path = ?, size = ?, mtime_ns = ?, inode = ?, device = ?, updated = ?"
                    " WHERE id = ?",
                    (_key(s.path), s.size, s.mtime_ns, s.inode, s.device, time.time(), file_id),
                )
            self._bump()

    def delete(self, file_ids: Iterable[int]) -> None:
        with self.transaction():
            self._db.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in file_ids])
            self._bump()

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All stored vectors as ``(ids int64[n], matrix float32[n, dim])``."""
        rows = self._db.execute("SELECT id, vector FROM files WHERE status = 'ok' ORDER BY id").fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return ids, matrix

    def iter_ids(self, path_prefix: str | None = None, mtime_range: tuple[float | None, float | None] = (None, None)
                 ) -> Iterator[int]:
        """Ids of indexed files under ``path_prefix`` whose modification time lies within ``mtime_range``."""
        sql, args = "SELECT id FROM files WHERE status = 'ok'", []
        if path_prefix:
            prefix = _key(path_prefix.rstrip(os.sep) + os.sep)
            sql += " AND substr(path, 1, ?) = ?"
            args += [len(prefix), prefix]
        low, high = (_clamp_ns(t) if t is not None else None for t in mtime_range)
        if low is not None:
            sql += " AND mtime_ns >= ?"
            args.append(low)
        if high is not None:
            sql += " AND mtime_ns <= ?"
            args.append(high)
        return (r[0] for r in self._db.execute(sql, args))

    def counts(self) -> dict[str, int]:
        rows = dict(self._db.execute("SELECT status, COUNT(*) FROM files GROUP BY status").fetchall())
        return {"files": rows.get("ok", 0), "skipped": rows.get("skipped", 0)}

    def skipped(self) -> list[tuple[str, str]]:
        rows = self._db.execute("SELECT path, reason FROM files WHERE status = 'skipped' ORDER BY path")
        return [(os.fsdecode(p), r or "") for p, r in rows]

    # -- runs ---------------------------------------------------------------------------------------------
    def start_run(self) -> int:
        with self.transaction():
            cursor = self._db.execute("INSERT INTO runs (started) VALUES (?)", (time.time(),))
        return int(cursor.lastrowid)

    def finish_run(self, run_id: int, summary: dict) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE runs SET finished = ?, summary = ? WHERE id = ?", (time.time(), json.dumps(summary), run_id)
            )

    def last_run(self) -> dict | None:
        row = self._db.execute("SELECT started, finished, summary FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if not row:
            return None
        return {"started": row[0], "finished": row[1], "summary": json.loads(row[2]) if row[2] else None}


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE"):
        self._db = db
        self._begin = begin

    def __enter__(self):
        self._db.execute(self._begin)
        return self._db

    def __exit__(self, exc_type, exc, tb):
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
