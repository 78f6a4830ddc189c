"""What the web app does, without the layout: searches, browsing, previews, checked downloads and status.

Everything a browser or an API client gets back refers to files by catalog id. The only files handed to
Gradio are thumbnails the app made (``Library.media``) and, for an explicit download, a checked copy
of one original. Errors come back as ``ClipsearchError`` with a message a user can act on; the layout turns
them into ``gr.Error`` or a line in the summary.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from clipsearch import (
    IMAGE_EXTENSIONS,
    BrowsePage,
    ClipsearchError,
    FileRow,
    Library,
    QueryError,
    SearchFilter,
    SearchHit,
    Term,
    parse_query,
)

# A query typed into the web app is words only: a server-side path must never be read as an example image.
_PATH_LIKE = re.compile(r"\.(" + "|".join(e.lstrip(".") for e in sorted(IMAGE_EXTENSIONS)) + r")\b", re.I)
_IMAGE_PLACEHOLDER = "clipsearch-uploaded-image"
ORDERS = {"newest": "newest first", "oldest": "oldest first", "name": "by folder and name", "score": "best first"}


@dataclass(frozen=True)
class AppSettings:
    """Options of the web app (the library's own options travel with the library)."""

    title: str = "clipsearch"
    top_k: int = 24  # results per page of a search ("load more" fetches the next page)
    max_top_k: int = 200
    browse_page: int = 100  # photos per page when browsing without a query
    max_api_page: int = 500  # the most photos one /browse call lists (each needs a thumbnail)
    min_score: float = 0.0
    max_upload: str = "20mb"  # Gradio refuses bigger uploads with HTTP 413 before any decoding
    thumbs_dir: str | None = None  # default <index>/thumbs, or a private temp folder for a read-only index
    columns: int = 5
    concurrency: int = 2  # searches served at once; the model is the bottleneck on small CPUs
    # Past capacity a request gets a fast "busy" (HTTP 503) instead of waiting in an endless queue: with 24
    # clients, p95 of the refusals was 145 ms (benchmarks/LOAD.md).
    queue_size: int = 16
    # Gradio keeps state per session and every API call is a new session: its default 10,000 sessions let
    # memory grow ~1 GB over a 10-minute load run; 300 keeps it flat (benchmarks/LOAD.md).
    session_capacity: int = 300


MISSING_MARK = ("— **missing**: not there, unreadable or empty (an unplugged drive?); its photos stay in the "
                "index")


def folder_available(root: str) -> bool:
    """What the indexer checks before trusting a folder (as ``clipsearch status`` does): it is there, readable
    and not empty."""
    try:
        with os.scandir(root) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


class UploadError(QueryError):
    """The uploaded example image cannot be used (the message says why); words alone still can."""


@dataclass(frozen=True)
class Result:
    """One listed file as the app shows it: catalog id, a thumbnail the app made, facts to display."""

    id: int
    name: str
    path: str
    score: float | None  # None when listed without a query
    thumbnail: str
    width: int | None
    height: int | None
    bytes: int
    mtime: float
    taken: float

    @property
    def caption(self) -> str:
        first = f"{self.score:.3f}" if self.score is not None else _iso(self.taken)[:10]
        return f"{first} · {self.name}"

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "file": self.path,  # not "path": gradio_client would take the dict for a file to download
            "score": None if self.score is None else round(self.score, 4),
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "modified": _iso(self.mtime),
            "taken": _iso(self.taken),
            "thumbnail": "/gradio_api/file=" + urllib.parse.quote(self.thumbnail),  # app-made, metadata-free
        }


@dataclass(frozen=True)
class Listing:
    """What the gallery lists, kept per browser session so that "load more" can fetch the next page."""

    where: SearchFilter
    order: str  # newest, oldest, name, or score (against ``vector``)
    label: str  # what is listed, for the summary: the query, or "all photos"
    page_size: int
    vector: np.ndarray | None = None
    min_score: float | None = None
    next_offset: int | None = 0
    total: int = 0
    # A fixed list (an Explore view: a map selection, a theme, odd ones out): these ids in this order, with
    # their scores (``None``: shown without one), instead of a query over the library.
    ids: tuple[int, ...] | None = None
    scores: tuple[float, ...] | None = None

    @property
    def ranked(self) -> bool:
        return self.order == "score"


@dataclass(frozen=True)
class Outcome:
    """A page of results (best or first first), a one-line summary, and what "load more" continues."""

    results: list[Result]
    summary: str
    listing: Listing | None = None


class SearchService:
    """The web app's operations over one library. Safe to share between Gradio's worker threads."""

    def __init__(self, library: Library, settings: AppSettings = AppSettings()):
        self.library = library
        self.settings = settings
        self.media = library.media(settings.thumbs_dir)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="thumbs")
        self._downloads_dir: Path | None = None

    # -- searching ----------------------------------------------------------------------------------------
    def search(
        self,
        query: str = "",
        image: str | None = None,
        image_weight: float = 1.0,
        top_k: int | float | None = None,
        min_score: float | None = None,
        folder: str | None = None,
        since=None,
        until=None,
    ) -> Outcome:
        """Search by words, by an uploaded image (a path Gradio took in), or both with the image weighted.

        An image that cannot be used raises ``UploadError``, whatever the words.
        """
        started = time.perf_counter()
        terms = self.query_terms(query, image, image_weight)
        where = self.search_filter(folder, since, until)
        top_k, min_score = self._limits(top_k, min_score)
        try:
            vector = self.library.encode_query(terms)
        except QueryError:
            problem = self.upload_problem(image) if image else None
            if problem:
                raise UploadError(problem) from None
            raise
        label = (query or "").strip() or "the uploaded image"
        if image and (query or "").strip():
            label = f"the uploaded image + {query.strip()}"
        listing = Listing(where, "score", label, top_k, vector, min_score)
        return self._first_page(listing, started)

    def upload_problem(self, image: str) -> str | None:
        """Why an uploaded image cannot be a query (decoded under the indexing guards), or ``None``."""
        try:
            self.library.encode_image_file(image)
        except QueryError as exc:
            return str(exc)
        return None

    def more_like(self, file_id, top_k=None, min_score=None, folder=None, since=None, until=None,
                  add: str = "", remove: str = "") -> Outcome:
        """Files like an indexed one, from its stored vector, moved towards the words ``add`` and away from
        ``remove`` ("more like this, but at night, without people": ``#id + night - people``)."""
        started = time.perf_counter()
        row = self.row(file_id)
        where = self.search_filter(folder, since, until)
        top_k, min_score = self._limits(top_k, min_score)
        terms = [Term("file", str(row.id), 1.0), *self._words(add, 1.0), *self._words(remove, -1.0)]
        label = f"more like {os.path.basename(row.path)}"
        for words, sign in ((add, "+"), (remove, "−")):
            if (words or "").strip():
                label += f" {sign} {words.strip()}"
        listing = Listing(where, "score", label, top_k, self.library.encode_query(terms), min_score)
        return self._first_page(listing, started)

    def browse(self, folder=None, since=None, until=None, order: str = "newest", query: str = "",
               page_size: int | None = None) -> Outcome:
        """The library without a query, by date taken or name, in the folder and dates given; or ranked by the
        words of ``query`` when ``order`` is ``score``."""
        started = time.perf_counter()
        where = self.search_filter(folder, since, until)
        order = self._order(order)
        vector, label = None, "all photos"
        if order == "score":
            if not (query or "").strip():
                raise QueryError("to sort by score, type some words in the search box")
            vector, label = self.library.encode_query(self.query_terms(query, None)), query.strip()
        listing = Listing(where, order, label, page_size or self.settings.browse_page, vector)
        return self._first_page(listing, started)

    def next_page(self, listing: Listing | None, shown: int = 0) -> Outcome:
        """The page after the ones on screen; ``shown`` counts them, for the summary."""
        if listing is None or listing.next_offset is None:
            raise QueryError("there is nothing more to load; search or browse again")
        started = time.perf_counter()
        results, listing, hidden = self._page(listing)
        return Outcome(results, self._summary(listing, shown + len(results), hidden, started), listing)

    def browse_api(self, folder=None, since=None, until=None, order="newest", query="", offset=0,
                   limit=None) -> dict:
        """One page for the ``/browse`` endpoint: results with app-made thumbnails, and where the next starts."""
        order = self._order(order)
        offset = int(parse_number(offset, "offset", 0))
        limit = int(parse_number(limit, "limit", self.settings.browse_page))
        if offset < 0 or not 1 <= limit <= self.settings.max_api_page:
            raise QueryError(f"the offset must be 0 or more and the limit between 1 and {self.settings.max_api_page}")
        where = self.search_filter(folder, since, until)
        vector = None
        if (query or "").strip():
            if order != "score":
                raise QueryError("words rank the photos by score: pass order 'score' with a query")
            vector = self.library.encode_query(self.query_terms(query, None))
        listing = Listing(where, order, "", limit, vector, None, offset)
        results, listing, hidden = self._page(listing)
        return {"results": [r.to_api() for r in results], "total": listing.total, "offset": offset,
                "next_offset": listing.next_offset, "not_shown": hidden}

    def query_terms(self, query: str | None, image: str | None, image_weight: float = 1.0) -> list[Term]:
        text = (query or "").strip()
        if _PATH_LIKE.search(text):
            raise QueryError(
                "file names and paths are not read in the web app; upload the example image instead"
            )
        if not image:
            return parse_query(text, allow_paths=False)
        weight = parse_number(image_weight, "image weight", 1.0)
        if weight <= 0:
            raise QueryError("the image weight must be above 0")
        if not text:
            return [Term("image", image, weight)]
        # The placeholder lets "- people" or "at night" read as words added to (or taken from) the image.
        joined = f"{_IMAGE_PLACEHOLDER} {text}" if text[0] in "+-" else f"{_IMAGE_PLACEHOLDER} + {text}"
        terms = parse_query(joined, allow_paths=False)  # the server never opens a file a client names
        return [Term("image", image, weight), *terms[1:]]

    def _words(self, text: str | None, sign: float) -> list[Term]:
        if not (text or "").strip():
            return []
        return [replace(t, weight=sign * t.weight) for t in self.query_terms(text, None)]

    def search_filter(self, folder=None, since=None, until=None) -> SearchFilter:
        """Validate the filters: a folder inside the indexed roots; dates taken as ``YYYY-MM-DD`` (or ISO)."""
        folder = (folder or "").strip() or None
        if folder:
            folder = self.library.check_folder(folder)
        return SearchFilter.dated(folder, since, until)

    def _limits(self, top_k, min_score) -> tuple[int, float | None]:
        top_k = int(parse_number(top_k, "number of results", self.settings.top_k))
        if not 1 <= top_k <= self.settings.max_top_k:
            raise QueryError(f"the number of results must be between 1 and {self.settings.max_top_k}")
        if min_score is None or min_score == "":
            return top_k, None
        return top_k, parse_number(min_score, "minimum score", self.settings.min_score)

    @staticmethod
    def _order(order) -> str:
        order = (order or "newest").strip().lower()
        if order not in ORDERS:
            raise QueryError(f"unknown order {order!r}: use one of {', '.join(ORDERS)}")
        return order

    # -- pages --------------------------------------------------------------------------------------------
    def _first_page(self, listing: Listing, started: float) -> Outcome:
        results, listing, hidden = self._page(listing)
        summary = self._summary(listing, len(results), hidden, started)
        if not results:
            summary += "  \n" + self._why_empty(listing, hidden)
        return Outcome(results, summary, listing)

    def listed(self, ids, label: str, scores=None, page_size: int | None = None) -> Outcome:
        """A fixed list of files (an Explore view's photos) as a first page that "load more" continues."""
        started = time.perf_counter()
        ids = tuple(int(i) for i in ids)
        scores = None if scores is None else tuple(float(s) for s in scores)
        listing = Listing(SearchFilter(), "listed", label, page_size or self.settings.browse_page, ids=ids,
                          scores=scores)
        return self._first_page(listing, started)

    def _page(self, listing: Listing) -> tuple[list[Result], Listing, int]:
        """The page of ``listing`` at its ``next_offset``, the listing advanced past it, and how many of its
        files were not shown (vanished, or no longer inside the indexed folders)."""
        if listing.ids is not None:
            return self._listed_page(listing)
        page = self.library.browse(listing.where, listing.order, listing.next_offset, listing.page_size,
                                   query=listing.vector if listing.ranked else None, min_score=listing.min_score)
        results, hidden = self._results(page, listing.ranked)
        return results, replace(listing, next_offset=page.next_offset, total=page.total), hidden

    def _listed_page(self, listing: Listing) -> tuple[list[Result], Listing, int]:
        start = listing.next_offset or 0
        end = min(start + listing.page_size, len(listing.ids))
        chosen = listing.ids[start:end]
        rows = self.library.files(list(chosen))
        scores = listing.scores[start:end] if listing.scores is not None else [0.0] * len(chosen)
        hits = [_hit(rows[i], s) for i, s in zip(chosen, scores) if i in rows and rows[i].status == "ok"]
        page = BrowsePage(hits, len(listing.ids), start, end if end < len(listing.ids) else None)
        results, hidden = self._results(page, listing.scores is not None)
        hidden += len(chosen) - len(hits)
        return results, replace(listing, next_offset=page.next_offset, total=page.total), hidden

    def thumbnails(self, ids) -> dict[int, str]:
        """App-made thumbnails of indexed files by id (files that cannot be shown are left out)."""
        ids = [int(i) for i in ids]
        jobs = [self._pool.submit(self.media.thumbnail, i) for i in ids]
        found = {}
        for file_id, job in zip(ids, jobs):
            try:
                found[file_id] = str(job.result())
            except (ClipsearchError, OSError):
                continue
        return found

    def _results(self, page: BrowsePage, ranked: bool) -> tuple[list[Result], int]:
        jobs = [self._pool.submit(self.media.thumbnail, hit.id) for hit in page.hits]
        results, hidden = [], 0
        for hit, job in zip(page.hits, jobs):
            try:
                thumbnail = str(job.result())
            except (ClipsearchError, OSError):
                hidden += 1  # vanished, unreadable, or now outside the roots: never shown, never served
                continue
            results.append(_result(hit, thumbnail, ranked))
        return results, hidden

    def _summary(self, listing: Listing, shown: int, hidden: int, started: float) -> str:
        ms = (time.perf_counter() - started) * 1000
        if listing.ids is not None:
            parts = [f"**{shown} of {listing.total} photos**: {escape_markdown(listing.label)}"]
        elif listing.ranked:
            parts = [f"**{shown} result{'s' if shown != 1 else ''}** for *{escape_markdown(listing.label)}*"]
            if listing.min_score is not None:
                parts.append(f"score ≥ {listing.min_score:.2f}")
        else:
            parts = [f"**{shown} of {listing.total} photos**, {ORDERS[listing.order]}"]
        where = _describe_filter(listing.where)
        if where:
            parts.append(where)
        if hidden:
            parts.append(f"{hidden} not shown (missing or outside the indexed folders)")
        if listing.next_offset is not None:
            parts.append("more below: *Load more*")
        parts.append(f"{ms:.0f} ms")
        return " · ".join(parts)

    def _why_empty(self, listing: Listing, hidden: int) -> str:
        """Why a first page came back empty, and what to try."""
        if listing.ids is not None:
            return ("None of these photos can be shown: they are missing on disk or outside the indexed folders."
                    if hidden else "Nothing is selected: drag over the map, or choose a theme.")
        everything = self.library.browse(SearchFilter(), "newest", 0, 1).total
        if not everything:
            return "The library is empty: index a folder with `clipsearch index FOLDER`, then *Re-index* below."
        where = listing.where
        if where.active and not self.library.browse(where, "newest", 0, 1).total:
            tries = (["choose another folder or clear the folder filter"] if where.folder else []) + (
                ["widen the dates"] if where.since is not None or where.until is not None else [])
            return f"No photo is {_describe_filter(where)}: {' or '.join(tries)} (*Filters*)."
        if listing.ranked and listing.min_score is not None:
            best = self.library.browse(listing.where, "score", 0, 1, query=listing.vector).hits
            if best and best[0].score < listing.min_score:
                hint = "Lower the *Minimum score* (*Filters*)"
                if listing.where.active:
                    hint += ", or clear the folder and date filters"
                return (f"Nothing scores {listing.min_score:.2f} or more: the best match scores "
                        f"{best[0].score:.2f}. {hint}.")
        if hidden:
            return "Every match is missing on disk or outside the indexed folders: *Re-index* (below) to refresh."
        return "Try other words, or clear the filters."

    # -- one file -----------------------------------------------------------------------------------------
    def row(self, file_id) -> FileRow:
        return self.media.row(file_id)

    def preview(self, file_id) -> tuple[str, str]:
        """A larger app-made image of a file and a Markdown description (path, size, dates)."""
        row = self.row(file_id)
        image = self.media.preview(row.id)
        size = f"{row.width} × {row.height} px · " if row.width and row.height else ""
        taken = row.mtime_ns if row.taken_ns is None else row.taken_ns
        details = (
            f"**{escape_markdown(os.path.basename(row.path))}**  \n"
            f"`{_code(os.path.dirname(row.path))}`  \n"
            f"{size}{human_bytes(row.size)} · id {row.id}  \n"
            f"taken {_iso(taken / 1e9)} · modified {_iso(row.mtime_ns / 1e9)}"
        )
        return str(image), details

    def original(self, file_id) -> str:
        """A checked copy of the original file in Gradio's cache, for the download button and the API.

        The file must be an indexed image inside the roots (checked now, opened without following symlinks)
        whose content Pillow recognises as an allowed image format: an HTML page renamed ``.jpg`` is refused.
        """
        return str(self.media.original_copy(file_id, self._download_folder()))

    def _download_folder(self) -> Path:
        # Inside Gradio's own cache: a file there is served as "created by the app" and never copied again.
        if self._downloads_dir is None:
            from gradio.utils import get_upload_folder

            self._downloads_dir = Path(get_upload_folder()) / "clipsearch-originals"
        return self._downloads_dir

    # -- the library --------------------------------------------------------------------------------------
    def status_markdown(self) -> str:
        status = self.library.status()
        lines = [
            f"**Model** {status.model or '(none yet)'} · **{status.files}** photos indexed · "
            f"**{len(status.skipped)}** skipped",
            "",
            "**Folders**",
            *(f"- `{_code(root)}`" + ("" if folder_available(root) else f" {MISSING_MARK}")
              for root in status.roots),
        ]
        if not status.roots:
            lines.append("- (none: index a folder with `clipsearch index FOLDER`)")
        if status.last_run:
            lines += ["", f"**Last index run** {_describe_run(status.last_run)}"]
        if status.skipped:
            lines += ["", "| skipped file | reason |", "|---|---|"]
            lines += [f"| `{_code(p)}` | {escape_markdown(r)} |" for p, r in status.skipped[:200]]
            if len(status.skipped) > 200:
                lines.append(f"| … and {len(status.skipped) - 200} more | |")
        return "\n".join(lines)

    def status_dict(self) -> dict:
        status = self.library.status()
        return status.to_dict() | {"missing_roots": [r for r in status.roots if not folder_available(r)]}

    def reindex(self, progress=None) -> str:
        """Refresh every root (new, changed, moved and deleted files); searches keep working meanwhile."""
        report = self.library.index(progress=progress)
        text = (f"indexed {report.indexed}, unchanged {report.unchanged}, moved {report.moved}, "
                f"removed {report.removed}, skipped {len(report.skipped)} in {report.seconds:.1f} s")
        if report.missing_roots:
            text += f" · missing folders (nothing deleted): {', '.join(report.missing_roots)}"
        return text

    def folder_choices(self, depth: int = 2, limit: int = 200) -> list[str]:
        """The roots and their sub-folders (a few levels), for the folder filter."""
        return self.media.folders(depth, limit)

    def warm_up(self) -> None:
        """Load the model and the vector index now, so the first search is as fast as the next ones."""
        embedder = self.library.embedder
        embedder.encode_texts(["a photo"])
        embedder.encode_images([Image.new("RGB", (64, 64), (128, 128, 128))])
        if self.library.status().files:
            self.library.search("a photo", top_k=1)


def _hit(row: FileRow, score: float) -> SearchHit:
    taken = row.mtime_ns if row.taken_ns is None else row.taken_ns
    return SearchHit(row.id, row.path, score, row.width, row.height, row.size, row.mtime_ns / 1e9, taken / 1e9)


def _result(hit: SearchHit, thumbnail: str, ranked: bool) -> Result:
    return Result(hit.id, os.path.basename(hit.path), hit.path, hit.score if ranked else None, thumbnail,
                  hit.width, hit.height, hit.bytes, hit.mtime, hit.taken)


def _describe_filter(where: SearchFilter) -> str:
    parts = []
    if where.folder:
        parts.append(f"in `{_code(where.folder)}`")
    if where.since is not None and where.until is not None:
        parts.append(f"taken {_day(where.since)} to {_day(where.until)}")
    elif where.since is not None:
        parts.append(f"taken from {_day(where.since)}")
    elif where.until is not None:
        parts.append(f"taken until {_day(where.until)}")
    return " ".join(parts)


def parse_number(value, what: str, default: float) -> float:
    if value is None or value == "":
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"the {what} must be a number, not {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise QueryError(f"the {what} must be a finite number")
    return number


def _iso(epoch: float) -> str:
    try:
        return dt.datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return "unknown"


def _day(epoch: float) -> str:
    return _iso(epoch)[:10]


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def escape_markdown(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]<>()#+!|])", r"\\\1", text)


def _code(text: str) -> str:
    """Text for a Markdown code span (which shows backslashes literally, so only backticks and bars go)."""
    return text.replace("`", "'").replace("|", "¦").replace("\n", " ")


def _describe_run(run: dict) -> str:
    summary = run.get("summary") or {}
    when = _iso(run["finished"]) if run.get("finished") else "(unfinished)"
    if isinstance(summary, dict) and summary:
        counts = ", ".join(f"{k} {v}" for k, v in summary.items() if isinstance(v, (int, float)))
        return f"{when}: {counts}"
    return when
