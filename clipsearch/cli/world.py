"""`clipsearch synthetic`: the generated world the bundled model knows."""

from __future__ import annotations

from pathlib import Path

import click

from clipsearch.cli.common import friendly_errors

SPLITS = ("all", "seen", "unseen")  # clipsearch.world.synthetic.SPLITS, without importing numpy and PIL for --help


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--variants", default="", metavar="LIST",
              help="also render each photo scene at these times or weathers, e.g. night,snow,day/rain")
@click.option("--split", type=click.Choice(SPLITS), default="all", show_default=True,
              help="every scene, only combinations the bundled model was trained on, or only held-out ones")
@click.option("--photo-share", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="share of photo-like scenes; the rest are shape scenes")
@friendly_errors
def synthetic(out_dir, count, seed, variants, split, photo_share) -> None:
    """Generate captioned synthetic scenes (JPEG/PNG + captions.jsonl), e.g. a held-out test set.

    Photo-like scenes (a place at a time of day in some weather, with coloured objects) and shape scenes; each
    captions.jsonl record also carries the scene's attributes as fields.

    \b
    Example:
      clipsearch synthetic /tmp/scenes --count 200 --seed 7 --variants night
    """
    from clipsearch.world.synthetic import generate_library

    wanted = [v.strip() for v in variants.split(",") if v.strip()]
    try:
        records = generate_library(out_dir, count, seed, variants=wanted, split=split, photo_share=photo_share)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"wrote {len(records)} images and captions.jsonl to {out_dir}")
