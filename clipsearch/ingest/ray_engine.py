"""Indexing on a Ray cluster: decoding and embedding as a Ray Data pipeline; committing stays with the one writer.

    planned files --from_items--> blocks --map_batches (an actor pool of embedders)--> vectors --> the driver commits

Planning and committing run on the driver exactly as with ``LocalEngine``; only ``batches`` runs elsewhere. Each
actor holds one model and prepares its batch's files with the same decode workers the local engine uses (a
per-file deadline; a crashing decoder costs only its file), so skip reasons are the same. The photos must be
readable at the same paths on every node (shared storage). Ray restarts a killed actor and runs its batch again,
and a batch reaches the driver once, so no file is lost or committed twice; a killed driver loses at most the
batches in flight, and a rerun resumes like any run.

Actors ask for a fraction of a CPU, so that on a 2-CPU node they can never take every CPU and starve the rest of
the pipeline (a deadlock seen with whole CPUs), and the driver gives up with a clear error when the cluster
returns nothing for ``stall_timeout`` seconds. Where the cluster has GPUs, each actor takes one.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from clipsearch.errors import ClipsearchError
from clipsearch.ingest.engine import Batch, encode_batch
from clipsearch.ingest.workers import WorkerOptions, prepare_all
from clipsearch.model.models import EmbedOptions, ModelSpec
from clipsearch.model.protocol import EmbeddingModel
from clipsearch.store.catalog import Embedded, FileStat

INSTALL_HINT = 'the Ray engine needs Ray: pip install "clipsearch[ray]" (or pip install "ray[data]")'
LOCAL_OBJECT_STORE = 256 * 1024**2  # a cluster of our own holds only paths and vectors: Ray's default is 30% of RAM


def import_ray():
    """The ``ray`` module, or a ``ClipsearchError`` that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks it)
    except ImportError:
        raise ClipsearchError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class ModelLoader:
    """A picklable recipe for the model: each Ray actor loads its own copy with it."""

    spec: ModelSpec
    options: EmbedOptions = field(default_factory=EmbedOptions)

    def __call__(self) -> EmbeddingModel:
        from clipsearch.model.embed import Embedder

        return Embedder.load(self.spec, self.options)


@dataclass(frozen=True)
class _Given:
    """The driver's own model, pickled to the actors (fine for small picklable models such as test doubles)."""

    model: EmbeddingModel

    def __call__(self) -> EmbeddingModel:
        return self.model


class RayEngine:
    """Embed on a Ray cluster: ``address`` ``None`` starts a private one on this machine, ``"auto"`` joins the
    cluster this machine belongs to, ``"ray://HEAD:10001"`` connects through Ray Client. When this process is
    already connected to Ray, that connection is used.

    ``load_model`` (e.g. ``ModelLoader(spec, options)``) is how each actor gets its model; without it the
    driver's model is pickled to them. ``actors``: how many embedders run (default: from one, growing with the
    work, up to one per GPU, else one per CPU).
    """

    def __init__(self, address: str | None = None, load_model: Callable[[], EmbeddingModel] | None = None,
                 actors: int | None = None, cpus_per_actor: float = 0.5, stall_timeout: float = 600.0,
                 object_store_memory: int = LOCAL_OBJECT_STORE):
        self.address = address
        self.load_model = load_model
        self.actors = actors
        self.cpus_per_actor = cpus_per_actor
        self.stall_timeout = stall_timeout
        self.object_store_memory = object_store_memory

    def batches(self, files: list[FileStat], get_model: Callable[[], EmbeddingModel],
                options: WorkerOptions) -> Iterator[Batch]:
        if not files:
            return
        ray = import_ray()
        model = get_model()  # records the model in the catalog; a model that cannot load fails here, not on a node
        started = self._connect(ray)
        try:
            yield from self._run(ray, files, self.load_model or _Given(model), model.dim, options)
        finally:
            if started:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Connect to (or start) Ray; ``True`` when this call started it (and so stops it afterwards)."""
        if ray.is_initialized():
            return False
        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if self.address is None:
            kwargs["object_store_memory"] = self.object_store_memory
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = self.address or "this machine"
            raise ClipsearchError(f"could not start or reach Ray at {where}: {_first_line(exc)}") from None
        return True

    def _run(self, ray, files: list[FileStat], load, dim: int, options: WorkerOptions) -> Iterator[Batch]:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        most = self.actors or max(1, gpus or int(resources.get("CPU", 1)))
        pool = ray.data.ActorPoolStrategy(size=self.actors) if self.actors else ray.data.ActorPoolStrategy(
            min_size=1, max_size=most)  # a given number runs from the start; else it grows with the work
        # One item per batch of the plan, so that batches (and so catalog ids) are exactly the local engine's.
        parts = (files[i:i + options.batch_size] for i in range(0, len(files), options.batch_size))
        items = [{"path": [os.fsencode(s.path) for s in part], "size": [s.size for s in part],
                  "mtime_ns": [s.mtime_ns for s in part], "inode": [s.inode for s in part],
                  "device": [s.device for s in part]} for part in parts]
        dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 1000))
        context = dataset.context  # this dataset's own copy: nothing process-wide is changed
        context.execution_options.preserve_order = True  # commits (and so catalog ids) in planned order
        context.enable_progress_bars = False  # the CLI draws its own
        context.print_on_execution_start = False
        embedded = dataset.map_batches(
            _EmbedActor, fn_constructor_kwargs={"load": load, "options": options, "dim": dim},
            batch_size=1, batch_format="numpy",
            compute=pool,
            num_cpus=self.cpus_per_actor, num_gpus=1 if gpus else None,
        )
        results = embedded.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)
        for columns in _within(results, self.stall_timeout, ray):
            yield _to_batch(columns)


class _EmbedActor:
    """One embedder on a node: loads its model once, then prepares and encodes one batch per call."""

    def __init__(self, load: Callable[[], EmbeddingModel], options: WorkerOptions, dim: int):
        self._model = load()
        self._options = options
        self._dim = dim

    def __call__(self, items: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = Batch()
        for n in range(len(items["path"])):  # one planned batch per item
            stats = [FileStat(os.fsdecode(bytes(p)), int(s), int(m), int(i), int(d)) for p, s, m, i, d in zip(
                *(items[key][n] for key in ("path", "size", "mtime_ns", "inode", "device")))]
            done = encode_batch(self._model, list(prepare_all(stats, self._model.pixel_spec, self._options)))
            batch.embedded += done.embedded
            batch.skipped += done.skipped
        return _to_columns(batch, self._dim)


def _to_columns(batch: Batch, dim: int) -> dict[str, np.ndarray]:
    """A batch as Arrow-friendly columns: paths as bytes (names need not be UTF-8), skipped files with reasons."""
    done = [(e.stat, e.digest, e.width, e.height, e.vector, "") for e in batch.embedded]
    done += [(stat, "", 0, 0, np.zeros(dim, np.float32), reason) for stat, reason in batch.skipped]

    def column(values, dtype=None) -> np.ndarray:
        array = np.empty(len(values), dtype=object) if dtype is None else np.asarray(values, dtype=dtype)
        if dtype is None:
            array[:] = values
        return array

    return {
        "path": column([os.fsencode(s.path) for s, *_ in done]),
        "size": column([s.size for s, *_ in done], np.int64),
        "mtime_ns": column([s.mtime_ns for s, *_ in done], np.int64),
        "inode": column([s.inode for s, *_ in done], np.int64),
        "device": column([s.device for s, *_ in done], np.int64),
        "digest": column([d[1] for d in done]),
        "width": column([d[2] for d in done], np.int64),
        "height": column([d[3] for d in done], np.int64),
        "vector": np.stack([np.asarray(d[4], np.float32) for d in done]) if done else np.zeros((0, dim), np.float32),
        "error": column([d[5] for d in done]),
    }


def _to_batch(columns: dict[str, np.ndarray]) -> Batch:
    batch = Batch()
    for i in range(len(columns["path"])):
        stat = FileStat(os.fsdecode(bytes(columns["path"][i])), int(columns["size"][i]), int(columns["mtime_ns"][i]),
                        int(columns["inode"][i]), int(columns["device"][i]))
        error = str(columns["error"][i] or "")
        if error:
            batch.skipped.append((stat, error))
        else:
            batch.embedded.append(Embedded(stat, str(columns["digest"][i]), int(columns["width"][i]),
                                           int(columns["height"][i]), np.array(columns["vector"][i], np.float32)))
    return batch


def _within(results, timeout: float, ray) -> Iterator[dict]:
    """Yield the pipeline's batches; a ``ClipsearchError`` when none arrives for ``timeout`` seconds or the
    pipeline fails. The pipeline is read in a thread because Ray Data's iterator has no timeout of its own."""
    inbox: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def pump() -> None:
        try:
            for item in results:
                while not stop.is_set():
                    try:
                        inbox.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            inbox.put(done)
        except BaseException as exc:  # handed to the driver's thread, which raises it as a ClipsearchError
            inbox.put(exc)

    reader = threading.Thread(target=pump, name="clipsearch-ray-results", daemon=True)
    reader.start()
    try:
        while True:
            try:
                item = inbox.get(timeout=timeout)
            except queue.Empty:
                raise ClipsearchError(
                    f"the Ray cluster returned no batch for {timeout:g} s (too few free CPUs, or a node lost?); "
                    "every batch committed before is kept: run the same command again to resume") from None
            if item is done:
                return
            if isinstance(item, BaseException):
                if isinstance(item, (KeyboardInterrupt, ClipsearchError)):
                    raise item
                raise ClipsearchError(
                    f"the Ray pipeline failed: {_first_line(item)}; every batch committed before is kept: run "
                    "the same command again to resume") from None
            yield item
    finally:
        stop.set()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if len(lines) > 1 and lines[0].startswith("ray::") else lines[0]
