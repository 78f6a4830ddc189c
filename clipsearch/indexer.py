"""An index run: scan the roots, compare with the catalog, embed what is new or changed, record the rest.

    roots --scan--> files --compare with catalog--> unchanged | moved | to embed | vanished
    to embed --decode workers--> pixels --embedder--> vectors --one transaction per batch--> catalog

Decoding runs in worker processes (Pillow and NumPy only) overlapped with the model in this process. A
decoder that crashes its process or hangs costs only the file it was decoding (each worker holds one file at
a time and has a deadline). A killed run loses at most the batch in flight: a rerun skips every file already
stored with the same size, mtime and inode. Nothing under a root that is missing, empty or an empty mount
point is deleted.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing.connection
import os
import signal
import sqlite3
import stat as stat_module
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from clipsearch.catalog import Catalog, Embedded, FileRow, FileStat
from clipsearch.decode import DecodeOptions, PixelSpec, decode_image, resize_and_crop
from clipsearch.errors import ClipsearchError, ImageError, IndexStoreError
from clipsearch.scan import is_within, scan_root

Progress = Callable[[int, int], None]  # (files done, files to embed)


@dataclass(frozen=True)
class IndexOptions:
    """Settings of an index run."""

    batch_size: int = 32
    # Decode processes; None picks by CPU count and amount of work. 0 decodes inline in this process: slightly
    # faster for a handful of files, but a crashing or hanging decoder then takes the whole run with it.
    workers: int | None = None
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    file_timeout: float = 120.0  # seconds one file may take in a decode worker before it is skipped
    # What a worker runs per file (a picklable top-level function with prepare_file's signature): the seam for
    # extra formats or instrumentation.
    prepare: Callable[..., Prepared] | None = None


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
    """Read, fingerprint and decode one file. Runs in a worker process; never raises for a bad file.

    The returned stat is the one of the bytes actually read: a file replaced since the scan is stored as what
    was decoded, and one that changed while being read is skipped for now (the next run sees a new mtime).
    """
    try:
        stat, data = _read_regular_file(stat, options.max_bytes)
        image, size = decode_image(io.BytesIO(data), options, spec.size if spec else None)
        pixels = resize_and_crop(image, spec) if spec else np.asarray(image, dtype=np.uint8)
        return Prepared(stat, content_digest(data), size, pixels)
    except ImageError as exc:
        return Prepared(stat, error=str(exc))
    except FileNotFoundError:
        return Prepared(stat, error="file vanished before it could be read")
    except OSError as exc:
        return Prepared(stat, error=(exc.strerror or type(exc).__name__).lower())
    except MemoryError:
        return Prepared(stat, error="not enough memory to decode this image")


def _read_regular_file(scanned: FileStat, max_bytes: int) -> tuple[FileStat, bytes]:
    # O_NONBLOCK: a file swapped for a FIFO since the scan must not hang us; fstat then refuses it.
    fd = os.open(scanned.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as handle:
        before = os.fstat(fd)
        if not stat_module.S_ISREG(before.st_mode):
            raise ImageError("not a regular file")
        if before.st_size > max_bytes:
            raise ImageError(f"file larger than {max_bytes:,} bytes")
        data = handle.read(before.st_size + 1)  # one byte more than expected reveals a file still growing
        after = os.fstat(fd)
    unchanged = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
    if not unchanged or len(data) != after.st_size:
        raise ImageError("file changed while it was being read; it is retried on the next run")
    if not data:
        raise ImageError("empty file")
    return FileStat.of(scanned.path, after), data


def index_roots(
    catalog: Catalog,
    embedder,
    roots: Iterable[str],
    options: IndexOptions = IndexOptions(),
    progress: Progress | None = None,
) -> IndexReport:
    """Bring the catalog up to date with ``roots`` (absolute real paths), embedding with ``embedder``.

    ``embedder`` may also be a zero-argument callable returning one: it is then called only when some file needs
    embedding, so a rerun over an unchanged library never loads the model (seconds for ViT-B-32).

    Raises ``IndexStoreError`` when the catalog cannot be written (disk full, read-only): every batch
    committed before stays, and the next run resumes from there.
    """
    try:
        return _index_roots(catalog, embedder, roots, options, progress)
    except sqlite3.Error as exc:
        raise IndexStoreError(
            f"could not write to the catalog {catalog.path} ({exc}); everything stored before is intact. "
            "Free some disk space (or make the index folder writable) and run the same command again to resume."
        ) from None


def _index_roots(catalog: Catalog, embedder, roots, options: IndexOptions, progress: Progress | None):
    started = time.monotonic()
    report = IndexReport()
    run_id = catalog.start_run()
    to_embed: list[FileStat] = []
    vanished: dict[str, FileRow] = {}
    for root in roots:
        if _looks_unavailable(catalog, root):
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


def _looks_unavailable(catalog: Catalog, root: str) -> bool:
    """A root that is gone, unreadable, or empty although the catalog knows files there: a drive not mounted.

    An unmounted drive usually leaves its mount point behind as an ordinary empty folder, so "empty" is the
    signal, not ``os.path.ismount``. Files really deleted from a root that still holds anything are removed.
    """
    try:
        with os.scandir(root) as entries:
            empty = next(iter(entries), None) is None
    except OSError:
        return True
    return empty and (os.path.ismount(root) or bool(catalog.rows_under(root)))


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
            digest = _digest_of(file_stat)
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


def _digest_of(file_stat: FileStat) -> str | None:
    try:
        return content_digest(_read_regular_file(file_stat, DecodeOptions().max_bytes)[1])
    except (OSError, ImageError):
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
    if not files:
        return
    if callable(embedder):
        embedder = embedder()
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
    prepare = options.prepare or prepare_file
    workers = options.workers
    if workers is None:
        # the model already keeps every core busy: one core fewer for decoding measured best (benchmarks/)
        workers = 1 if len(files) < 64 else max(1, min(4, (os.cpu_count() or 2) - 1))
    if workers == 0:
        for file_stat in files:
            yield prepare(file_stat, spec, options.decode)
        return
    if files:
        yield from _prepare_in_processes(files, spec, options, prepare, workers)


def _prepare_in_processes(
    files: list[FileStat], spec: PixelSpec | None, options: IndexOptions, prepare, workers: int
) -> Iterator[Prepared]:
    """Decode in worker processes, in order, keeping a bounded window in flight so memory stays flat.

    Each worker holds one file at a time, so a worker that dies (a native decoder fault) or passes its
    deadline (a decoder stuck in a loop) is known to be guilty: that file is skipped with the reason, the
    worker is replaced, and the run goes on.
    """
    window = max(2 * options.batch_size, 4 * workers)
    pending = deque(files)
    order: deque[FileStat] = deque()  # submitted, in submission order
    done: dict[int, Prepared] = {}  # keyed by position in ``order``'s sequence numbers
    first_seq, next_seq = 0, 0
    pool = [_Worker(prepare, spec, options.decode) for _ in range(min(workers, len(files)))]
    try:
        while pending or order:
            for worker in pool:
                if worker.task is None and pending and next_seq - first_seq < window:
                    worker.submit(next_seq, pending.popleft(), options.file_timeout)
                    order.append(worker.task[1])
                    next_seq += 1
            for seq, result in _collect(pool, options.file_timeout):
                done[seq] = result
            while first_seq in done:
                order.popleft()
                yield done.pop(first_seq)
                first_seq += 1
    finally:
        for worker in pool:
            worker.stop()


def _collect(pool: list[_Worker], timeout: float) -> list[tuple[int, Prepared]]:
    """Wait for at least one busy worker to answer, die or pass its deadline; return what finished."""
    busy = [w for w in pool if w.task is not None]
    if not busy:
        return []
    wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
    # A worker that dies closes its pipe, which makes the pipe readable: crashes wake us like answers do.
    ready = multiprocessing.connection.wait([w.conn for w in busy], wait_s)
    finished = []
    now = time.monotonic()
    for worker in busy:
        if worker.conn in ready:
            answer = worker.receive()
            if answer is not None:
                finished.append(answer)
        elif now >= worker.deadline:
            finished.append(worker.give_up(f"decoding took longer than {timeout:g} s (a stuck decoder?)"))
    return finished


class _Worker:
    """One decode process and the one file it is working on.

    Started as ``python -c`` with two pipes rather than through multiprocessing's spawn, which would re-run
    the caller's main script in every worker (a script without a ``__main__`` guard would index itself again).
    """

    def __init__(self, prepare, spec: PixelSpec | None, options: DecodeOptions):
        self._setup = (prepare, spec, options)
        self.task: tuple[int, FileStat] | None = None
        self.deadline = 0.0
        self.started = False
        self._start()

    def _start(self) -> None:
        from_child, to_parent = os.pipe()
        from_parent, to_child = os.pipe()
        code = "from clipsearch.indexer import _decode_worker; _decode_worker()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(from_parent), str(to_parent), str(os.getpid())],
            pass_fds=(from_parent, to_parent), stdin=subprocess.DEVNULL, close_fds=True,
        )
        os.close(from_parent)
        os.close(to_parent)
        self.conn = multiprocessing.connection.Connection(from_child, writable=False)
        self._send = multiprocessing.connection.Connection(to_child, readable=False)
        self._post(list(sys.path))
        self._post(self._setup)

    def _post(self, message) -> None:
        try:
            self._send.send(message)
        except (OSError, ValueError):
            pass  # the worker died: its closed pipe wakes _collect, which reports the file

    def submit(self, seq: int, file_stat: FileStat, timeout: float) -> None:
        self.task = (seq, file_stat)
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._post(file_stat)

    def receive(self) -> tuple[int, Prepared] | None:
        """The worker's answer: a result, ``None`` for its start-up greeting; a dead worker costs its file."""
        seq, file_stat = self.task
        try:
            result = self.conn.recv()
        except (EOFError, OSError):
            result = None
        if result == "ready":
            self.started = True
            self.deadline = time.monotonic() + self.timeout  # start-up time is not the file's fault
            return None
        if not self.started:
            self.stop(kill=True)
            raise ClipsearchError(
                "the decode worker process could not start (see the messages above); "
                "index with --workers 0 to decode in this process"
            )
        if not isinstance(result, Prepared):
            return self.give_up("the image decoder crashed on this file")
        self.task = None
        return seq, result

    def give_up(self, reason: str) -> tuple[int, Prepared]:
        """Kill the worker (stuck or dead), start a fresh one, and skip its file with ``reason``."""
        seq, file_stat = self.task
        self.task = None
        self.stop(kill=True)
        self.started = False
        self._start()
        return seq, Prepared(file_stat, error=reason)

    def stop(self, kill: bool = False) -> None:
        if kill or self.task is not None:
            self.process.kill()
        else:
            self._post(None)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()
        self._send.close()


def _decode_worker() -> None:
    """A decode process: read FileStats from the parent's pipe, answer with Prepared results; ``None`` stops."""
    read_fd, write_fd, parent_pid = (int(a) for a in sys.argv[1:4])
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us cleanly
    inbox = multiprocessing.connection.Connection(read_fd, writable=False)
    outbox = multiprocessing.connection.Connection(write_fd, readable=False)
    try:
        sys.path[:] = inbox.recv()  # first, so that ``prepare`` unpickles as it resolves in the parent
        prepare, spec, options = inbox.recv()
        outbox.send("ready")
        while True:
            file_stat = inbox.recv()
            if file_stat is None:
                return
            outbox.send(prepare(file_stat, spec, options))
    except (EOFError, BrokenPipeError):
        return  # the parent is gone


def _die_with_parent(parent_pid: int) -> None:
    """On Linux, have the kernel kill this worker when the indexer dies (even by SIGKILL) mid-decode."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(0)  # the parent died before the death signal was armed
