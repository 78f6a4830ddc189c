"""`clipsearch synthetic`: the generated world the bundled model knows."""

from __future__ import annotations

from pathlib import Path

import click

from clipsearch.cli.common import (
    friendly_errors,
)


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@friendly_errors
def synthetic(out_dir, count, seed) -> None:
    """Generate captioned synthetic scenes (JPEG/PNG + captions.jsonl), e.g. a held-out test set.

    \b
    Example:
      clipsearch synthetic /tmp/scenes --count 200 --seed 7
    """
    from clipsearch.world.synthetic import generate_library

    records = generate_library(out_dir, count, seed)
    click.echo(f"wrote {len(records)} images and captions.jsonl to {out_dir}")
