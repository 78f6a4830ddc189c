"""Planning an index run: what is new, changed, moved, restored, deleted or unchanged under each root.

Planning reads the catalog and the file system and writes nothing: ``commit.apply_plan`` records the cheap
changes (moves, stat updates, deletions, skips) and the embedding engine handles ``Plan.to_embed``.

- unchanged: same size, mtime and inode as the stored row; not even opened.
- same bytes: the stat changed but the content did not (restored from a backup, copied with its times,
  touched): the file is read and hashed, and keeps its vector.
- moved: a file appeared where another vanished, with the same inode or the same content: it takes over the
  old row and its vector.
- vanished: gone from a root that is still there. A root that is missing, unreadable or an empty mount point
  (an unplugged drive) is not read as "everything deleted": its files are kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from clipsearch.errors import ImageError
from clipsearch.imaging.decode import DecodeOptions
from clipsearch.ingest.scan import scan_root
from clipsearch.ingest.workers import content_digest, is_retryable, read_regular_file
from clipsearch.paths import is_within
from clipsearch.store.catalog import Catalog, FileRow, FileStat


@dataclass
class Plan:
    """What an index run has to do, as found by ``plan_changes``."""

    to_embed: list[FileStat] = field(default_factory=list)
    moves: list[tuple[int, FileStat]] = field(default_factory=list)  # (row id, where the file is now)
    restat: list[tuple[int, FileStat]] = field(default_factory=list)  # same path and bytes, new stat
    vanished: list[FileRow] = field(default_factory=list)
    skipped: list[tuple[FileStat, str]] = field(default_factory=list)  # newly skipped, with the reason
    unchanged: int = 0
    missing_roots: list[str] = field(default_factory=list)


def plan_changes(catalog: Catalog, roots: list[str], max_bytes: int = DecodeOptions().max_bytes,
                 retry_skipped: bool = False) -> Plan:
    """Compare ``roots`` (absolute real paths) with the catalog.

    An unchanged file that was skipped stays skipped, unless ``retry_skipped`` and its skip was of the passing
    kind (a timeout, a crashed decoder, a read error: ``workers.is_retryable``): then it is embedded again.
    """
    plan = Plan()
    vanished: dict[str, FileRow] = {}
    for root in roots:
        if root_looks_unavailable(catalog, root):
            plan.missing_roots.append(root)  # unmounted drive: keep what we know about it
            continue
        _compare_root(catalog, root, plan, vanished, max_bytes, retry_skipped)
    _find_moves(plan, vanished, max_bytes)
    plan.vanished = list(vanished.values())
    return plan


def root_looks_unavailable(catalog: Catalog, root: str) -> bool:
    """A root that is gone, unreadable, or empty although the catalog knows files there: a drive not mounted.

    An unmounted drive usually leaves its mount point behind as an ordinary empty folder, so "empty" is the
    signal, not ``os.path.ismount``. Files really deleted from a root that still holds anything are removed.
    """
    try:
        with os.scandir(root) as entries:
            empty = next(iter(entries), None) is None
    except OSError:
        return True
    return empty and (os.path.ismount(root) or catalog.has_rows_under(root))


def _compare_root(catalog: Catalog, root: str, plan: Plan, vanished: dict[str, FileRow], max_bytes: int,
                  retry_skipped: bool) -> None:
    scan = scan_root(root)
    known = catalog.rows_under(root)
    for file_stat, reason in scan.skipped:
        row = known.pop(file_stat.path, None)
        if row is not None and row.status == "skipped" and row.same_stat(file_stat) and row.reason == reason:
            continue
        plan.skipped.append((file_stat, reason))
    for file_stat in scan.files:
        row = known.pop(file_stat.path, None)
        if row is not None and row.same_stat(file_stat):
            if retry_skipped and row.status == "skipped" and is_retryable(row.reason):
                plan.to_embed.append(file_stat)
            else:
                plan.unchanged += 1  # a stored skip of an unchanged file is not retried either
        elif row is not None and _same_bytes(row, file_stat, max_bytes):
            plan.restat.append((row.id, file_stat))
        else:
            plan.to_embed.append(file_stat)
    for path, row in known.items():
        if not any(is_within(path, d) for d in scan.unreadable_dirs):
            vanished[path] = row


def _same_bytes(row: FileRow, file_stat: FileStat, max_bytes: int) -> bool:
    """An embedded file whose stat changed but whose content is what was embedded (same size, same digest)."""
    if row.status != "ok" or not row.digest or row.size != file_stat.size:
        return False
    return digest_of(file_stat, max_bytes) == row.digest


def _find_moves(plan: Plan, vanished: dict[str, FileRow], max_bytes: int) -> None:
    """Files that appeared where others vanished, with the same content, take over the old rows and vectors."""
    if not vanished:
        return
    by_inode = {(r.device, r.inode, r.size, r.mtime_ns): r for r in vanished.values() if r.status == "ok"}
    by_size: dict[int, list[FileRow]] = {}
    for row in vanished.values():
        if row.status == "ok" and row.digest:
            by_size.setdefault(row.size, []).append(row)
    remaining = []
    for file_stat in plan.to_embed:
        row = by_inode.get((file_stat.device, file_stat.inode, file_stat.size, file_stat.mtime_ns))
        if row is None and file_stat.size in by_size:
            digest = digest_of(file_stat, max_bytes)
            row = next((r for r in by_size[file_stat.size] if r.digest == digest and r.path in vanished), None)
        if row is not None and row.path in vanished:
            del vanished[row.path]
            plan.moves.append((row.id, file_stat))
        else:
            remaining.append(file_stat)
    plan.to_embed = remaining


def digest_of(file_stat: FileStat, max_bytes: int = DecodeOptions().max_bytes) -> str | None:
    """The content digest of a file now, or ``None`` when it cannot be read."""
    try:
        return content_digest(read_regular_file(file_stat, max_bytes)[1])
    except (OSError, ImageError):
        return None
