"""Committing an index run to the catalog: the plan's cheap changes, then one transaction per embedded batch.

The one writer of an index run. A killed run loses at most the batch in flight: every batch committed before
stays, and a rerun skips those files by their stat.
"""

from __future__ import annotations

from clipsearch.ingest.engine import Batch
from clipsearch.ingest.plan import Plan
from clipsearch.store.catalog import Catalog


def apply_plan(catalog: Catalog, plan: Plan) -> None:
    """Record what needs no model: new skips, moves, stat updates of unchanged content, deletions."""
    if plan.skipped:
        catalog.store_skipped(plan.skipped)
    if plan.moves:
        catalog.move(plan.moves)
    if plan.restat:
        catalog.restat(plan.restat)
    if plan.vanished:
        catalog.delete(row.id for row in plan.vanished)


def commit_batch(catalog: Catalog, batch: Batch) -> None:
    """Store one batch (its vectors and its skips) in one transaction."""
    catalog.store_batch(batch.embedded, batch.skipped)
