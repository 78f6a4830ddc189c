"""An index run: scan the roots, compare with the catalog, embed what is new or changed, record the rest.

    roots --scan--> files --compare with catalog--> unchanged | moved | to embed | vanished
    to embed --decode workers--> pixels --embedder--> vectors --one transaction per batch--> catalog

Decoding runs in worker processes (Pillow and NumPy only) overlapped with the model in this process. A killed
run loses at most the batch in flight: a rerun skips every file already stored with the same size, mtime and
inode. Nothing under a root that is missing or an empty mount point is deleted.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import io
import multiprocessing
import os
import stat as stat_module
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from clipsearch.catalog import Catalog, Embedded, FileRow, FileStat
from clipsearch.decode import DecodeOptions, PixelSpec, decode_image, resize_and_crop
from clipsearch.errors import ImageError
from clipsearch.scan import is_within, scan_root

Progress = Callable[[int, int], None]  # (files done, files to embed)


@dataclass(frozen=True)
class IndexOptions:
    """Settings of an index run."""

    batch_size: int = 32
    workers: int | None = None  # decode processes; None picks by CPU count and amount of work, 0 decodes inline
    decode: DecodeOptions = field(default_factory=DecodeOptions)


@dataclass
class IndexReport:
    """What an index run did. ``skipped`` lists (path, reason) for every file not indexed in this run."""

    indexed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    missing_roots: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "removed": self.removed,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "missing_roots": self.missing_roots,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Prepared:
    """What a decode worker hands back for one file."""

    stat: FileStat
    digest: str | None = None
    size: tuple[int, int] = (0, 0)
    pixels: np.ndarray | None = None
    error: str | None = None


def content_digest(data: bytes) -> str:
    """Identity of a file's content, used to recognise moved files (their vectors are reused)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def prepare_file(stat: FileStat, spec: PixelSpec | None, options: DecodeOptions) -> Prepared:
    """Read, fingerprint and decode one file. Runs in a worker process; never raises for a bad file."""
    try:
        data = _read_regular_file(stat.path, options.max_bytes)
        image, size = decode_image(io.BytesIO(data), options, spec.size if spec else None)
        pixels = resize_and_crop(image, spec) if spec else np.asarray(image, dtype=np.uint8)
        return Prepared(stat, content_digest(data), size, pixels)
    except ImageError as exc:
        return Prepared(stat, error=str(exc))
    except OSError as exc:
        return Prepared(stat, error=(exc.strerror or type(exc).__name__).lower())


def _read_regular_file(path: str, max_bytes: int) -> bytes:
    # O_NONBLOCK: a file swapped for a FIFO since the scan must not hang us; fstat then refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as handle:
        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError("not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageError(f"file larger than {max_bytes:,} bytes")
    if not data:
        raise ImageError("empty file")
    return data


def index_roots(
    catalog: Catalog,
    embedder,
    roots: Iterable[str],
    options: IndexOptions = IndexOptions(),
    progress: Progress | None = None,
) -> IndexReport:
    """Bring the catalog up to date with ``roots`` (absolute real paths), embedding with ``embedder``."""
    started = time.monotonic()
    report = IndexReport()
    run_id = catalog.start_run()
    to_embed: list[FileStat] = []
    vanished: dict[str, FileRow] = {}
    for root in roots:
        if not os.path.isdir(root) or (os.path.ismount(root) and not os.listdir(root)):
            report.missing_roots.append(root)  # unmounted drive: keep what we know about it
            continue
        _compare_root(catalog, root, report, to_embed, vanished)
    _apply_moves(catalog, to_embed, vanished, report)
    if vanished:
        catalog.delete(row.id for row in vanished.values())
        report.removed = len(vanished)
    _embed_all(catalog, embedder, to_embed, options, report, progress)
    report.seconds = time.monotonic() - started
    catalog.finish_run(run_id, {k: v for k, v in report.to_dict().items() if k != "skipped"}
                       | {"skipped": len(report.skipped)})
    return report


def _compare_root(
    catalog: Catalog, root: str, report: IndexReport, to_embed: list[FileStat], vanished: dict[str, FileRow]
) -> None:
    scan = scan_root(root)
    known = catalog.rows_under(root)
    skipped_now = []
    for file_stat, reason in scan.skipped:
        row = known.pop(file_stat.path, None)
        if row is not None and row.status == "skipped" and row.same_stat(file_stat) and row.reason == reason:
            continue
        skipped_now.append((file_stat, reason))
    if skipped_now:
        catalog.store_skipped(skipped_now)
    report.skipped.extend((s.path, r) for s, r in skipped_now)
    for file_stat in scan.files:
        row = known.pop(file_stat.path, None)
        if row is not None and row.same_stat(file_stat):
            report.unchanged += 1  # a stored skip of an unchanged file is not retried either
        else:
            to_embed.append(file_stat)
    for path, row in known.items():
        if not any(is_within(path, d) for d in scan.unreadable_dirs):
            vanished[path] = row


def _apply_moves(
    catalog: Catalog, to_embed: list[FileStat], vanished: dict[str, FileRow], report: IndexReport
) -> None:
    """Files that appeared where others vanished, with the same content, take over the old rows and vectors."""
    if not vanished:
        return
    by_inode = {(r.device, r.inode, r.size, r.mtime_ns): r for r in vanished.values() if r.status == "ok"}
    by_size: dict[int, list[FileRow]] = {}
    for row in vanished.values():
        if row.status == "ok" and row.digest:
            by_size.setdefault(row.size, []).append(row)
    moves, remaining = [], []
    for file_stat in to_embed:
        row = by_inode.get((file_stat.device, file_stat.inode, file_stat.size, file_stat.mtime_ns))
        if row is None and file_stat.size in by_size:
            digest = _digest_of(file_stat.path)
            row = next((r for r in by_size[file_stat.size] if r.digest == digest and r.path in vanished), None)
        if row is not None and row.path in vanished:
            del vanished[row.path]
            moves.append((row.id, file_stat))
        else:
            remaining.append(file_stat)
    if moves:
        catalog.move(moves)
        report.moved = len(moves)
    to_embed[:] = remaining


def _digest_of(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return content_digest(handle.read())
    except OSError:
        return None


def _embed_all(
    catalog: Catalog,
    embedder,
    files: list[FileStat],
    options: IndexOptions,
    report: IndexReport,
    progress: Progress | None,
) -> None:
    total, done = len(files), 0
    if progress:
        progress(0, total)
    spec = embedder.pixel_spec
    batch: list[Prepared] = []
    for prepared in _prepare_all(files, spec, options):
        batch.append(prepared)
        if len(batch) >= options.batch_size:
            done += _store_batch(catalog, embedder, batch, report)
            batch = []
            if progress:
                progress(done, total)
    if batch:
        done += _store_batch(catalog, embedder, batch, report)
        if progress:
            progress(done, total)


def _store_batch(catalog: Catalog, embedder, batch: list[Prepared], report: IndexReport) -> int:
    good = [p for p in batch if p.error is None]
    bad = [(p.stat, p.error) for p in batch if p.error is not None]
    if good:
        if embedder.pixel_spec is not None:
            vectors = embedder.encode_pixels(np.stack([p.pixels for p in good]))
        else:
            from PIL import Image

            vectors = embedder.encode_images([Image.fromarray(p.pixels) for p in good])
        catalog.store_embedded(
            Embedded(p.stat, p.digest, p.size[0], p.size[1], vector) for p, vector in zip(good, vectors)
        )
        report.indexed += len(good)
    if bad:
        catalog.store_skipped(bad)
        report.skipped.extend((s.path, reason) for s, reason in bad)
    return len(batch)


def _prepare_all(files: list[FileStat], spec: PixelSpec | None, options: IndexOptions) -> Iterator[Prepared]:
    workers = options.workers
    if workers is None:
        workers = 0 if len(files) < 64 else max(1, min(4, (os.cpu_count() or 2)))
    if workers == 0:
        for file_stat in files:
            yield prepare_file(file_stat, spec, options.decode)
        return
    yield from _prepare_in_processes(files, spec, options, workers)


def _prepare_in_processes(
    files: list[FileStat], spec: PixelSpec | None, options: IndexOptions, workers: int
) -> Iterator[Prepared]:
    """Decode in worker processes, keeping a bounded window in flight so memory stays flat on any library size.

    A decoder that crashes its process (a native library fault) costs only that file: the pool is restarted
    and each file that was in flight is retried alone once.
    """
    context = multiprocessing.get_context("spawn")  # never fork a process that holds torch's thread pools
    window = max(2 * options.batch_size, 4 * workers)
    pending = deque(files)
    retry_alone: deque[FileStat] = deque()
    while pending or retry_alone:
        with futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            in_flight: deque[tuple[FileStat, futures.Future]] = deque()
            broken = False
            while (pending or in_flight) and not broken:
                while pending and len(in_flight) < window:
                    file_stat = pending.popleft()
                    in_flight.append((file_stat, pool.submit(prepare_file, file_stat, spec, options.decode)))
                file_stat, future = in_flight.popleft()
                try:
                    yield future.result()
                except futures.process.BrokenProcessPool:
                    broken = True
                    retry_alone.append(file_stat)
                    retry_alone.extend(s for s, _ in in_flight)
        while retry_alone:
            file_stat = retry_alone.popleft()
            with futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as single:
                try:
                    yield single.submit(prepare_file, file_stat, spec, options.decode).result()
                except futures.process.BrokenProcessPool:
                    yield Prepared(file_stat, error="the image decoder crashed on this file")
