"""The decode worker pool: files in, model-ready pixels (or a reason) out, in order.

Decoding runs in worker processes (Pillow and NumPy only) overlapped with the model in the parent. A decoder
that crashes its process or hangs costs only the file it was decoding: each worker holds one file at a time
and has a deadline, and a dead or stuck worker is replaced.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing.connection
import os
import signal
import stat as stat_module
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from clipsearch.errors import ClipsearchError, ImageError
from clipsearch.imaging.decode import OUT_OF_MEMORY, DecodeOptions, PixelSpec, decode_image, resize_and_crop
from clipsearch.imaging.taken import date_taken
from clipsearch.store.catalog import FileStat

# Skips that say nothing about the file itself (the decoder hung or crashed, the read failed, memory or
# patience ran out): another run may well succeed, so ``clipsearch index --retry-skipped`` tries them again.
TIMED_OUT = "decoding took longer than {timeout:g} s (a stuck decoder?)"
CRASHED = "the image decoder crashed on this file"
READ_FAILED = "could not be read: {why}"
CHANGED_WHILE_READ = "file changed while it was being read; it is retried on the next run"


def is_retryable(reason: str | None) -> bool:
    """Whether a stored skip ``reason`` is one of the passing kind above (not a broken or unsupported file)."""
    passing = (TIMED_OUT.split("{")[0], CRASHED, READ_FAILED.split("{")[0], OUT_OF_MEMORY, CHANGED_WHILE_READ)
    return bool(reason) and reason.startswith(passing)


@dataclass(frozen=True)
class WorkerOptions:
    """How files are prepared: decode limits, the number of processes, a per-file deadline."""

    # Decode processes; None picks by CPU count and amount of work. 0 decodes inline in this process: slightly
    # faster for a handful of files, but a crashing or hanging decoder then takes the whole run with it.
    workers: int | None = None
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    file_timeout: float = 120.0  # seconds one file may take in a decode worker before it is skipped
    batch_size: int = 32  # sizes the window of files in flight
    # What a worker runs per file (a picklable top-level function with prepare_file's signature): the seam for
    # extra formats or instrumentation.
    prepare: Callable[..., Prepared] | None = None


@dataclass(frozen=True)
class Prepared:
    """What a decode worker hands back for one file."""

    stat: FileStat
    digest: str | None = None
    size: tuple[int, int] = (0, 0)
    pixels: np.ndarray | None = None
    error: str | None = None
    taken_ns: int | None = None  # EXIF DateTimeOriginal; None: the catalog uses the file's mtime


def content_digest(data: bytes) -> str:
    """Identity of a file's content, used to recognise moved files (their vectors are reused)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def prepare_file(stat: FileStat, spec: PixelSpec | None, options: DecodeOptions) -> Prepared:
    """Read, fingerprint and decode one file. Runs in a worker process; never raises for a bad file.

    The returned stat is the one of the bytes actually read: a file replaced since the scan is stored as what
    was decoded, and one that changed while being read is skipped for now (the next run sees a new mtime).
    """
    try:
        stat, data = read_regular_file(stat, options.max_bytes)
        image, size = decode_image(io.BytesIO(data), options, spec.size if spec else None)
        pixels = resize_and_crop(image, spec) if spec else np.asarray(image, dtype=np.uint8)
        return Prepared(stat, content_digest(data), size, pixels, taken_ns=date_taken(data))
    except ImageError as exc:
        return Prepared(stat, error=str(exc))
    except FileNotFoundError:
        return Prepared(stat, error="file vanished before it could be read")
    except OSError as exc:
        return Prepared(stat, error=READ_FAILED.format(why=(exc.strerror or "input/output error").lower()))
    except MemoryError:
        return Prepared(stat, error=OUT_OF_MEMORY)


def read_regular_file(scanned: FileStat, max_bytes: int) -> tuple[FileStat, bytes]:
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
        raise ImageError(CHANGED_WHILE_READ)
    if not data:
        raise ImageError("empty file")
    return FileStat.of(scanned.path, after), data


def prepare_all(files: list[FileStat], spec: PixelSpec | None, options: WorkerOptions) -> Iterator[Prepared]:
    """Read, fingerprint and decode ``files``, in order, in worker processes (or inline with ``workers=0``)."""
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
    files: list[FileStat], spec: PixelSpec | None, options: WorkerOptions, prepare, workers: int
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
            finished.append(worker.give_up(TIMED_OUT.format(timeout=timeout)))
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
        code = "from clipsearch.ingest.workers import _decode_worker; _decode_worker()"
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
            return self.give_up(CRASHED)
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
