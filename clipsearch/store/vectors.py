"""The FAISS index: a cache derived from the catalog, never the truth, and the one place of its policy.

``DerivedIndex`` keeps a catalog's index current: a reader's in-memory index catches up with the batches a
writer commits by adding and removing only what changed; a missing, foreign or unreadable file, or a reader
too far behind, is rebuilt from the catalog's vectors, read in chunks.

One file holds a small header (magic, JSON stamp, checksum) and the serialised FAISS index. It is written to a
temporary file, fsynced and ``os.replace``d, so a crash leaves either the old file or the new one. A file that is
missing, truncated, foreign or stale (its stamp differs from the catalog's) is rebuilt, never trusted.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from clipsearch.store.catalog import Catalog

MAGIC = b"CLIPSEARCH-FAISS-1\n"


@dataclass(frozen=True)
class Hit:
    """One search result: catalog id and cosine similarity to the query."""

    id: int
    score: float


class VectorIndex:
    """Exact inner-product search over L2-normalised vectors, keyed by catalog id.

    Kept behind this small interface so an approximate index (IVF, HNSW) can replace the flat one later.
    """

    def __init__(self, index, stamp: dict):
        self._index = index
        self.stamp = stamp

    @classmethod
    def build(cls, ids: np.ndarray, matrix: np.ndarray, stamp: dict) -> VectorIndex:
        return cls.build_from_chunks([(ids, matrix)], stamp)

    @classmethod
    def build_from_chunks(cls, chunks: Iterable[tuple[np.ndarray, np.ndarray]], stamp: dict) -> VectorIndex:
        """An exact index of every ``(ids, matrix)`` chunk, added one chunk at a time."""
        import faiss

        index = None
        for ids, matrix in chunks:
            if not len(ids):
                continue
            if index is None:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(int(matrix.shape[1])))
            index.add_with_ids(np.ascontiguousarray(matrix, dtype=np.float32), np.ascontiguousarray(ids, np.int64))
        if index is None:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(int(stamp.get("dim") or 1)))
        return cls(index, dict(stamp, count=int(index.ntotal), dim=int(index.d)))

    def apply(self, ids: np.ndarray, matrix: np.ndarray, gone: np.ndarray, stamp: dict) -> None:
        """Catch up with the catalog: drop ``gone`` and the old vectors of ``ids``, add ``ids``' new vectors."""
        import faiss

        drop = np.unique(np.concatenate([np.asarray(gone, np.int64), np.asarray(ids, np.int64)]))
        if len(drop):
            # Removing compacts the whole flat array (O(n)); new ids are the common case and need none.
            drop = drop[np.isin(drop, faiss.vector_to_array(self._index.id_map))]
        if len(drop):
            self._index.remove_ids(faiss.IDSelectorBatch(drop))
        if len(ids):
            if self._index.ntotal == 0 and matrix.shape[1] != self._index.d:
                self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(int(matrix.shape[1])))
            self._index.add_with_ids(np.ascontiguousarray(matrix, dtype=np.float32),
                                     np.ascontiguousarray(ids, np.int64))
        self.stamp = dict(stamp, count=int(self._index.ntotal), dim=int(self._index.d))

    def stamp_matches(self, expected: dict) -> bool:
        return all(self.stamp.get(key) == value for key, value in expected.items())

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> list[Hit]:
        """The ``k`` nearest vectors to ``query`` (best first), optionally only among ``allowed_ids``."""
        import faiss

        if k <= 0 or len(self) == 0:
            return []
        params = None
        if allowed_ids is not None:
            if len(allowed_ids) == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, np.int64)))
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        scores, ids = self._index.search(q, min(k, len(self)), params=params)
        return [Hit(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        import faiss

        payload = faiss.serialize_index(self._index).tobytes()
        header = json.dumps(dict(self.stamp, blake2b=hashlib.blake2b(payload, digest_size=16).hexdigest())).encode()
        atomic_write(path, [MAGIC, struct.pack("<I", len(header)), header, payload])

    @property
    def generation(self) -> int:
        return int(self.stamp.get("generation", -1))

    @classmethod
    def load(cls, path: str, expected: dict) -> VectorIndex | None:
        """The index at ``path`` if it is intact and its stamp matches ``expected``; else ``None``."""
        import faiss

        try:
            with open(path, "rb") as handle:
                if handle.read(len(MAGIC)) != MAGIC:
                    return None
                (length,) = struct.unpack("<I", handle.read(4))
                stamp = json.loads(handle.read(length))
                payload = handle.read()
        except (OSError, ValueError, struct.error):
            return None
        if any(stamp.get(key) != value for key, value in expected.items()):
            return None  # stale: built from another state of the catalog, or another model
        if hashlib.blake2b(payload, digest_size=16).hexdigest() != stamp.get("blake2b"):
            return None
        try:
            index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        except RuntimeError:
            return None
        if index.ntotal != stamp.get("count"):
            return None
        stamp.pop("blake2b", None)
        return cls(index, stamp)


STAMP_FORMAT = 1


def read_stamp(path: str) -> dict | None:
    """The stamp in an index file's header (nothing else is read), or ``None``."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                return None
            (length,) = struct.unpack("<I", handle.read(4))
            return json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None


class DerivedIndex:
    """The FAISS index of one catalog, kept current. Not thread-safe: its owner (``Library``) holds a lock."""

    def __init__(self, catalog: Catalog, path: str):
        self._catalog = catalog
        self.path = path
        self._index: VectorIndex | None = None

    def stamp(self, state: dict | None = None) -> dict:
        """What an index built from the catalog's present state is stamped with."""
        state = state or self._catalog.state()
        identity = (state.get("model") or {}).get("identity")
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        return {"format": STAMP_FORMAT, "generation": state["generation"], "model": key,
                "catalog": state["instance"]}

    def current(self) -> VectorIndex:
        """The index matching the catalog now: kept, caught up with what changed, loaded, or rebuilt."""
        expected = self.stamp()
        if self._index is not None and self._index.stamp_matches(expected):
            return self._index
        lineage = {k: v for k, v in expected.items() if k != "generation"}
        base = self._index if self._index is not None and self._index.stamp_matches(lineage) else None
        if base is None:
            base = VectorIndex.load(self.path, lineage)  # any generation of this catalog and model
        with self._catalog.snapshot():  # the stamp and the vectors must describe the same state
            expected = self.stamp()
            changes = None
            if base is not None and base.generation <= expected["generation"]:
                changes = self._catalog.changes_since(base.generation)
            if changes is not None:
                base.apply(*changes, stamp=expected)
                self._index = base
            else:
                self._index = VectorIndex.build_from_chunks(self._catalog.vector_chunks(), expected)
        if changes is None:
            self._write()  # a rebuild is worth keeping
        return self._index

    def file_is_current(self) -> bool:
        """Whether the file on disk is intact and matches the catalog now."""
        return VectorIndex.load(self.path, self.stamp()) is not None

    def save(self) -> None:
        """Write the current index to its file unless the file already holds it (by its header's stamp).

        After a run that changed nothing this reads only the file's header: FAISS is not even imported."""
        on_disk = read_stamp(self.path)
        if on_disk is not None and all(on_disk.get(k) == v for k, v in self.stamp().items()):
            return
        index = self.current()
        if on_disk is None or any(on_disk.get(k) != v for k, v in index.stamp.items()):
            self._write()

    def _write(self) -> None:
        """Write the index atomically. A read-only or full disk costs only the cache."""
        if self._index is None or not os.access(os.path.dirname(os.path.abspath(self.path)), os.W_OK):
            return
        try:
            self._index.save(self.path)
        except OSError:
            pass  # the catalog stays the truth; the next reader rebuilds


def atomic_write(path: str, chunks: list[bytes]) -> None:
    """Write ``chunks`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    _remove_orphaned_temporaries(path)
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_orphaned_temporaries(path: str) -> None:
    """Delete temporary files left by writers that were killed mid-write (their process no longer exists)."""
    for leftover in glob.glob(glob.escape(path) + ".tmp-*"):
        try:
            pid = int(leftover.rsplit(".tmp-", 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or _process_exists(pid):
            continue
        try:
            os.unlink(leftover)
        except OSError:
            pass  # another process cleaned it up first, or the folder is read-only: harmless either way


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
