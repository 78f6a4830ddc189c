"""`clipsearch status`: what an index holds."""

from __future__ import annotations

import json
import os
import time

import click

from clipsearch.cli.common import (
    INDEX_OPTION,
    JSON_OPTION,
    friendly_errors,
    printable,
)


@click.command()
@INDEX_OPTION
@JSON_OPTION
@friendly_errors
def status(index_dir, as_json) -> None:
    """Show an index: model, counts, folders (marking the missing ones), last run, and every skipped file with
    its reason.

    \b
    Example:
      clipsearch status --json
    """
    from clipsearch.library import Library

    with Library.open(index_dir) as library:
        info = library.status()
    missing = [root for root in info.roots if not _available(root)]
    if as_json:
        click.echo(json.dumps(info.to_dict() | {"missing_roots": missing}, indent=2))
        return
    click.echo(f"index:   {info.index_dir}")
    click.echo(f"model:   {info.model or 'none yet (nothing has been indexed)'}")
    click.echo(f"files:   {info.files} indexed, {len(info.skipped)} skipped")
    click.echo(f"vectors: {info.index_type or 'no FAISS index yet (built on the first search)'}")
    for root in info.roots:
        note = "   (missing: not there, unreadable or empty; an unplugged drive? its files are kept)"
        click.echo(f"root:    {printable(root)}{note if root in missing else ''}")
    if info.last_run:
        click.echo(f"last run: {describe_run(info.last_run)}")
    for path, reason in info.skipped:
        click.echo(f"skipped: {printable(path)}: {reason}")


def describe_run(run: dict) -> str:
    """The catalog's record of a run in words: when, what it did, how long it took."""
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run["started"]))
    summary = run.get("summary")
    if not run.get("finished") or not summary:
        return f"{started}, did not finish (interrupted or failed; the next run resumes)"
    text = (f"{started}, indexed {summary.get('indexed', 0)}, unchanged {summary.get('unchanged', 0)}, "
            f"moved {summary.get('moved', 0)}, removed {summary.get('removed', 0)}, "
            f"skipped {summary.get('skipped', 0)} in {summary.get('seconds', 0):.1f} s")
    if summary.get("missing_roots"):
        text += f"; folders missing: {', '.join(printable(r) for r in summary['missing_roots'])}"
    return text


def _available(root: str) -> bool:
    """What the indexer checks before trusting a folder: it is there, readable and not empty."""
    try:
        with os.scandir(root) as entries:
            return next(entries, None) is not None
    except OSError:
        return False
