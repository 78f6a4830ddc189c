"""The SQLite catalog: the single source of truth for files, their identity, skip reasons and vectors.

Paths are stored as raw bytes (``os.fsencode``) so names that are not valid UTF-8 survive a round trip.
Each embedded batch is written in one transaction: a killed run loses at most the batch in flight.
Every change to the set of vectors bumps ``generation``; the FAISS index is stamped with it. Each row records
the generation that last changed it and removed ids are logged, so a reader's in-memory index can catch up
with only what changed (``changes_since``). The schema evolves through ``store.migrations``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from clipsearch.errors import IndexStoreError
from clipsearch.store.migrations import SCHEMA_VERSION, upgrade  # noqa: F401  (SCHEMA_VERSION: re-exported)

# How many generations of removals are logged for readers' incremental updates; an older reader rebuilds.
REMOVAL_LOG_GENERATIONS = 10_000

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
    taken_ns: int | None = None  # when the photo was taken: EXIF DateTimeOriginal, else the file's mtime

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
    taken_ns: int | None = None  # EXIF DateTimeOriginal; None: when the file was last modified


_ROW_COLUMNS = "id, path, size, mtime_ns, inode, device, digest, status, reason, width, height, taken_ns"
# A photo whose date came from its mtime (no EXIF date) follows the file's new mtime; an EXIF date stays.
_FOLLOW_MTIME = "taken_ns = CASE WHEN taken_ns = mtime_ns THEN ? ELSE taken_ns END"
_ORDER_BY = {"newest": "taken_ns DESC, id DESC", "oldest": "taken_ns ASC, id ASC", "name": "path ASC"}


def _row(values: tuple) -> FileRow:
    return FileRow(values[0], os.fsdecode(values[1]), *values[2:])


def _clamp_ns(seconds: float) -> int:
    """Seconds to nanoseconds within SQLite's 64-bit integers (dates past 2262 would overflow)."""
    return int(max(-9.2e18, min(9.2e18, seconds * 1e9)))


def _key(path: str) -> bytes:
    return os.fsencode(path)


def _under(root: str) -> tuple[str, tuple]:
    """A WHERE clause for the paths under ``root`` (the root itself included)."""
    prefix = _key(root.rstrip(os.sep) + os.sep)
    return "(substr(path, 1, ?) = ? OR path = ?)", (len(prefix), prefix, _key(root))


def _listed(path_prefix: str | None, taken_range: tuple[float | None, float | None]) -> tuple[str, list]:
    """A WHERE clause for indexed files under ``path_prefix`` (a folder: its files and sub-folders) taken within
    ``taken_range``."""
    sql, args = "status = 'ok'", []
    if path_prefix:
        prefix = _key(path_prefix.rstrip(os.sep) + os.sep)
        sql += " AND substr(path, 1, ?) = ?"
        args += [len(prefix), prefix]
    low, high = (_clamp_ns(t) if t is not None else None for t in taken_range)
    if low is not None:
        sql += " AND taken_ns >= ?"
        args.append(low)
    if high is not None:
        sql += " AND taken_ns <= ?"
        args.append(high)
    return sql, args


def _id_matrix(rows: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return ids, matrix


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
        upgrade(self._db, self.path)

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

    def _bump(self) -> int:
        """Start a new generation of the vectors (inside a write transaction) and return its number."""
        self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        return self.generation()

    def state(self) -> dict:
        """What the derived vector index is stamped with: generation, catalog instance and model, in one read."""
        rows = dict(self._db.execute(
            "SELECT key, value FROM meta WHERE key IN ('generation', 'instance', 'model')").fetchall())
        return {"generation": int(rows.get("generation") or 0), "instance": rows.get("instance"),
                "model": json.loads(rows["model"]) if rows.get("model") else None}

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
        where, args = _under(root)
        rows = self._db.execute(f"SELECT {_ROW_COLUMNS} FROM files WHERE {where}", args)
        return {row.path: row for row in map(_row, rows)}

    def has_rows_under(self, root: str) -> bool:
        where, args = _under(root)
        return self._db.execute(f"SELECT 1 FROM files WHERE {where} LIMIT 1", args).fetchone() is not None

    def get(self, file_id: int) -> FileRow | None:
        values = self._db.execute(f"SELECT {_ROW_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone()
        return _row(values) if values else None

    def get_many(self, file_ids: Iterable[int]) -> dict[int, FileRow]:
        """The rows of ``file_ids`` that exist, by id."""
        ids = [int(i) for i in file_ids]
        found: dict[int, FileRow] = {}
        for start in range(0, len(ids), 500):  # SQLite's limit on bound parameters
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for values in self._db.execute(f"SELECT {_ROW_COLUMNS} FROM files WHERE id IN ({marks})", chunk):
                found[values[0]] = _row(values)
        return found

    def get_vector(self, file_id: int) -> np.ndarray | None:
        values = self._db.execute("SELECT vector FROM files WHERE id = ? AND status = 'ok'", (file_id,)).fetchone()
        return np.frombuffer(values[0], dtype=np.float32).copy() if values and values[0] else None

    def store_batch(self, embedded: Iterable[Embedded], skipped: Iterable[tuple[FileStat, str]]) -> None:
        """Store embedded files and skipped ones together, in one transaction."""
        embedded, skipped = list(embedded), list(skipped)
        if not embedded and not skipped:
            return
        with self.transaction():
            generation = self._bump()
            self._insert_embedded(embedded, generation)
            self._insert_skipped(skipped, generation)

    def store_embedded(self, batch: Iterable[Embedded]) -> None:
        """Insert or replace embedded files, all in one transaction."""
        self.store_batch(batch, ())

    def store_skipped(self, items: Iterable[tuple[FileStat, str]]) -> None:
        """Record files that could not be indexed, with the reason; a former vector of that path is dropped."""
        self.store_batch((), items)

    def _insert_embedded(self, batch: Iterable[Embedded], generation: int) -> None:
        now = time.time()
        for item in batch:
            s = item.stat
            self._db.execute(
                "INSERT INTO files (path, size, mtime_ns, inode, device, digest, status, reason, width, height,"
                " vector, updated, changed, taken_ns) VALUES (?, ?, ?, ?, ?, ?, 'ok', NULL, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
                " inode=excluded.inode, device=excluded.device, digest=excluded.digest, status='ok',"
                " reason=NULL, width=excluded.width, height=excluded.height, vector=excluded.vector,"
                " updated=excluded.updated, changed=excluded.changed, taken_ns=excluded.taken_ns",
                (_key(s.path), s.size, s.mtime_ns, s.inode, s.device, item.digest, item.width, item.height,
                 np.ascontiguousarray(item.vector, dtype=np.float32).tobytes(), now, generation,
                 s.mtime_ns if item.taken_ns is None else item.taken_ns),
            )

    def _insert_skipped(self, items: Iterable[tuple[FileStat, str]], generation: int) -> None:
        now = time.time()
        for s, reason in items:
            self._db.execute(
                "INSERT INTO files (path, size, mtime_ns, inode, device, status, reason, updated, changed, taken_ns)"
                " VALUES (?, ?, ?, ?, ?, 'skipped', ?, ?, ?, ?)"
                " ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,"
                " inode=excluded.inode, device=excluded.device, digest=NULL, status='skipped',"
                " reason=excluded.reason, width=NULL, height=NULL, vector=NULL, updated=excluded.updated,"
                " changed=excluded.changed, taken_ns=excluded.taken_ns",
                (_key(s.path), s.size, s.mtime_ns, s.inode, s.device, reason, now, generation, s.mtime_ns),
            )

    def move(self, moves: Iterable[tuple[int, FileStat]]) -> None:
        """Give existing rows (and their vectors) new paths: renamed or moved files."""
        with self.transaction():
            generation = self._bump()
            for file_id, s in moves:
                replaced = [r[0] for r in self._db.execute(
                    "SELECT id FROM files WHERE path = ? AND id != ?", (_key(s.path), file_id))]
                self._remove(replaced, generation)
                self._db.execute(
                    f"UPDATE files SET path = ?, size = ?, mtime_ns = ?, inode = ?, device = ?, updated = ?,"
                    f" {_FOLLOW_MTIME} WHERE id = ?",
                    (_key(s.path), s.size, s.mtime_ns, s.inode, s.device, time.time(), s.mtime_ns, file_id),
                )

    def restat(self, items: Iterable[tuple[int, FileStat]]) -> None:
        """New stat for files whose content is unchanged (same digest): their vectors stay as they are."""
        with self.transaction():
            self._db.executemany(
                f"UPDATE files SET size = ?, mtime_ns = ?, inode = ?, device = ?, updated = ?, {_FOLLOW_MTIME}"
                " WHERE id = ?",
                [(s.size, s.mtime_ns, s.inode, s.device, time.time(), s.mtime_ns, file_id) for file_id, s in items],
            )

    def delete(self, file_ids: Iterable[int]) -> None:
        with self.transaction():
            self._remove(list(file_ids), self._bump())

    def _remove(self, file_ids: list[int], generation: int) -> None:
        if not file_ids:
            return
        self._db.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in file_ids])
        self._db.executemany("INSERT OR REPLACE INTO removed (id, generation) VALUES (?, ?)",
                             [(i, generation) for i in file_ids])
        floor = generation - REMOVAL_LOG_GENERATIONS
        if floor > int(self._meta_raw("log_floor") or 0):
            self._db.execute("DELETE FROM removed WHERE generation <= ?", (floor,))
            self._set_meta("log_floor", str(floor))

    # -- vectors ------------------------------------------------------------------------------------------
    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All stored vectors as ``(ids int64[n], matrix float32[n, dim])``."""
        rows = self._db.execute("SELECT id, vector FROM files WHERE status = 'ok' ORDER BY id").fetchall()
        return _id_matrix(rows)

    def vector_chunks(self, chunk_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All stored vectors in id order, ``chunk_size`` at a time, without holding them all at once."""
        last = -1
        while True:
            rows = self._db.execute(
                "SELECT id, vector FROM files WHERE status = 'ok' AND id > ? ORDER BY id LIMIT ?",
                (last, chunk_size),
            ).fetchall()
            if not rows:
                return
            yield _id_matrix(rows)
            last = rows[-1][0]

    def vectors_of(self, file_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of those of ``file_ids`` that are indexed: ``(ids, matrix)``, 500 per query."""
        ids = [int(i) for i in file_ids]
        rows: list[tuple[int, bytes]] = []
        for start in range(0, len(ids), 500):  # SQLite's limit on bound parameters
            chunk = ids[start:start + 500]
            rows += self._db.execute(
                f"SELECT id, vector FROM files WHERE status = 'ok' AND id IN ({','.join('?' * len(chunk))})",
                chunk).fetchall()
        return _id_matrix(rows)

    def vector_stats(self) -> tuple[int, int]:
        """How many vectors are stored, and their dimension (0 when there are none)."""
        count = self._db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0]
        row = self._db.execute("SELECT length(vector) FROM files WHERE status = 'ok' LIMIT 1").fetchone()
        return int(count), (int(row[0]) // 4 if row and row[0] else 0)

    def changes_since(self, generation: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """What changed in the vectors after ``generation``: ``(ids, matrix)`` of rows added or replaced, and
        the ids to drop (removed or now skipped). ``None`` when the log no longer reaches back that far."""
        if generation < int(self._meta_raw("log_floor") or 0):
            return None
        rows = self._db.execute(
            "SELECT id, status, vector FROM files WHERE changed > ?", (generation,)).fetchall()  # by the index
        ids, matrix = _id_matrix([(r[0], r[2]) for r in rows if r[1] == "ok"])
        gone = [r[0] for r in rows if r[1] != "ok"]
        gone += [r[0] for r in self._db.execute("SELECT id FROM removed WHERE generation > ?", (generation,))]
        return ids, matrix, np.asarray(sorted(set(gone)), dtype=np.int64)

    def iter_ids(self, path_prefix: str | None = None, taken_range: tuple[float | None, float | None] = (None, None),
                 tag: str | None = None) -> Iterator[int]:
        """Ids of indexed files under ``path_prefix`` taken within ``taken_range`` (epoch seconds, inclusive)
        that carry the saved ``tag``, when given."""
        where, args = _listed(path_prefix, taken_range)
        if tag is not None:
            where += " AND id IN (SELECT file_id FROM tags WHERE label = ?)"
            args = [*args, tag]
        return (r[0] for r in self._db.execute(f"SELECT id FROM files WHERE {where}", args))

    def page(self, path_prefix: str | None = None, taken_range: tuple[float | None, float | None] = (None, None),
             order: str = "newest", offset: int = 0, limit: int = 100) -> tuple[list[FileRow], int]:
        """One page of the indexed files under ``path_prefix`` taken within ``taken_range``, in ``order``
        (``newest`` or ``oldest`` taken first, or ``name``: by path), and how many there are in all."""
        where, args = _listed(path_prefix, taken_range)
        with self.snapshot():  # the page and its total from one committed state
            total = self._db.execute(f"SELECT COUNT(*) FROM files WHERE {where}", args).fetchone()[0]
            rows = self._db.execute(f"SELECT {_ROW_COLUMNS} FROM files WHERE {where} ORDER BY {_ORDER_BY[order]}"
                                    " LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
        return [_row(r) for r in rows], int(total)

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

    # -- tags ---------------------------------------------------------------------------------------------
    def save_tags(self, labels: Iterable[str], tagged: Iterable[tuple[int, str, float]]) -> None:
        """Replace every saved tag of ``labels`` with ``tagged`` (file id, label, score), in one transaction."""
        labels = list(labels)
        with self.transaction():
            self._db.executemany("DELETE FROM tags WHERE label = ?", [(label,) for label in labels])
            self._db.executemany(
                "INSERT OR REPLACE INTO tags (file_id, label, score)"
                " SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM files WHERE id = ? AND status = 'ok')",
                [(file_id, label, score, file_id) for file_id, label, score in tagged],
            )

    def tags_of(self, file_ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
        """The saved tags of ``file_ids``, best first, by id (files without tags are left out)."""
        ids = [int(i) for i in file_ids]
        found: dict[int, list[tuple[str, float]]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._db.execute(
                f"SELECT file_id, label, score FROM tags WHERE file_id IN ({','.join('?' * len(chunk))})"
                " ORDER BY file_id, score DESC, label", chunk)
            for file_id, label, score in rows:
                found.setdefault(file_id, []).append((label, score))
        return found

    def tag_counts(self) -> dict[str, int]:
        """How many indexed files carry each saved tag."""
        rows = self._db.execute(
            "SELECT label, COUNT(*) FROM tags JOIN files ON files.id = tags.file_id AND files.status = 'ok'"
            " GROUP BY label ORDER BY label")
        return dict(rows.fetchall())

    def ids_of_paths(self, paths: Iterable[str]) -> dict[str, int]:
        """The ids of the indexed files among ``paths``, by path."""
        keys = [_key(p) for p in paths]
        found: dict[str, int] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self._db.execute(
                f"SELECT path, id FROM files WHERE status = 'ok' AND path IN ({','.join('?' * len(chunk))})", chunk)
            found.update((os.fsdecode(path), file_id) for path, file_id in rows)
        return found


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
