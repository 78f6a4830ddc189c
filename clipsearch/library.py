"""The public API: one ``Library`` per index folder, for the CLI, the web app and Python users alike.

    lib = Library.open("~/photo-index", model=ModelSpec.parse("clipsearch-tiny"), create=True)
    lib.index(["~/Pictures"])
    for hit in lib.search("a dog on a beach - people"):
        print(hit.score, hit.path)

Layout of an index folder: ``catalog.sqlite`` (the truth), ``vectors.faiss`` (derived, rebuilt when stale),
``write.lock`` (held by the one process indexing into it).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipsearch.catalog import Catalog, FileRow
from clipsearch.decode import DecodeOptions, open_image
from clipsearch.errors import (
    ClipsearchError,
    ImageError,
    IndexLockedError,
    IndexStoreError,
    ModelMismatchError,
    QueryError,
)
from clipsearch.indexer import IndexOptions, IndexReport, Progress, index_roots
from clipsearch.models import ModelSpec
from clipsearch.query import Term, combine, parse_query
from clipsearch.vectors import VectorIndex

CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.faiss"
LOCK_FILE = "write.lock"
REPO_INDEX_DIR = Path(__file__).resolve().parent.parent / "index"


def default_index_dir() -> Path:
    """``$CLIPSEARCH_INDEX``; else the repository's ``index/`` when run from a checkout; else the user data dir."""
    if os.environ.get("CLIPSEARCH_INDEX"):
        return Path(os.environ["CLIPSEARCH_INDEX"]).expanduser()
    if (REPO_INDEX_DIR / "README.md").is_file():
        return REPO_INDEX_DIR / "default"
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "clipsearch" / "index"


@dataclass(frozen=True)
class SearchHit:
    """One result of a search, best first; ``score`` is the cosine similarity to the query (-1..1)."""

    id: int
    path: str
    score: float
    width: int | None = None
    height: int | None = None
    bytes: int = 0
    mtime: float = 0.0

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "path": self.path,
            "score": round(self.score, 6),
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "mtime": self.mtime,
        }


@dataclass(frozen=True)
class SearchFilter:
    """Restrict a search to a folder (a sub-tree of the roots) and a modification-time range (epoch seconds)."""

    folder: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.folder) or self.since is not None or self.until is not None


@dataclass
class LibraryStatus:
    """What an index holds: model, counts, roots, the last run, and every skipped file with its reason."""

    index_dir: str
    model: str | None
    files: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    last_run: dict | None = None

    def to_dict(self) -> dict:
        return {
            "index": self.index_dir,
            "model": self.model,
            "files": self.files,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "roots": self.roots,
            "last_run": self.last_run,
        }


class Library:
    """An index folder: add photo folders to it, search it, ask its status. Safe to share between threads."""

    def __init__(self, directory: Path, catalog: Catalog, model: ModelSpec | None, embed_options=None):
        self.directory = directory
        self._catalog = catalog
        self._model = model
        self._embed_options = embed_options
        self._embedder = None
        self._vectors: VectorIndex | None = None
        self._lock = threading.RLock()
        self.decode_options = DecodeOptions()

    # -- opening ------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        directory: str | os.PathLike | None = None,
        model: ModelSpec | None = None,
        create: bool = False,
        embed_options=None,
    ) -> Library:
        """Open the index at ``directory`` (default: ``default_index_dir()``).

        ``model`` is the model to index with; an index that already holds vectors of another model refuses it
        with ``ModelMismatchError``. Searches always use the model the index was built with.
        """
        path = Path(directory).expanduser() if directory else default_index_dir()
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not (path / CATALOG_FILE).is_file():
            raise IndexStoreError(f"no index at {path}; create one with `clipsearch index PHOTO_FOLDER --index {path}`")
        catalog = Catalog.open(str(path / CATALOG_FILE), create=create)
        stored = catalog.get_json("model")
        if stored is not None:
            stored_spec = ModelSpec.from_dict(stored["spec"])
            if model is not None and model.identity() != stored["identity"] and catalog.counts()["files"] == 0:
                # no vectors yet (say, the first model's weights never loaded): nothing to mix, take the new one
                catalog.set_json("model", {"spec": model.to_dict(), "identity": model.identity()})
            elif model is not None and model.identity() != stored["identity"]:
                catalog.close()
                raise ModelMismatchError(
                    f"the index at {path} holds vectors of {stored_spec.label}, not {model.label}; vectors of two "
                    "models cannot be mixed. Use another --index folder for the new model, or omit --model."
                )
            else:
                model = stored_spec
        return cls(path, catalog, model, embed_options)

    def close(self) -> None:
        with self._lock:
            self._catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def model(self) -> ModelSpec | None:
        return self._model

    @property
    def embedder(self):
        """The model, loaded on first use (so status and catalog commands never import torch)."""
        with self._lock:
            if self._embedder is None:
                if self._model is None:
                    raise IndexStoreError(f"the index at {self.directory} is empty and has no model yet")
                from clipsearch.embed import Embedder, EmbedOptions

                self._embedder = Embedder.load(self._model, self._embed_options or EmbedOptions())
            return self._embedder

    def use_embedder(self, embedder) -> None:
        """Hand in an already loaded embedder (shared between libraries, or a test double)."""
        with self._lock:
            self._embedder = embedder

    # -- indexing -----------------------------------------------------------------------------------------
    def index(
        self,
        paths: Sequence[str | os.PathLike] | None = None,
        options: IndexOptions = IndexOptions(),
        progress: Progress | None = None,
    ) -> IndexReport:
        """Add ``paths`` as roots (or refresh every known root when omitted) and bring the index up to date."""
        roots = [_real_root(p) for p in paths] if paths else self.roots()
        if not roots:
            raise ClipsearchError("nothing to index: give one or more photo folders")
        with _write_lock(self.directory):
            writer = Catalog.open(str(self.directory / CATALOG_FILE))
            try:
                if writer.get_json("model") is None:
                    writer.set_json("model", {"spec": self._model.to_dict(), "identity": self._model.identity()})
                writer.add_roots(roots)
                report = index_roots(writer, lambda: self.embedder, roots, options, progress)
            finally:
                writer.close()
            self._refresh_vectors(save=True)
        return report

    def roots(self) -> list[str]:
        with self._lock:
            return self._catalog.roots()

    # -- searching ----------------------------------------------------------------------------------------
    def encode_query(self, query: str | Sequence[str] | Sequence[Term]) -> np.ndarray:
        """Parse (if needed) and encode a query into one unit vector."""
        if isinstance(query, (list, tuple)) and query and all(isinstance(t, Term) for t in query):
            terms = list(query)
        else:
            terms = parse_query(query)
        vectors = []
        for term in terms:
            if term.kind == "text":
                vectors.append(self.embedder.encode_texts([term.value])[0])
            elif term.kind == "image":
                vectors.append(self.encode_image_file(term.value))
            elif term.kind == "file":
                vectors.append(self.vector_of(int(term.value)))
            else:
                raise QueryError(f"unknown query term kind {term.kind!r}")
        return combine(vectors, [t.weight for t in terms])

    def encode_image_file(self, path: str) -> np.ndarray:
        """Decode an image file under the same guards as indexing and embed it."""
        try:
            image = open_image(path, self.decode_options, min_side=self._min_side())
        except ImageError as exc:
            raise QueryError(f"cannot use {os.path.basename(path)} as a query image: {exc}") from None
        return self.embedder.encode_images([image])[0]

    def _min_side(self) -> int | None:
        spec = self.embedder.pixel_spec
        return spec.size if spec else None

    def vector_of(self, file_id: int) -> np.ndarray:
        """The stored vector of an indexed file: "more like this" without decoding or encoding anything."""
        with self._lock:
            vector = self._catalog.get_vector(file_id)
        if vector is None:
            raise QueryError(f"no indexed file with id {file_id}")
        return vector

    def search(
        self,
        query: str | Sequence[str] | Sequence[Term],
        top_k: int = 20,
        min_score: float | None = None,
        where: SearchFilter = SearchFilter(),
    ) -> list[SearchHit]:
        """Search with a mixed query (text, image paths, ``+``/``-``, weights); best first."""
        return self.search_vector(self.encode_query(query), top_k, min_score, where)

    def more_like(self, file_id: int, top_k: int = 20, min_score: float | None = None,
                  where: SearchFilter = SearchFilter()) -> list[SearchHit]:
        """Files most similar to an indexed file, using its stored vector."""
        return self.search_vector(self.vector_of(file_id), top_k, min_score, where)

    def search_vector(
        self, vector: np.ndarray, top_k: int = 20, min_score: float | None = None,
        where: SearchFilter = SearchFilter(),
    ) -> list[SearchHit]:
        """The files nearest to a unit vector."""
        if top_k <= 0:
            raise QueryError("--top must be at least 1")
        with self._lock:
            vectors = self._refresh_vectors()
            allowed = None
            if where.active:
                folder = os.path.realpath(os.path.expanduser(where.folder)) if where.folder else None
                allowed = np.fromiter(self._catalog.iter_ids(folder, (where.since, where.until)), dtype=np.int64)
            hits = vectors.search(vector, top_k, allowed)
            results = []
            for hit in hits:
                if min_score is not None and hit.score < min_score:
                    break
                row = self._catalog.get(hit.id)
                if row is not None and row.status == "ok":
                    results.append(_search_hit(row, hit.score))
        return results

    def file(self, file_id: int) -> FileRow | None:
        """The catalog row of an indexed file, or ``None``."""
        with self._lock:
            return self._catalog.get(file_id)

    # -- status -------------------------------------------------------------------------------------------
    def status(self) -> LibraryStatus:
        with self._lock:
            counts = self._catalog.counts()
            return LibraryStatus(
                index_dir=str(self.directory),
                model=self._model.label if self._model else None,
                files=counts["files"],
                skipped=self._catalog.skipped(),
                roots=self._catalog.roots(),
                last_run=self._catalog.last_run(),
            )

    # -- the derived FAISS index --------------------------------------------------------------------------
    def _stamp(self) -> dict:
        stored = self._catalog.get_json("model") or {}
        key = hashlib.sha256(json.dumps(stored.get("identity"), sort_keys=True).encode()).hexdigest()[:16]
        return {"format": 1, "generation": self._catalog.generation(), "model": key,
                "catalog": self._catalog.instance()}

    def _refresh_vectors(self, save: bool = False) -> VectorIndex:
        """The FAISS index matching the catalog now: kept, loaded from disk, or rebuilt (and saved)."""
        with self._lock:
            stamp = self._stamp()
            if self._vectors is not None and self._vectors.stamp_matches(stamp):
                return self._vectors
            path = str(self.directory / VECTORS_FILE)
            loaded = VectorIndex.load(path, stamp)
            if loaded is None:
                with self._catalog.snapshot():  # the stamp and the vectors must describe the same state
                    stamp = self._stamp()
                    ids, matrix = self._catalog.vectors()
                loaded = VectorIndex.build(ids, matrix, stamp)
                save = True
            if save and os.access(self.directory, os.W_OK):
                try:
                    loaded.save(path)
                except OSError:
                    pass  # a read-only or full disk costs only the cache; the catalog stays the truth
            self._vectors = loaded
            return loaded


def _search_hit(row: FileRow, score: float) -> SearchHit:
    return SearchHit(row.id, row.path, score, row.width, row.height, row.size, row.mtime_ns / 1e9)


def _real_root(path: str | os.PathLike) -> str:
    real = os.path.realpath(os.path.expanduser(os.fspath(path)))
    if not os.path.isdir(real):
        raise ClipsearchError(f"not a folder: {path}")
    return real


class _write_lock:
    """An exclusive, non-blocking lock on the index folder: one writer at a time, readers never wait."""

    def __init__(self, directory: Path):
        self._path = directory / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self):
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise IndexLockedError(
                f"another clipsearch process is indexing into {self._path.parent}; wait for it to finish"
            ) from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
