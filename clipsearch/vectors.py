"""The FAISS index: a cache derived from the catalog, never the truth.

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
from dataclasses import dataclass

import numpy as np

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
        import faiss

        dim = int(matrix.shape[1]) if matrix.size else int(stamp.get("dim") or 1)
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(matrix, dtype=np.float32), np.ascontiguousarray(ids, np.int64))
        return cls(index, dict(stamp, count=int(len(ids)), dim=dim))

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
