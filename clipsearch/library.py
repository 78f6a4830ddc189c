"""The public API: one ``Library`` per index folder, for the CLI, the web app and Python users alike.

    lib = Library.open("~/photo-index", model=ModelSpec.parse("clipsearch-tiny"), create=True)
    lib.index(["~/Pictures"])
    for hit in lib.search("a dog on a beach - people"):
        print(hit.score, hit.path)

Layout of an index folder: ``catalog.sqlite`` (the truth), ``vectors.faiss`` (derived, rebuilt when stale),
``write.lock`` (held by the one process indexing into it), ``thumbs/`` (images the web app made).

The facade over the steps of the data path (``ingest`` → ``model`` → ``store`` → ``search``, with ``media``
for what a server shows): the CLI, the web app and Python users call only this and the names in
``clipsearch.__all__``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipsearch.errors import (
    ClipsearchError,
    ImageError,
    IndexLockedError,
    IndexStoreError,
    ModelMismatchError,
    QueryError,
)
from clipsearch.imaging.decode import DecodeOptions, open_image
from clipsearch.ingest.run import IndexOptions, IndexReport, Progress, index_roots
from clipsearch.media.service import Media
from clipsearch.model.models import ModelSpec
from clipsearch.model.protocol import EmbeddingModel
from clipsearch.paths import is_within
from clipsearch.search.query import Term, combine, parse_query
from clipsearch.store.catalog import Catalog, FileRow
from clipsearch.store.vectors import DerivedIndex

CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.faiss"
LOCK_FILE = "write.lock"
THUMBS_DIR = "thumbs"
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
    taken: float = 0.0  # when the photo was taken (EXIF DateTimeOriginal, else ``mtime``), epoch seconds

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "path": self.path,
            "score": round(self.score, 6),
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "mtime": self.mtime,
            "taken": self.taken,
        }


@dataclass(frozen=True)
class SearchFilter:
    """Restrict a search to a folder (a sub-tree of the roots) and a range of dates taken (epoch seconds,
    inclusive): EXIF ``DateTimeOriginal``, else the file's modification time."""

    folder: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.folder) or self.since is not None or self.until is not None

    @classmethod
    def dated(cls, folder: str | None = None, since=None, until=None) -> SearchFilter:
        """A filter from dates as people give them: ``"2024-05-31"`` or a ``datetime.date`` is a whole day (an
        ``until`` day runs to its last second), an ISO date-time string, a ``datetime`` or epoch seconds a
        moment; ``None`` or ``""`` no bound. ``QueryError`` for a date that is none, or a range running
        backwards."""
        low, high = _epoch(since, "from"), _epoch(until, "until", end_of_day=True)
        if low is not None and high is not None and low > high:
            raise QueryError("the 'from' date is after the 'until' date")
        return cls(os.fspath(folder).strip() or None if folder else None, low, high)


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
        self._embedder: EmbeddingModel | None = None
        self._vectors = DerivedIndex(catalog, str(directory / VECTORS_FILE))
        self._lock = threading.RLock()
        self.decode_options = DecodeOptions()
        self._media: dict[str, Media] = {}

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

        ``model`` is the model to index with (default for a new index: ViT-B-32/laion2b_s34b_b79k); an index
        that already holds vectors of another model refuses it with ``ModelMismatchError``. Searches always use
        the model the index was built with.
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
        elif model is None and create:
            model = ModelSpec.parse(None)
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
        """The model this library's vectors are (or will be) made with."""
        return self._model

    def model_identity(self) -> dict | None:
        """What the stored vectors were made with (architecture, tag, weights checksum), as recorded."""
        with self._lock:
            stored = self._catalog.get_json("model")
        return stored.get("identity") if stored else None

    @property
    def embedder(self) -> EmbeddingModel:
        """The model, loaded on first use (so status and catalog commands never import torch)."""
        with self._lock:
            if self._embedder is None:
                if self._model is None:
                    raise IndexStoreError(f"the index at {self.directory} is empty and has no model yet")
                from clipsearch.model.embed import Embedder
                from clipsearch.model.models import EmbedOptions

                self._embedder = Embedder.load(self._model, self._embed_options or EmbedOptions())
            return self._embedder

    @property
    def model_is_loaded(self) -> bool:
        """Whether the model has been loaded in this process (status and unchanged reruns never load it)."""
        return self._embedder is not None

    def use_embedder(self, embedder: EmbeddingModel) -> None:
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
        with self.write_lock():
            writer = Catalog.open(str(self.directory / CATALOG_FILE))

            def get_model() -> EmbeddingModel:
                model = self.embedder  # the model is recorded once it has loaded, not before
                if writer.get_json("model") is None:
                    writer.set_json("model", {"spec": self._model.to_dict(), "identity": self._model.identity()})
                return model

            try:
                writer.add_roots(roots)
                report = index_roots(writer, get_model, roots, options, progress)
            finally:
                writer.close()
            with self._lock:
                self._vectors.save()
        return report

    def write_lock(self) -> _write_lock:
        """The index's writer lock (held by an index run): ``IndexLockedError`` at once if another process holds
        it. Readers never wait for it."""
        return _write_lock(self.directory)

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
            raise QueryError("top_k must be at least 1")
        folder = self.check_folder(where.folder) if where.folder else None
        with self._lock:
            vectors = self._vectors.current()
            allowed = None
            if where.active:
                allowed = np.fromiter(self._catalog.iter_ids(folder, (where.since, where.until)), dtype=np.int64)
            hits = [h for h in vectors.search(vector, top_k, allowed) if min_score is None or h.score >= min_score]
            rows = self._catalog.get_many(h.id for h in hits)
        return [_search_hit(rows[h.id], h.score) for h in hits if h.id in rows and rows[h.id].status == "ok"]

    def check_folder(self, folder: str | os.PathLike) -> str:
        """The real path of ``folder`` if it lies inside the indexed folders; else ``QueryError``."""
        real = os.path.realpath(os.path.expanduser(os.fspath(folder)))
        if not any(is_within(real, root) for root in self.roots()):
            raise QueryError(f"the folder {folder} is not inside the indexed folders")
        return real

    # -- reading what the index holds ---------------------------------------------------------------------
    def file(self, file_id: int) -> FileRow | None:
        """The catalog row of a file (indexed or skipped), or ``None``."""
        with self._lock:
            return self._catalog.get(file_id)

    def files(self, file_ids: Sequence[int]) -> dict[int, FileRow]:
        """The catalog rows of ``file_ids`` that exist, by id."""
        with self._lock:
            return self._catalog.get_many(file_ids)

    def iter_vectors(self, chunk_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every indexed file's id and vector, in id order, as ``(ids int64[n], vectors float32[n, dim])``
        chunks of at most ``chunk_size``: the whole catalog is never copied at once."""
        if chunk_size <= 0:
            raise ClipsearchError("chunk_size must be at least 1")
        with self._lock:
            chunks = self._catalog.vector_chunks(chunk_size)
        while True:
            with self._lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def vector_index_is_saved(self) -> bool:
        """Whether ``vectors.faiss`` is intact and matches the catalog now (it is rebuilt when it is not)."""
        with self._lock:
            return self._vectors.file_is_current()

    def media(self, thumbs_dir: str | os.PathLike | None = None) -> Media:
        """Thumbnails, previews, checked originals and the folder list, for a server (one per thumbs folder).

        Thumbnails go to ``thumbs_dir``, else ``<index>/thumbs`` when the index folder is writable, else a
        private temporary folder.
        """
        folder = Path(thumbs_dir).expanduser() if thumbs_dir else None
        if folder is None:
            if os.access(self.directory, os.W_OK):
                folder = self.directory / THUMBS_DIR
            else:
                import tempfile

                folder = Path(tempfile.mkdtemp(prefix="clipsearch-thumbs-"))
        folder.mkdir(parents=True, exist_ok=True)
        key = str(folder.resolve())
        with self._lock:
            if key not in self._media:
                self._media[key] = Media(self.file, self.roots, key, self.decode_options)
            return self._media[key]

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

    # -- browsing: the library page by page, with or without a query ------------------------------------------
    def browse(
        self,
        where: SearchFilter = SearchFilter(),
        order: str = "newest",
        offset: int = 0,
        limit: int = 100,
        query: str | Sequence[str] | Sequence[Term] | np.ndarray | None = None,
        min_score: float | None = None,
    ) -> BrowsePage:
        """The indexed files under ``where``, ``limit`` at a time from ``offset``: ``newest`` or ``oldest`` taken
        first, by ``name`` (folder, then file name), or by ``score`` against ``query`` (anything ``search``
        takes, or an encoded query vector), best first and cut at ``min_score``.

            page = lib.browse(SearchFilter.dated("~/Pictures/2024", since="2024-06-01"), order="oldest")
            while page.next_offset is not None:
                page = lib.browse(..., offset=page.next_offset)
        """
        if order not in BROWSE_ORDERS:
            raise QueryError(f"unknown order {order!r}: use one of {', '.join(BROWSE_ORDERS)}")
        if not 0 <= offset or not 1 <= limit <= MAX_PAGE:
            raise QueryError(f"a page starts at offset 0 or more and holds 1 to {MAX_PAGE} files")
        if (query is None) != (order != "score"):
            raise QueryError("order by score needs a query to score by" if query is None
                             else "a query ranks by score: browse with order='score'")
        folder = self.check_folder(where.folder) if where.folder else None
        if order == "score":
            vector = query if isinstance(query, np.ndarray) else self.encode_query(query)
            return self._browse_by_score(vector, where, folder, offset, limit, min_score)
        with self._lock:
            rows, total = self._catalog.page(folder, (where.since, where.until), order, offset, limit)
        ends = offset + len(rows) >= total
        return BrowsePage([_search_hit(r, 0.0) for r in rows], total, offset, None if ends else offset + len(rows))

    def _browse_by_score(self, vector: np.ndarray, where: SearchFilter, folder: str | None, offset: int, limit: int,
                         min_score: float | None) -> BrowsePage:
        with self._lock:
            vectors = self._vectors.current()
            allowed = None
            if where.active:
                allowed = np.fromiter(self._catalog.iter_ids(folder, (where.since, where.until)), dtype=np.int64)
            total = len(vectors) if allowed is None else len(allowed)
            ranked = vectors.search(vector, offset + limit, allowed)[offset:]
            kept = [h for h in ranked if min_score is None or h.score >= min_score]
            rows = self._catalog.get_many(h.id for h in kept)
        hits = [_search_hit(rows[h.id], h.score) for h in kept if h.id in rows and rows[h.id].status == "ok"]
        ends = len(kept) < len(ranked) or offset + len(ranked) >= total
        return BrowsePage(hits, total, offset, None if ends else offset + len(ranked))


BROWSE_ORDERS = ("newest", "oldest", "name", "score")
MAX_PAGE = 1000  # rows per browse page


@dataclass(frozen=True)
class BrowsePage:
    """One page of ``Library.browse``: the files (``score`` is 0 unless ranked by a query), how many files the
    filter matches in all, and the offset of the next page (``None`` on the last)."""

    hits: list[SearchHit]
    total: int
    offset: int
    next_offset: int | None

    def to_dict(self) -> dict:
        return {"hits": [h.to_dict() for h in self.hits], "total": self.total, "offset": self.offset,
                "next_offset": self.next_offset}


def _search_hit(row: FileRow, score: float) -> SearchHit:
    taken = row.mtime_ns if row.taken_ns is None else row.taken_ns
    return SearchHit(row.id, row.path, score, row.width, row.height, row.size, row.mtime_ns / 1e9, taken / 1e9)


_EPOCH_LIMIT = 9.0e9  # about the year 2255: the catalog keeps nanoseconds in a signed 64-bit integer
_DAY_END = 86399.999  # a whole day's filter runs to its last millisecond


def _epoch(value, what: str, end_of_day: bool = False) -> float | None:
    """A date bound in epoch seconds (local time, as the dates of the photos are read), or ``None``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.datetime):
        seconds = value.timestamp()
    elif isinstance(value, dt.date):
        seconds = dt.datetime(value.year, value.month, value.day).timestamp() + (_DAY_END if end_of_day else 0.0)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        if seconds != seconds or abs(seconds) == float("inf"):
            raise QueryError(f"the '{what}' date must be a finite number of seconds")
    else:
        text = str(value).strip()
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise QueryError(f"the '{what}' date {text!r} is not a date like 2024-05-31") from None
        seconds = parsed.timestamp() + (_DAY_END if end_of_day and len(text) <= 10 else 0.0)
    return min(max(seconds, -_EPOCH_LIMIT), _EPOCH_LIMIT)


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
