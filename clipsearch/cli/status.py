"""`clipsearch status`: what an index holds."""

from __future__ import annotations

import json

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
    """Show an index: model, counts, roots, last run, and every skipped file with its reason.

    \b
    Example:
      clipsearch status --json
    """
    from clipsearch.library import Library

    with Library.open(index_dir) as library:
        info = library.status()
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    click.echo(f"index:   {info.index_dir}")
    click.echo(f"model:   {info.model}")
    click.echo(f"files:   {info.files} indexed, {len(info.skipped)} skipped")
    click.echo(f"vectors: {info.index_type or 'no FAISS index yet (built on the first search)'}")
    for root in info.roots:
        click.echo(f"root:    {printable(root)}")
    if info.last_run and info.last_run.get("summary"):
        click.echo(f"last run: {json.dumps(info.last_run['summary'])}")
    for path, reason in info.skipped:
        click.echo(f"skipped: {printable(path)}: {reason}")
