"""The FAISS index: a cache derived from the catalog, never the truth, and the one place of its policy.

``DerivedIndex`` keeps a catalog's index current: a reader's in-memory index catches up with the batches a
writer commits by adding and removing only what changed; a missing, foreign or unreadable file, or a reader
too far behind, is rebuilt from the catalog's vectors, read in chunks.

The index type is chosen by size (``IndexPolicy``): an exact flat index below ``CROSSOVER`` (20k) vectors, above it
an inverted file of product-quantised codes (``IVF{nlist},PQ{d/16}``: 32 bytes a 512-d vector) whose short list
is re-ranked exactly from the catalog's stored vectors. Both take additions and removals in place; when the
size outgrows the type (past the crossover, or 4x the vectors the lists were trained for) a new index is
built in the background while the old one, kept current, goes on answering. Measured in
``benchmarks/bench_ann.py``; why IVF-PQ and not HNSW: it takes removals and keeps 1M vectors in 40 MB (HNSW
keeps every float, 2 GB, and cannot remove).

One file holds a small header (magic, JSON stamp with the index type and its parameters, checksum) and the
serialised FAISS index. It is written to a temporary file, fsynced and ``os.replace``d, so a crash leaves
either the old file or the new one. A file that is missing, truncated, foreign or stale (its stamp differs
from the catalog's) is rebuilt, never trusted; a file of another type than the policy wants is replaced.
An approximate index is memory-mapped (``faiss.IO_FLAG_MMAP``): serving it needs no RAM for its codes until
the first change it catches up with.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

from clipsearch.store.catalog import Catalog

MAGIC = b"CLIPSEARCH-FAISS-1\n"
STAMP_FORMAT = 2  # 2: the stamp records the index type and its parameters
HEADER_BLOCK = 4096  # the JSON header is padded to this, so the payload can be streamed and then checksummed

# Below this many vectors the exact flat index is kept. Measured (bench_ann, one thread, RESULTS.md "ann"): flat
# vs IVF-PQ p50 1.4 vs 1.8 ms at 10k, 5.7 vs 1.9 ms at 20k, 41 vs 2.1 ms at 50k.
CROSSOVER = 20_000
# A filtered search over at most this many ids is exact, over their stored vectors (an IVF probe could miss them).
EXACT_SUBSET = 4096
_MIN_TRAINING = 78  # the fewest vectors an IVF-PQ index trains on without faiss warning (39 per centroid, 2 codes)

StoredVectors = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # ids -> (ids found, their vectors)


@dataclass(frozen=True)
class Hit:
    """One search result: catalog id and cosine similarity to the query."""

    id: int
    score: float


@dataclass(frozen=True)
class IndexType:
    """A FAISS index type: its ``index_factory`` string and search parameters, recorded in the stamp.

    ``nprobe``: inverted lists searched per query; ``shortlist``: candidates re-ranked exactly from the stored
    vectors (0: the index's own scores are exact)."""

    factory: str = "IDMap2,Flat"
    nprobe: int = 0
    shortlist: int = 0

    @property
    def approximate(self) -> bool:
        return self.factory.startswith("IVF")

    @property
    def nlist(self) -> int:
        match = re.match(r"IVF(\d+)", self.factory)
        return int(match.group(1)) if match else 0

    def label(self) -> str:
        if not self.approximate:
            return f"{self.factory} (exact)"
        return (f"{self.factory} (approximate: {self.nprobe} of {self.nlist} lists probed, "
                f"best {self.shortlist} re-ranked exactly)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict | None) -> IndexType:
        return cls(**value) if value else FLAT


FLAT = IndexType()


def approximate_type(count: int, dim: int, nlist: int | None = None) -> IndexType:
    """IVF-PQ for ``count`` vectors of ``dim``: about sqrt(n) lists, ``dim/16`` one-byte codes a vector (32 bytes
    for 512-d; ``dim/8`` codes recalled no better after the re-rank and trained 9x slower: bench_ann)."""
    if nlist is None:  # faiss wants 39 training points per centroid
        nlist = max(1, min(_pow2(math.sqrt(count)), _pow2_floor(count / 39)))
    m = max(d for d in range(1, max(1, dim // 16) + 1) if dim % d == 0)  # PQ sub-vectors must split dim evenly
    nbits = max(1, min(8, int(math.log2(max(2.0, count / 39)))))  # 8 bits (256 centroids) from 9,984 vectors
    code = f"PQ{m}" if nbits == 8 else f"PQ{m}x{nbits}"
    return IndexType(f"IVF{nlist},{code}np", nprobe=min(nlist, max(8, nlist // 64)), shortlist=200)


def _pow2(x: float) -> int:
    return 1 << max(0, round(math.log2(max(1.0, x))))


def _pow2_floor(x: float) -> int:
    return 1 << max(0, int(math.log2(max(1.0, x))))


@dataclass(frozen=True)
class IndexPolicy:
    """Which index type a number of vectors gets. ``approximate``: ``None`` chooses by size, ``True`` forces
    IVF-PQ (wherever there are enough vectors to train it), ``False`` forces the exact flat index."""

    crossover: int = CROSSOVER
    approximate: bool | None = None

    def choose(self, count: int, dim: int) -> IndexType:
        wants = count >= self.crossover if self.approximate is None else self.approximate
        return approximate_type(count, dim) if wants and count >= _MIN_TRAINING else FLAT

    def keeps(self, kind: IndexType, count: int, dim: int) -> bool:
        """Whether an index of ``kind`` still suits ``count`` vectors. Hysteresis keeps a size near a boundary
        from rebuilding back and forth: an IVF index stays down to half the crossover and while its number of
        lists is within 2x of the one it would get now (so about every 4x growth it is rebuilt)."""
        wanted = self.choose(count, dim)
        if kind == wanted:
            return True
        if not kind.approximate:
            return not wanted.approximate
        if self.approximate is False or count < _MIN_TRAINING or (
                self.approximate is None and count < self.crossover // 2):
            return False
        ideal = approximate_type(count, dim)
        return ideal.nlist // 2 <= kind.nlist <= ideal.nlist * 2 and _shape(kind) == _shape(
            approximate_type(count, dim, kind.nlist))


def _shape(kind: IndexType) -> IndexType:
    """The type without its code width, which only very small indexes narrow (to train on what there is)."""
    return IndexType(re.sub(r"(PQ\d+)x\d+", r"\1", kind.factory), kind.nprobe, kind.shortlist)


class VectorIndex:
    """Inner-product search over L2-normalised vectors, keyed by catalog id, of one ``IndexType``.

    An approximate index re-ranks its short list exactly with the vectors ``use_stored_vectors`` hands in (the
    catalog's); without them it answers with its approximate scores.
    """

    def __init__(self, index, stamp: dict, mapped: bool = False):
        self._index = index
        self.stamp = stamp
        self.kind = IndexType.from_dict(stamp.get("index"))
        self._mapped = mapped  # inverted lists memory-mapped from the file (read-only until copied into RAM)
        self._stored: StoredVectors | None = None

    def use_stored_vectors(self, fetch: StoredVectors | None) -> None:
        self._stored = fetch

    @classmethod
    def build(cls, ids: np.ndarray, matrix: np.ndarray, stamp: dict) -> VectorIndex:
        return cls.build_from_chunks([(ids, matrix)], stamp)

    @classmethod
    def build_from_chunks(cls, chunks: Iterable[tuple[np.ndarray, np.ndarray]], stamp: dict) -> VectorIndex:
        """An index of the type in ``stamp["index"]`` (default: exact) of every ``(ids, matrix)`` chunk, added
        one chunk at a time. An approximate type reads the chunks twice (a training sample, then the codes):
        pass a re-iterable (a list, or an object whose ``__iter__`` starts over)."""
        import faiss

        kind = IndexType.from_dict(stamp.get("index"))
        index = None
        if kind.approximate:
            if iter(chunks) is chunks:
                chunks = list(chunks)
            index = _trained_ivf(chunks, kind)
            if index is None:
                kind = FLAT  # nothing to train on
        for ids, matrix in chunks:
            if not len(ids):
                continue
            if index is None:
                index = faiss.index_factory(int(matrix.shape[1]), kind.factory, faiss.METRIC_INNER_PRODUCT)
            index.add_with_ids(np.ascontiguousarray(matrix, dtype=np.float32), np.ascontiguousarray(ids, np.int64))
        if index is None:
            index = faiss.index_factory(int(stamp.get("dim") or 1), FLAT.factory, faiss.METRIC_INNER_PRODUCT)
        return cls(index, dict(stamp, index=kind.to_dict(), count=int(index.ntotal), dim=int(index.d)))

    def apply(self, ids: np.ndarray, matrix: np.ndarray, gone: np.ndarray, stamp: dict) -> bool:
        """Catch up with the catalog: drop ``gone`` and the old vectors of ``ids``, add ``ids``' new vectors.
        ``False`` (nothing changed) when the vectors no longer fit this index (another dimension): rebuild."""
        import faiss

        if len(ids) and matrix.shape[1] != self._index.d:
            if self._index.ntotal or self.kind.approximate:
                return False
            self._index = faiss.index_factory(int(matrix.shape[1]), FLAT.factory, faiss.METRIC_INNER_PRODUCT)
        drop = np.unique(np.concatenate([np.asarray(gone, np.int64), np.asarray(ids, np.int64)]))
        if len(drop):
            # Removing scans or compacts every vector (O(n)); new ids are the common case and need none.
            drop = drop[np.isin(drop, self.ids())]
        if (len(drop) or len(ids)) and self._mapped:
            self._copy_lists_into_memory()
        if len(drop):
            self._index.remove_ids(faiss.IDSelectorBatch(drop))
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(matrix, dtype=np.float32),
                                     np.ascontiguousarray(ids, np.int64))
        self.stamp = dict(stamp, index=self.kind.to_dict(), count=int(self._index.ntotal), dim=int(self._index.d))
        return True

    def ids(self) -> np.ndarray:
        """Every id in the index."""
        import faiss

        if not self.kind.approximate:
            return faiss.vector_to_array(self._index.id_map)
        lists = faiss.extract_index_ivf(self._index).invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(lists.nlist) if lists.list_size(i)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _copy_lists_into_memory(self) -> None:
        """Memory-mapped lists are read-only: before the first change, copy them into RAM (the codes only)."""
        import faiss

        ivf = faiss.extract_index_ivf(self._index)
        mapped = ivf.invlists
        lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
        for i in range(ivf.nlist):
            size = mapped.list_size(i)
            if size:
                lists.add_entries(i, size, mapped.get_ids(i), mapped.get_codes(i))
        ivf.replace_invlists(lists, True)
        lists.this.disown()  # the index owns (and frees) them now
        self._mapped = False

    def stamp_matches(self, expected: dict) -> bool:
        return all(self.stamp.get(key) == value for key, value in expected.items())

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def search(self, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None) -> list[Hit]:
        """The ``k`` nearest vectors to ``query`` (best first), optionally only among ``allowed_ids``."""
        import faiss

        if k <= 0 or len(self) == 0:
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        selector = None
        if allowed_ids is not None:
            if len(allowed_ids) == 0:
                return []
            if self.kind.approximate and self._stored is not None and len(allowed_ids) <= EXACT_SUBSET:
                return _exact_among(q[0], *self._stored(np.asarray(allowed_ids, np.int64)), k)
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, np.int64))
        if not self.kind.approximate:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            scores, ids = self._index.search(q, min(k, len(self)), params=params)
            return [Hit(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        params = faiss.SearchParametersIVF(nprobe=self.kind.nprobe)
        if selector is not None:
            params.sel = selector
        wanted = max(k, self.kind.shortlist) if self._stored is not None else k
        scores, ids = self._index.search(q, min(wanted, len(self)), params=params)
        found = ids[0][ids[0] >= 0]
        if self._stored is None:
            return [Hit(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        return _exact_among(q[0], *self._stored(found), k)  # re-rank the short list by the true scores

    # -- persistence --------------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the index atomically: header (stamp and the payload's checksum) then the FAISS payload."""
        if self._mapped:
            self._copy_lists_into_memory()  # a mapped index would serialise a reference to its file
        atomic_write_with(path, lambda handle: _write_payload(handle, self._index, self.stamp))

    @property
    def generation(self) -> int:
        return int(self.stamp.get("generation", -1))

    @classmethod
    def load(cls, path: str, expected: dict) -> VectorIndex | None:
        """The index at ``path`` if it is intact and its stamp matches ``expected``; else ``None``.

        An approximate index's inverted lists are memory-mapped, not read."""
        import faiss

        try:
            handle = open(path, "rb")
        except OSError:
            return None
        with handle:
            stamp, offset = _read_header(handle)
            if stamp is None or any(stamp.get(key) != value for key, value in expected.items()):
                return None  # foreign, or stale: built from another state of the catalog, or another model
            if not _payload_is_intact(handle, offset, stamp):
                return None
            kind = IndexType.from_dict(stamp.get("index"))
            # faiss opens the file by name: the one this handle holds (not a file renamed over it since)
            source = f"/proc/self/fd/{handle.fileno()}" if os.path.exists("/proc/self/fd") else path
            try:
                reader = faiss.FileIOReader(source)
                skip = np.empty(offset, np.uint8)
                if reader(faiss.swig_ptr(skip), 1, offset) != offset:
                    return None
                index = faiss.read_index(reader, faiss.IO_FLAG_MMAP if kind.approximate else 0)
            except (RuntimeError, ValueError, TypeError):
                return None
        if index.ntotal != stamp.get("count"):
            return None
        if kind.approximate:
            faiss.extract_index_ivf(index).nprobe = kind.nprobe
        stamp.pop("blake2b", None)
        return cls(index, stamp, mapped=kind.approximate)


def _trained_ivf(chunks: Iterable[tuple[np.ndarray, np.ndarray]], kind: IndexType):
    """An empty IVF index of ``kind`` trained on a uniform random sample of the chunks (None: no vectors)."""
    import faiss

    sample = _sample(chunks, max(64 * kind.nlist, 10_000))
    if sample is None:
        return None
    index = faiss.index_factory(int(sample.shape[1]), kind.factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    # 10 k-means rounds for the lists and the codes (faiss's default, 25, costs 2.5x): recall measured in bench_ann
    ivf.cp.niter = 10
    ivf.cp.max_points_per_centroid = 64
    quantizer = getattr(faiss.downcast_index(index), "pq", None)
    if quantizer is not None:
        quantizer.cp.niter = 10
    index.train(sample)
    ivf.nprobe = kind.nprobe
    return index


def _sample(chunks: Iterable[tuple[np.ndarray, np.ndarray]], size: int) -> np.ndarray | None:
    """A seeded uniform sample of ``size`` rows over all chunks, in one pass: the rows with the smallest
    random keys."""
    rng = np.random.default_rng(0)
    keys, rows = np.zeros(0), None
    for _, matrix in chunks:
        if not len(matrix):
            continue
        keys = np.concatenate([keys, rng.random(len(matrix))])
        rows = matrix if rows is None else np.concatenate([rows, matrix])
        if len(keys) > 2 * size:
            keep = np.argpartition(keys, size)[:size]
            keys, rows = keys[keep], rows[keep]
    if rows is None:
        return None
    if len(keys) > size:
        keep = np.argpartition(keys, size)[:size]
        rows = rows[keep]
    return np.ascontiguousarray(rows, dtype=np.float32)


def _exact_among(query: np.ndarray, ids: np.ndarray, matrix: np.ndarray, k: int) -> list[Hit]:
    if not len(ids):
        return []
    scores = matrix @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [Hit(int(ids[i]), float(scores[i])) for i in order]


def _write_payload(handle, index, stamp: dict) -> None:
    """Header block, then the FAISS payload streamed (no copy of it in memory), then the header's checksum."""
    import faiss

    digest = hashlib.blake2b(digest_size=16)
    start = handle.tell()
    handle.write(MAGIC + struct.pack("<I", HEADER_BLOCK) + b" " * HEADER_BLOCK)

    def write(data: bytes) -> int:
        digest.update(data)
        handle.write(data)
        return len(data)

    faiss.write_index(index, faiss.PyCallbackIOWriter(write))
    header = json.dumps(dict(stamp, blake2b=digest.hexdigest())).encode()
    if len(header) > HEADER_BLOCK:
        raise ValueError("index stamp larger than its header block")
    handle.seek(start + len(MAGIC) + 4)
    handle.write(header)
    handle.seek(0, os.SEEK_END)


def _read_header(handle) -> tuple[dict | None, int]:
    """The stamp and the offset of the payload, or ``(None, 0)`` for a file that is not ours."""
    try:
        if handle.read(len(MAGIC)) != MAGIC:
            return None, 0
        (length,) = struct.unpack("<I", handle.read(4))
        if length > 1 << 20:
            return None, 0  # not a header this module wrote (it writes 4 KiB)
        stamp = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None, 0
    return (stamp, len(MAGIC) + 4 + length) if isinstance(stamp, dict) else (None, 0)


def _payload_is_intact(handle, offset: int, stamp: dict) -> bool:
    digest = hashlib.blake2b(digest_size=16)
    try:
        handle.seek(offset)
        while block := handle.read(1 << 20):
            digest.update(block)
    except OSError:
        return False
    return digest.hexdigest() == stamp.get("blake2b")


def read_stamp(path: str) -> dict | None:
    """The stamp in an index file's header (nothing else is read), or ``None``."""
    try:
        with open(path, "rb") as handle:
            return _read_header(handle)[0]
    except OSError:
        return None


class _CatalogChunks:
    """The catalog's vectors in chunks, re-read from the start each time it is iterated (a build reads twice)."""

    def __init__(self, catalog: Catalog):
        self._catalog = catalog

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self._catalog.vector_chunks()


def stamp_of(state: dict) -> dict:
    """What an index built from a catalog state (``Catalog.state()``) is stamped with."""
    identity = (state.get("model") or {}).get("identity")
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return {"format": STAMP_FORMAT, "generation": state["generation"], "model": key, "catalog": state["instance"]}


def build_from_catalog(catalog: Catalog, policy: IndexPolicy) -> VectorIndex:
    """A new index of every vector in ``catalog``, of the type ``policy`` chooses for their number, from one
    consistent state (the stamp and the vectors describe the same generation)."""
    with catalog.snapshot():
        stamp = stamp_of(catalog.state())
        count, dim = catalog.vector_stats()
        kind = policy.choose(count, dim)
        return VectorIndex.build_from_chunks(_CatalogChunks(catalog), dict(stamp, index=kind.to_dict()))


class _Rebuild(threading.Thread):
    """Builds a new index from its own catalog connection while the old index keeps answering."""

    def __init__(self, catalog_path: str, index_path: str, policy: IndexPolicy):
        super().__init__(name="clipsearch-index-rebuild", daemon=True)
        self._paths = (catalog_path, index_path)
        self._policy = policy
        self.result: VectorIndex | None = None
        self.failed = False

    def run(self) -> None:
        catalog_path, index_path = self._paths
        try:
            catalog = Catalog.open(catalog_path)
            try:
                self.result = build_from_catalog(catalog, self._policy)
            finally:
                catalog.close()
            _write_quietly(self.result, index_path)
        except (sqlite3.Error, RuntimeError, MemoryError, OSError, ValueError):
            self.failed = True  # the old index keeps answering; this process does not try again


class DerivedIndex:
    """The FAISS index of one catalog, kept current. Not thread-safe: its owner (``Library``) holds a lock."""

    def __init__(self, catalog: Catalog, path: str, policy: IndexPolicy = IndexPolicy()):
        self._catalog = catalog
        self.path = path
        self.policy = policy
        self._index: VectorIndex | None = None
        self._rebuild: _Rebuild | None = None
        self._gave_up = False  # a background rebuild failed: keep the index we have

    def stamp(self, state: dict | None = None) -> dict:
        """What an index built from the catalog's present state is stamped with."""
        return stamp_of(state or self._catalog.state())

    def current(self, background: bool = True) -> VectorIndex:
        """The index matching the catalog now: kept, caught up with what changed, loaded, or rebuilt.

        When its type no longer suits its size, a new one is built: in the background (``background``, while
        this one keeps answering), else now."""
        self._adopt_rebuilt()
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
            if changes is not None and base.apply(*changes, stamp=expected):
                self._index = base
                rebuilt = False
            else:
                count, dim = self._catalog.vector_stats()
                kind = self.policy.choose(count, dim)
                self._index = VectorIndex.build_from_chunks(_CatalogChunks(self._catalog),
                                                            dict(expected, index=kind.to_dict()))
                rebuilt = True
        self._index.use_stored_vectors(self._catalog.vectors_of)
        if rebuilt:
            self._write()  # a rebuild is worth keeping
        elif not self.policy.keeps(self._index.kind, len(self._index), self._index.dim):
            self._replace(background)
        return self._index

    def _replace(self, background: bool) -> None:
        """Build an index of the type the policy wants now; meanwhile ``self._index`` keeps answering."""
        if self._rebuild is not None or self._gave_up:
            return
        self._rebuild = _Rebuild(self._catalog.path, self.path, self.policy)
        if background:
            self._rebuild.start()
        else:
            self._rebuild.run()
            self._adopt_rebuilt()
            self.current(background=False)  # catch the new index up with anything committed meanwhile

    def _adopt_rebuilt(self) -> None:
        job = self._rebuild
        if job is None or job.is_alive():
            return
        self._rebuild = None
        if job.failed or job.result is None:
            self._gave_up = True
            return
        lineage = {k: v for k, v in self.stamp().items() if k != "generation"}
        if job.result.stamp_matches(lineage):
            job.result.use_stored_vectors(self._catalog.vectors_of)
            self._index = job.result  # current() catches it up from its generation

    def wait_for_rebuild(self, timeout: float | None = None) -> bool:
        """Wait for a background rebuild to finish (``True`` when none is running any more)."""
        job = self._rebuild
        if job is not None and job.is_alive():
            job.join(timeout)
        return job is None or not job.is_alive()

    @property
    def rebuilding(self) -> bool:
        return self._rebuild is not None and self._rebuild.is_alive()

    def describe(self) -> str | None:
        """The index type in use (this process's index, else the file's header), without importing FAISS."""
        if self._index is not None:
            kind = self._index.kind
        else:
            stamp = read_stamp(self.path)
            if stamp is None or stamp.get("format") != STAMP_FORMAT:
                return None
            kind = IndexType.from_dict(stamp.get("index"))
        return kind.label() + ("; a new index is being built" if self.rebuilding else "")

    def file_is_current(self) -> bool:
        """Whether the file on disk is intact and matches the catalog now."""
        return VectorIndex.load(self.path, self.stamp()) is not None

    def save(self) -> None:
        """Write the current index to its file unless the file already holds it (by its header's stamp).

        After a run that changed nothing this reads only the file's header: FAISS is not even imported. An index
        whose type no longer suits its size is rebuilt now when nothing in this process is answering from it
        (an index run), else in the background."""
        on_disk = read_stamp(self.path)
        if on_disk is not None and all(on_disk.get(k) == v for k, v in self.stamp().items()) and self.policy.keeps(
                IndexType.from_dict(on_disk.get("index")), int(on_disk.get("count") or 0),
                int(on_disk.get("dim") or 0)):
            return
        index = self.current(background=self._index is not None)
        if on_disk is None or any(on_disk.get(k) != v for k, v in index.stamp.items()):
            self._write()

    def _write(self) -> None:
        _write_quietly(self._index, self.path)


def _write_quietly(index: VectorIndex | None, path: str) -> None:
    """Write the index atomically. A read-only or full disk costs only the cache."""
    if index is None or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        return
    try:
        index.save(path)
    except OSError:
        pass  # the catalog stays the truth; the next reader rebuilds


def atomic_write(path: str, chunks: list[bytes]) -> None:
    """Write ``chunks`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    atomic_write_with(path, lambda handle: [handle.write(chunk) for chunk in chunks])


def atomic_write_with(path: str, write: Callable) -> None:
    """Have ``write(handle)`` fill a temporary file, then make it ``path``: readers see the old file or the
    whole new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    _remove_orphaned_temporaries(path)
    tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as handle:
            write(handle)
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
