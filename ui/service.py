"""What the web app does, without the layout: searches, previews, checked downloads and status of a library.

Everything a browser or an API client gets back refers to files by catalog id. The only files handed to
Gradio are thumbnails the app made (``Library.media``) and, for an explicit download, a checked copy
of one original. Errors come back as ``ClipsearchError`` with a message a user can act on; the layout turns
them into ``gr.Error``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from clipsearch import (
    IMAGE_EXTENSIONS,
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


@dataclass(frozen=True)
class AppSettings:
    """Options of the web app (the library's own options travel with the library)."""

    title: str = "clipsearch"
    top_k: int = 24
    max_top_k: int = 200
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


@dataclass(frozen=True)
class Result:
    """One search result as the app shows it: catalog id, a thumbnail the app made, facts to display."""

    id: int
    name: str
    path: str
    score: float
    thumbnail: str
    width: int | None
    height: int | None
    bytes: int
    mtime: float

    @property
    def caption(self) -> str:
        return f"{self.score:.3f} · {self.name}"

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "file": self.path,  # not "path": gradio_client would take the dict for a file to download
            "score": round(self.score, 4),
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "modified": _iso(self.mtime),
        }


@dataclass(frozen=True)
class Outcome:
    """A finished search: results best first and a one-line summary (count, cut-off, time)."""

    results: list[Result]
    summary: str


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
        """Search by words, by an uploaded image (a path Gradio took in), or both with the image weighted."""
        started = time.perf_counter()
        terms = self.query_terms(query, image, image_weight)
        where = self.search_filter(folder, since, until)
        top_k, min_score = self._limits(top_k, min_score)
        hits = self.library.search(terms, top_k=top_k, min_score=min_score, where=where)
        label = (query or "").strip() or "the uploaded image"
        if image and (query or "").strip():
            label = f"the uploaded image + {query.strip()}"
        return self._outcome(hits, label, started, min_score)

    def more_like(self, file_id, top_k=None, min_score=None, folder=None, since=None, until=None) -> Outcome:
        """Files like an indexed one, from its stored vector (nothing is decoded or encoded)."""
        started = time.perf_counter()
        row = self.row(file_id)
        where = self.search_filter(folder, since, until)
        top_k, min_score = self._limits(top_k, min_score)
        hits = self.library.more_like(row.id, top_k=top_k, min_score=min_score, where=where)
        return self._outcome(hits, f"more like {os.path.basename(row.path)}", started, min_score)

    def query_terms(self, query: str | None, image: str | None, image_weight: float = 1.0) -> list[Term]:
        text = (query or "").strip()
        if _PATH_LIKE.search(text):
            raise QueryError(
                "file names and paths are not read in the web app; upload the example image instead"
            )
        if not image:
            return parse_query(text, allow_paths=False)
        weight = _number(image_weight, "image weight", 1.0)
        if weight <= 0:
            raise QueryError("the image weight must be above 0")
        if not text:
            return [Term("image", image, weight)]
        # The placeholder lets "- people" or "at night" read as words added to (or taken from) the image.
        joined = f"{_IMAGE_PLACEHOLDER} {text}" if text[0] in "+-" else f"{_IMAGE_PLACEHOLDER} + {text}"
        terms = parse_query(joined, allow_paths=False)  # the server never opens a file a client names
        return [Term("image", image, weight), *terms[1:]]

    def search_filter(self, folder=None, since=None, until=None) -> SearchFilter:
        """Validate the filters: a folder inside the indexed roots; dates as timestamps or ``YYYY-MM-DD``."""
        folder = (folder or "").strip() or None
        if folder:
            folder = self.library.check_folder(folder)
        low, high = _epoch(since, "from"), _epoch(until, "until", end_of_day=True)
        if low is not None and high is not None and low > high:
            raise QueryError("the 'from' date is after the 'until' date")
        return SearchFilter(folder, low, high)

    def _limits(self, top_k, min_score) -> tuple[int, float | None]:
        top_k = int(_number(top_k, "number of results", self.settings.top_k))
        if not 1 <= top_k <= self.settings.max_top_k:
            raise QueryError(f"the number of results must be between 1 and {self.settings.max_top_k}")
        if min_score is None or min_score == "":
            return top_k, None
        return top_k, _number(min_score, "minimum score", self.settings.min_score)

    def _outcome(self, hits: list[SearchHit], label: str, started: float, min_score: float | None) -> Outcome:
        jobs = [self._pool.submit(self.media.thumbnail, hit.id) for hit in hits]
        results, hidden = [], 0
        for hit, job in zip(hits, jobs):
            try:
                thumbnail = str(job.result())
            except (ClipsearchError, OSError):
                hidden += 1  # vanished, unreadable, or now outside the roots: never shown, never served
                continue
            results.append(Result(hit.id, os.path.basename(hit.path), hit.path, hit.score, thumbnail,
                                  hit.width, hit.height, hit.bytes, hit.mtime))
        ms = (time.perf_counter() - started) * 1000
        count = f"{len(results)} result{'s' if len(results) != 1 else ''}"
        parts = [f"**{count}** for *{_escape_md(label)}*"]
        if min_score is not None:
            parts.append(f"score ≥ {min_score:.2f}")
        if hidden:
            parts.append(f"{hidden} not shown (missing or outside the indexed folders)")
        parts.append(f"{ms:.0f} ms")
        return Outcome(results, " · ".join(parts))

    # -- one file -----------------------------------------------------------------------------------------
    def row(self, file_id) -> FileRow:
        return self.media.row(file_id)

    def preview(self, file_id) -> tuple[str, str]:
        """A larger app-made image of a file and a Markdown description (path, size, date)."""
        row = self.row(file_id)
        image = self.media.preview(row.id)
        size = f"{row.width} × {row.height} px · " if row.width and row.height else ""
        details = (
            f"**{_escape_md(os.path.basename(row.path))}**  \n"
            f"`{_code(os.path.dirname(row.path))}`  \n"
            f"{size}{_human_bytes(row.size)} · modified {_iso(row.mtime_ns / 1e9)} · id {row.id}"
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
            *(f"- `{_code(root)}`" for root in status.roots),
        ]
        if not status.roots:
            lines.append("- (none: index a folder with `clipsearch index FOLDER`)")
        if status.last_run:
            lines += ["", f"**Last index run** {_describe_run(status.last_run)}"]
        if status.skipped:
            lines += ["", "| skipped file | reason |", "|---|---|"]
            lines += [f"| `{_code(p)}` | {_escape_md(r)} |" for p, r in status.skipped[:200]]
            if len(status.skipped) > 200:
                lines.append(f"| … and {len(status.skipped) - 200} more | |")
        return "\n".join(lines)

    def status_dict(self) -> dict:
        return self.library.status().to_dict()

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


def _number(value, what: str, default: float) -> float:
    if value is None or value == "":
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"the {what} must be a number, not {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise QueryError(f"the {what} must be a finite number")
    return number


_EPOCH_LIMIT = 9.0e9  # about the year 2255: the catalog keeps nanoseconds in a signed 64-bit integer


def _epoch(value, what: str, end_of_day: bool = False) -> float | None:
    """A date filter from a timestamp (Gradio's DateTime) or text (``YYYY-MM-DD`` or ISO date-time)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = _number(value, f"'{what}' date", 0.0) + (86399.999 if end_of_day else 0.0)
    elif isinstance(value, dt.datetime):
        seconds = value.timestamp()
    else:
        text = str(value).strip()
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise QueryError(f"the '{what}' date {text!r} is not a date like 2024-05-31") from None
        seconds = parsed.timestamp() + (86399.999 if end_of_day and len(text) <= 10 else 0.0)
    return min(max(seconds, -_EPOCH_LIMIT), _EPOCH_LIMIT)


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="seconds")


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _escape_md(text: str) -> str:
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
