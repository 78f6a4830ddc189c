"""An index run: plan the changes, record the cheap ones, embed the rest, commit batch by batch.

    roots --scan/plan--> unchanged | same bytes | moved | vanished | to embed
    to embed --engine (decode workers + model)--> batches --commit, one transaction each--> catalog

A killed run loses at most the batch in flight: a rerun skips every file already stored with the same size,
mtime and inode. Nothing under a root that is missing, empty or an empty mount point is deleted.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from clipsearch.errors import IndexStoreError
from clipsearch.imaging.decode import DecodeOptions
from clipsearch.ingest.commit import apply_plan, commit_batch
from clipsearch.ingest.engine import EmbeddingEngine, LocalEngine
from clipsearch.ingest.plan import plan_changes
from clipsearch.ingest.workers import Prepared, WorkerOptions
from clipsearch.model.protocol import EmbeddingModel
from clipsearch.store.catalog import Catalog

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
    engine: EmbeddingEngine | None = None  # how files become vectors; None: LocalEngine
    retry_skipped: bool = False  # embed again unchanged files skipped for a timeout, a crash or a read error

    def worker_options(self) -> WorkerOptions:
        return WorkerOptions(self.workers, self.decode, self.file_timeout, self.batch_size, self.prepare)


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


def index_roots(
    catalog: Catalog,
    get_model: Callable[[], EmbeddingModel],
    roots: Iterable[str],
    options: IndexOptions = IndexOptions(),
    progress: Progress | None = None,
) -> IndexReport:
    """Bring the catalog up to date with ``roots`` (absolute real paths).

    ``get_model`` is called only when some file needs embedding, so a rerun over an unchanged library never
    loads the model (seconds for ViT-B-32).

    Raises ``IndexStoreError`` when the catalog cannot be written (disk full, read-only): every batch
    committed before stays, and the next run resumes from there.
    """
    try:
        return _index_roots(catalog, get_model, list(roots), options, progress)
    except sqlite3.Error as exc:
        raise IndexStoreError(
            f"could not write to the catalog {catalog.path} ({exc}); everything stored before is intact. "
            "Free some disk space (or make the index folder writable) and run the same command again to resume."
        ) from None


def _index_roots(catalog: Catalog, get_model, roots: list[str], options: IndexOptions, progress):
    started = time.monotonic()
    run_id = catalog.start_run()
    plan = plan_changes(catalog, roots, options.decode.max_bytes, options.retry_skipped)
    apply_plan(catalog, plan)
    report = IndexReport(
        unchanged=plan.unchanged + len(plan.restat), moved=len(plan.moves), removed=len(plan.vanished),
        skipped=[(s.path, reason) for s, reason in plan.skipped], missing_roots=plan.missing_roots,
    )
    total, done = len(plan.to_embed), 0
    if progress:
        progress(0, total)
    engine = options.engine or LocalEngine()
    batches = iter(engine.batches(plan.to_embed, get_model, options.worker_options()))
    try:
        for batch in batches:
            commit_batch(catalog, batch)
            report.indexed += len(batch.embedded)
            report.skipped.extend((s.path, reason) for s, reason in batch.skipped)
            done += len(batch)
            if progress:
                progress(done, total)
    finally:
        if hasattr(batches, "close"):
            batches.close()  # a failed commit stops the engine's workers now, not whenever it is collected
    report.seconds = time.monotonic() - started
    catalog.finish_run(run_id, {k: v for k, v in report.to_dict().items() if k != "skipped"}
                       | {"skipped": len(report.skipped)})
    return report
