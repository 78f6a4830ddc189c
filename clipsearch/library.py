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
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
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
from clipsearch.explore.evaluate import Evaluation
from clipsearch.explore.results import DuplicateGroup, MapPoint, Outlier, PhotoTags, Theme
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
log = logging.getLogger(__name__)
MAX_PLACED_SHARE = 0.5  # a saved map takes up to half as many new photos as it holds; past that it is recomputed
SIGNATURE_SIDE = 128  # pixels a duplicate check decodes (JPEG draft), enough for its 128 px signature


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
    """Restrict a search to a folder (a sub-tree of the roots), a range of dates taken (epoch seconds,
    inclusive: EXIF ``DateTimeOriginal``, else the file's modification time) and a saved tag."""

    folder: str | None = None
    since: float | None = None
    until: float | None = None
    tag: str | None = None  # only files with this saved zero-shot tag (``Library.tag(..., save=True)``)

    @property
    def active(self) -> bool:
        return bool(self.folder) or self.since is not None or self.until is not None or self.tag is not None

    @classmethod
    def dated(cls, folder: str | None = None, since=None, until=None, tag: str | None = None) -> SearchFilter:
        """A filter from dates as people give them: ``"2024-05-31"`` or a ``datetime.date`` is a whole day (an
        ``until`` day runs to its last second), an ISO date-time string, a ``datetime`` or epoch seconds a
        moment; ``None`` or ``""`` no bound. ``QueryError`` for a date that is none, or a range running
        backwards."""
        low, high = _epoch(since, "from"), _epoch(until, "until", end_of_day=True)
        if low is not None and high is not None and low > high:
            raise QueryError("the 'from' date is after the 'until' date")
        return cls(os.fspath(folder).strip() or None if folder else None, low, high, tag or None)


@dataclass
class LibraryStatus:
    """What an index holds: model, counts, roots, the last run, and every skipped file with its reason."""

    index_dir: str
    model: str | None
    files: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    last_run: dict | None = None
    # The FAISS index type in use, e.g. "IVF2048,PQ64np (approximate: ...)"; None until the index is first built
    index_type: str | None = None

    def to_dict(self) -> dict:
        return {
            "index": self.index_dir,
            "model": self.model,
            "files": self.files,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "roots": self.roots,
            "last_run": self.last_run,
            "index_type": self.index_type,
        }


class Library:
    """An index folder: add photo folders to it, search it, ask its status. Safe to share between threads."""

    def __init__(self, directory: Path, catalog: Catalog, model: ModelSpec | None, embed_options=None):
        self.directory = directory
        self._catalog = catalog
        self._model = model
        self._embed_options = embed_options
        self._embedder: EmbeddingModel | None = None
        self._light: dict[bool, object] = {}  # images needed? -> LightModel, or None once found unavailable
        self._vectors = DerivedIndex(catalog, str(directory / VECTORS_FILE))
        self._lock = threading.RLock()
        self.decode_options = DecodeOptions()
        self._media: dict[str, Media] = {}
        # Set by open() for an index it created, until a first run succeeds: a failed one takes it back.
        self._new_index = self._new_folder = False

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
        new_folder, new_catalog = not path.exists(), not (path / CATALOG_FILE).exists()
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif new_catalog:
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
        library = cls(path, catalog, model, embed_options)
        library._new_index, library._new_folder = new_catalog, new_folder
        return library

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
        """The model, loaded on first use (so status and catalog commands never import torch): the light model
        (ONNX Runtime, no torch) when the index's model has been exported with its image tower, else open_clip."""
        with self._lock:
            if self._embedder is None:
                if self._model is None:
                    raise IndexStoreError(f"the index at {self.directory} is empty and has no model yet")
                self._embedder = self._light_model(images=True)
                if self._embedder is None:
                    from clipsearch.model.embed import Embedder
                    from clipsearch.model.models import EmbedOptions

                    self._embedder = Embedder.load(self._model, self._embed_options or EmbedOptions())
            return self._embedder

    @property
    def model_is_loaded(self) -> bool:
        """Whether the model has been loaded in this process (status and unchanged reruns never load it)."""
        return self._embedder is not None

    @property
    def text_encoder(self):
        """What encodes the text terms of a query: the embedder once loaded, else the light model's text tower
        (a text search then never imports torch), else the embedder."""
        with self._lock:
            if self._embedder is None:
                light = self._light_model(images=False)
                if light is not None:
                    return light
            return self.embedder

    def _light_model(self, images: bool):
        """The exported model for this index's model, or ``None`` (the reason is logged once)."""
        if images not in self._light:
            from clipsearch.model import light

            what = "the model" if images else "text queries"
            reason = light.light_refusal(self._embed_options, images)
            if reason is None and images and not (self._embed_options and self._embed_options.device) \
                    and light.gpu_present():
                reason = "a GPU is present: torch runs the model there"
            model = None
            # The identity the catalog recorded with the vectors; a new index: the model it is about to use.
            identity = self.model_identity() or (self._model.identity() if self._model else None)
            if reason is None:
                try:
                    one_shot = bool(self._embed_options and self._embed_options.one_shot)
                    model = light.LightModel.open(identity, images=images, one_shot=one_shot)
                except light.LightUnavailable as exc:
                    reason = str(exc)
            if model is None:
                log.info("%s: open_clip (torch), since %s", what, reason)
            else:
                log.info("%s: %s", what, model.label)
            self._light[images] = model
            if model is not None and images:
                self._light[False] = model
        return self._light[images]

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
        """Add ``paths`` as roots (or refresh every known root when omitted) and bring the index up to date.

        A path that is not there (an unplugged drive, a typo) does not stop the others: it is listed in
        ``IndexReport.missing_roots`` and whatever the index holds under it is kept. Only when none of
        ``paths`` is a folder does the run fail. A first run that fails leaves no index behind (the library
        is then closed).
        """
        with self.write_lock():
            try:
                roots, not_found = self._roots_to_index(paths)
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
            except BaseException:
                self._take_back_new_index()
                raise
            self._new_index = False
            report.missing_roots.extend(not_found)
            with self._lock:
                self._vectors.save()
        return report

    def write_lock(self) -> _write_lock:
        """The index's writer lock (held by an index run): ``IndexLockedError`` at once if another process holds
        it. Readers never wait for it."""
        return _write_lock(self.directory)

    def _roots_to_index(self, paths) -> tuple[list[str], list[str]]:
        """(roots to scan, paths given that are no folder and no known root)."""
        known = self.roots()
        if not paths:
            if not known:
                raise ClipsearchError("nothing to index: give one or more photo folders")
            return known, []
        roots, not_found = [], []
        for path in paths:
            real = os.path.realpath(os.path.expanduser(os.fspath(path)))
            if os.path.isdir(real) or real in known:  # a known root that is gone is reported by the run
                if real not in roots:
                    roots.append(real)
            else:
                not_found.append(os.fspath(path))
        if not roots:
            raise ClipsearchError(f"not a folder: {', '.join(not_found)}")
        return roots, not_found

    def _take_back_new_index(self) -> None:
        """Remove the index this library created, if it still holds no vector: a first run that failed (the
        model would not load, no folder was there) leaves neither a catalog without vectors nor an empty
        index folder behind."""
        if not self._new_index:
            return
        with self._lock:
            if self._catalog.counts()["files"]:
                return
            self._catalog.close()
        for name in (CATALOG_FILE, f"{CATALOG_FILE}-wal", f"{CATALOG_FILE}-shm", VECTORS_FILE, LOCK_FILE):
            (self.directory / name).unlink(missing_ok=True)
        if self._new_folder:
            try:
                self.directory.rmdir()
            except OSError:
                pass  # something else was put there meanwhile: leave the folder
        self._new_index = False

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
                vectors.append(self.text_encoder.encode_texts([term.value])[0])
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
            allowed = self._allowed_ids(where, folder)
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
                index_type=self._vectors.describe(),
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

    def _allowed_ids(self, where: SearchFilter, folder: str | None) -> np.ndarray | None:
        """The ids ``where`` lets through (``folder`` already checked), or ``None`` when it lets everything through.
        The caller holds the lock."""
        if not where.active:
            return None
        return np.fromiter(self._catalog.iter_ids(folder, (where.since, where.until), where.tag), dtype=np.int64)

    def _browse_by_score(self, vector: np.ndarray, where: SearchFilter, folder: str | None, offset: int, limit: int,
                         min_score: float | None) -> BrowsePage:
        with self._lock:
            vectors = self._vectors.current()
            allowed = self._allowed_ids(where, folder)
            total = len(vectors) if allowed is None else len(allowed)
            ranked = vectors.search(vector, offset + limit, allowed)[offset:]
            kept = [h for h in ranked if min_score is None or h.score >= min_score]
            rows = self._catalog.get_many(h.id for h in kept)
        hits = [_search_hit(rows[h.id], h.score) for h in kept if h.id in rows and rows[h.id].status == "ok"]
        ends = len(kept) < len(ranked) or offset + len(ranked) >= total
        return BrowsePage(hits, total, offset, None if ends else offset + len(ranked))

    # -- exploring the space: duplicates, odd ones out, themes, the map, tags, evaluation -------------------
    # Each analysis reads every vector at once (in one catalog snapshot, with the stamp it is cached under) and
    # hands them to a function in ``clipsearch.explore``; the costly results are cached in <index>/explore/.
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts as unit vectors (float32[n, dim]) of the index's model."""
        return np.asarray(self.embedder.encode_texts(list(texts)), dtype=np.float32)

    def label_vectors(self, labels: Sequence[str]) -> np.ndarray:
        """One zero-shot vector per label, averaged over prompt templates as open_clip's zero-shot classifier does
        (cached in the index per model and vocabulary)."""
        from clipsearch.explore.cache import settings_key
        from clipsearch.explore.labels import TEMPLATES, label_vectors

        labels = list(labels)
        with self._lock:
            model = self._vectors.stamp()["model"]
        stamp = {"kind": "labels", "model": model, "settings": settings_key(labels, TEMPLATES)}
        cache = self._explore_cache("labels")
        found = cache.load(stamp)
        if found is not None and len(found[1]["vectors"]) == len(labels):
            return found[1]["vectors"]
        vectors = label_vectors(self.encode_texts, labels)
        cache.save(stamp, {"vectors": vectors})
        return vectors

    def duplicates(self, threshold: float | None = None, check_pixels: bool = True) -> list[DuplicateGroup]:
        """Groups of photos that are the same picture (exact copies by content digest; resized, recompressed,
        slightly cropped or EXIF-rotated ones by vector similarity ``threshold``, then confirmed by their pixels
        unless ``check_pixels`` is off), each with the suggested keeper first; most similar groups first."""
        from clipsearch.explore.duplicates import (
            DEFAULT_THRESHOLD,
            count_exif_fields,
            find_duplicates,
            lowest_similarity,
            order_members,
        )

        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        if not 0.0 < threshold <= 1.0:
            raise ClipsearchError(f"the duplicate threshold is a cosine similarity in (0, 1], not {threshold}")
        ids, vectors, _ = self._explore_vectors()
        rows = self.files(ids.tolist())
        groups = find_duplicates(ids, vectors, threshold, {i: r.digest for i, r in rows.items()},
                                 self._same_picture(rows) if check_pixels else None)
        row_of = {int(file_id): n for n, file_id in enumerate(ids)}
        result = []
        for members in groups:
            ordered = order_members(members, lambda m: ((rows[m].width or 0) * (rows[m].height or 0), rows[m].size),
                                    lambda m: count_exif_fields(rows[m].path))
            result.append(DuplicateGroup(tuple(ordered), tuple(rows[m].path for m in ordered),
                                         lowest_similarity(ordered, row_of, vectors)))
        return sorted(result, key=lambda g: (-g.similarity, -len(g.ids), g.ids[0]))

    def outliers(self, top: int | None = None, neighbours: int | None = None) -> list[Outlier]:
        """The photos least like the rest, most unusual first: the mean cosine distance to their ``neighbours``
        (default 10) nearest photos. Cached until the catalog changes."""
        from clipsearch.explore.cache import settings_key
        from clipsearch.explore.neighbours import EXACT_LIMIT, KNN_PROBES
        from clipsearch.explore.outliers import DEFAULT_NEIGHBOURS, most_unusual, outlier_scores

        neighbours = DEFAULT_NEIGHBOURS if neighbours is None else int(neighbours)
        if neighbours < 1 or (top is not None and top < 1):
            raise ClipsearchError("the number of odd ones out and of neighbours must be at least 1")
        ids, vectors, stamp = self._explore_vectors()
        scores = self._cached_per_photo("outliers", settings_key(neighbours, EXACT_LIMIT, KNN_PROBES), ids, stamp,
                                        lambda: outlier_scores(vectors, neighbours))
        chosen = most_unusual(ids, scores, top)
        rows = self.files(ids[chosen].tolist())
        return [Outlier(int(ids[i]), rows[int(ids[i])].path, float(scores[i])) for i in chosen]

    def themes(self, count: int | None = None, labels: Sequence[str] | None = None) -> list[Theme]:
        """The library in themes: k-means in the full space (``count`` themes, or k chosen by silhouette), each
        named by the zero-shot label (default vocabulary, or ``labels``) that sets it apart, with its most central
        photo as representative. Every photo is in exactly one theme; largest first; the same for an unchanged
        index."""
        from clipsearch.explore.cache import settings_key
        from clipsearch.explore.labels import default_labels
        from clipsearch.explore.themes import cluster, describe

        if count is not None and count < 1:
            raise ClipsearchError(f"the number of themes must be at least 1, not {count}")
        labels = default_labels() if labels is None else list(labels)
        if not labels:
            raise ClipsearchError("no labels to name the themes with")
        ids, vectors, stamp = self._explore_vectors()
        assignment = self._cached_per_photo("themes", settings_key(count, 0), ids, stamp,
                                            lambda: cluster(vectors, count))
        themes = describe(ids, vectors, assignment, labels, self.label_vectors(labels))
        rows = self.files(ids.tolist())
        return [replace(t, paths=tuple(rows[i].path for i in t.ids), representative=rows[t.representative_id].path)
                for t in themes]

    def map(self, recompute: bool = False, labels: Sequence[str] | None = None) -> list[MapPoint]:
        """2-D coordinates (t-SNE, openTSNE) for every photo, with its theme's name, in id order.

        The map is saved in the index. Photos added or changed since are placed into the saved map without
        moving the others (up to half as many as were mapped; past that, and with ``recompute``, the whole map is
        computed again); removed photos leave it.
        """
        from clipsearch.explore.cache import settings_key
        from clipsearch.explore.projection import DEFAULT_SEED, PERPLEXITY, fit_map

        ids, vectors, stamp = self._explore_vectors()
        lineage = {k: v for k, v in stamp.items() if k != "generation"}
        lineage.update(kind="map", settings=settings_key(DEFAULT_SEED, PERPLEXITY))
        cache = self._explore_cache("map")
        found = None if recompute else cache.load(lineage)
        coords = None
        if found is not None:
            coords = self._updated_map(ids, vectors, found[0].get("generation", -1), found[1])
        if coords is None:
            coords = fit_map(vectors, DEFAULT_SEED)
        cache.save(dict(lineage, generation=stamp["generation"]), {"ids": ids, "coords": coords})
        theme_of = {i: t.name for t in self.themes(labels=labels) for i in t.ids}
        rows = self.files(ids.tolist())
        return [MapPoint(int(i), rows[int(i)].path, float(x), float(y), theme_of.get(int(i), ""))
                for i, (x, y) in zip(ids, coords)]

    def tag(self, labels: Sequence[str], min_score: float | None = None, save: bool = False) -> list[PhotoTags]:
        """Each photo's matching ``labels`` (zero-shot, each label against a neutral prompt at the model's
        temperature; scores 0..1), for the photos with at least one, best score first. ``save`` replaces the
        saved tags of these labels in the catalog, for ``SearchFilter(tag=...)``."""
        from clipsearch.explore.labels import clean_labels
        from clipsearch.explore.tags import DEFAULT_MIN_SCORE, NEUTRAL_PROMPTS, matching, tag_scores

        labels = clean_labels(labels)
        min_score = DEFAULT_MIN_SCORE if min_score is None else float(min_score)
        if not 0.0 <= min_score <= 1.0:
            raise ClipsearchError(f"the minimum tag score is between 0 and 1, not {min_score}")
        ids, vectors, _ = self._explore_vectors()
        neutral = self.encode_texts(list(NEUTRAL_PROMPTS)).mean(axis=0)
        scores = tag_scores(vectors, self.label_vectors(labels), neutral / np.linalg.norm(neutral),
                            self._logit_scale())
        found = matching(scores, min_score)
        if save:
            tagged = [(int(ids[n]), labels[j], score) for n, hits in enumerate(found) for j, score in hits]
            with self._lock:
                try:
                    self._catalog.save_tags(labels, tagged)
                except sqlite3.OperationalError as exc:
                    raise IndexStoreError(f"cannot save tags into {self.directory}: {exc}") from None
        rows = self.files([int(ids[n]) for n, hits in enumerate(found) if hits])
        tagged_photos = [PhotoTags(int(ids[n]), rows[int(ids[n])].path, tuple((labels[j], s) for j, s in hits))
                         for n, hits in enumerate(found) if hits]
        return sorted(tagged_photos, key=lambda p: (-p.tags[0][1], p.id))

    def tag_counts(self) -> dict[str, int]:
        """How many indexed photos carry each saved tag."""
        with self._lock:
            return self._catalog.tag_counts()

    def saved_tags(self, file_ids: Sequence[int]) -> dict[int, list[tuple[str, float]]]:
        """The saved tags of ``file_ids``, best first, by id."""
        with self._lock:
            return self._catalog.tags_of(file_ids)

    def evaluate(self, captions_file: str | os.PathLike, ks: Sequence[int] = (1, 5, 10)) -> Evaluation:
        """Text-to-image recall@K and MRR over the captions (JSON lines or CSV) whose photo is indexed."""
        from clipsearch.explore.evaluate import encode_in_batches, rank_targets, read_captions, summarise

        ks = sorted({int(k) for k in ks})
        if not ks or ks[0] < 1:
            raise ClipsearchError("each K of recall@K must be at least 1")
        captions, skipped = read_captions(captions_file)
        with self._lock:
            known = self._catalog.ids_of_paths(c.path for c in captions)
        usable = [c for c in captions if c.path in known]
        if len(usable) < len(captions):
            skipped["photo not indexed"] += len(captions) - len(usable)
        if not usable:
            raise ClipsearchError(f"none of the {len(captions)} captions in {captions_file} names an indexed photo "
                                  f"of {self.directory}")
        ids, vectors, _ = self._explore_vectors()
        row_of = {int(file_id): n for n, file_id in enumerate(ids)}
        queries = encode_in_batches(self.encode_texts, [c.caption for c in usable])
        ranks = rank_targets(queries, np.array([row_of[known[c.path]] for c in usable]), vectors)
        recall, mrr = summarise(ranks, ks)
        return Evaluation(len(usable), recall, mrr, sum(skipped.values()), dict(skipped))

    def _explore_vectors(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """Every ``(ids, vectors)`` and the catalog stamp they belong to, read in one snapshot."""
        with self._lock, self._catalog.snapshot():
            stamp = self._vectors.stamp()
            chunks = list(self._catalog.vector_chunks())
        if not chunks:
            raise ClipsearchError(f"the index at {self.directory} holds no photos yet; add some with "
                                  f"`clipsearch index PHOTO_FOLDER --index {self.directory}`")
        return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]), stamp

    def _explore_cache(self, name: str):
        from clipsearch.explore.cache import FOLDER, ResultCache

        return ResultCache(self.directory / FOLDER / f"{name}.cache")

    def _updated_map(self, ids: np.ndarray, vectors: np.ndarray, generation: int, saved: dict) -> np.ndarray | None:
        """The saved map brought up to date by placing what is new, or ``None`` when it should be recomputed."""
        from clipsearch.explore.projection import can_place, place_points

        with self._lock:
            changes = self._catalog.changes_since(generation) if generation >= 0 else None
        if changes is None or "ids" not in saved or "coords" not in saved:
            return None
        changed = np.union1d(changes[0], changes[2])
        saved_ids, saved_coords = saved["ids"], saved["coords"]
        kept = np.isin(saved_ids, ids) & ~np.isin(saved_ids, changed)
        fresh = ~np.isin(ids, saved_ids[kept])
        if not fresh.any():
            return saved_coords[kept]
        if not can_place(int(kept.sum())) or fresh.sum() > MAX_PLACED_SHARE * kept.sum():
            return None
        coords = np.empty((len(ids), 2), np.float32)
        coords[~fresh] = saved_coords[kept]  # both in id order
        coords[fresh] = place_points(vectors[~fresh], coords[~fresh], vectors[fresh])
        return coords

    def _same_picture(self, rows: dict[int, FileRow]):
        """``same(a, b)`` for two ids: whether their pixels match (``None`` when either cannot be read)."""
        from clipsearch.explore.duplicates import PIXEL_MATCH, Picture, picture_match, picture_signature

        signatures: dict[int, Picture | None] = {}

        def signature(file_id: int) -> Picture | None:
            if file_id not in signatures:
                try:
                    image = open_image(rows[file_id].path, self.decode_options, min_side=SIGNATURE_SIDE)
                    signatures[file_id] = picture_signature(image)
                except ImageError:
                    signatures[file_id] = None
            return signatures[file_id]

        def same(a: int, b: int) -> bool | None:
            first, second = signature(a), signature(b)
            if first is None or second is None:
                return None
            return picture_match(first, second) >= PIXEL_MATCH

        return same

    def _cached_per_photo(self, kind: str, settings: str, ids: np.ndarray, stamp: dict, compute):
        """One value per photo (an array aligned with ``ids``) from ``<index>/explore/``, or ``compute()``d and
        saved there when the cache is missing, stale, foreign or for other photos."""
        stamp = dict(stamp, kind=kind, settings=settings)
        cache = self._explore_cache(kind)
        found = cache.load(stamp)
        if found is not None and np.array_equal(found[1]["ids"], ids):
            return found[1]["values"]
        values = compute()
        cache.save(stamp, {"ids": ids, "values": values})
        return values

    def _logit_scale(self) -> float:
        """The model's own zero-shot temperature when it exposes one, else CLIP's 100."""
        from clipsearch.explore.tags import DEFAULT_LOGIT_SCALE

        scale = getattr(getattr(self.embedder, "model", None), "logit_scale", None)
        try:
            return float(np.exp(scale.detach().cpu().numpy())) if scale is not None else DEFAULT_LOGIT_SCALE
        except (AttributeError, TypeError, ValueError):
            return DEFAULT_LOGIT_SCALE


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
