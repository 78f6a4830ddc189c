"""Results of the costly analyses (themes, map, odd ones out) kept in the index folder, under the rules of the
FAISS file: a small header (magic, JSON stamp, checksum) then the arrays (NumPy ``.npz``, never pickles), written
to a temporary file and ``os.replace``d. A file that is missing, truncated, corrupt, from another catalog or
model, or stamped with other settings is ignored and the result recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile

import numpy as np

from clipsearch.store.vectors import atomic_write

MAGIC = b"CLIPSEARCH-EXPLORE-1\n"
FOLDER = "explore"


class ResultCache:
    """One cached result: ``load`` what matches a stamp, ``save`` arrays with the stamp they were made from."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def load(self, expected: dict) -> tuple[dict, dict[str, np.ndarray]] | None:
        """``(stamp, arrays)`` if the file is intact and every key of ``expected`` has that value in its stamp."""
        try:
            with open(self.path, "rb") as handle:
                if handle.read(len(MAGIC)) != MAGIC:
                    return None
                (length,) = struct.unpack("<I", handle.read(4))
                stamp = json.loads(handle.read(length))
                payload = handle.read()
        except (OSError, ValueError, struct.error):
            return None
        if not isinstance(stamp, dict) or any(stamp.get(key) != value for key, value in expected.items()):
            return None
        if hashlib.blake2b(payload, digest_size=16).hexdigest() != stamp.pop("blake2b", None):
            return None
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
            return None
        return stamp, arrays

    def save(self, stamp: dict, arrays: dict[str, np.ndarray]) -> None:
        """Write atomically; a read-only or full disk costs only the cache (the result was still returned)."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        payload = buffer.getvalue()
        header = json.dumps(dict(stamp, blake2b=hashlib.blake2b(payload, digest_size=16).hexdigest())).encode()
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            atomic_write(self.path, [MAGIC, struct.pack("<I", len(header)), header, payload])
        except OSError:
            pass


def settings_key(*parts) -> str:
    """A short digest of the settings a result depends on (labels, templates, counts), for its stamp."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
