"""`clipsearch search`: mixed queries over an index."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time

import click

from clipsearch.cli.common import (
    INDEX_OPTION,
    JSON_OPTION,
    embed_options,
    engine_options,
    friendly_errors,
    printable,
)


def _date(ctx, param, value: str | None) -> str | None:
    """Check a --since/--until date now, so a bad one is a usage error (exit 2) before the model loads."""
    from clipsearch.errors import QueryError
    from clipsearch.library import SearchFilter

    try:
        SearchFilter.dated(since=value)
    except QueryError as exc:
        raise click.BadParameter(str(exc).replace("the 'from' date ", "")) from None
    return value


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("query", nargs=-1, required=True, type=click.UNPROCESSED)
@INDEX_OPTION
@click.option("--top", "top_k", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--min-score", type=click.FloatRange(-1, 1), help="Hide results below this cosine similarity (-1..1).")
@click.option("--folder", type=click.Path(), help="Only results under this folder.")
@click.option("--since", metavar="DATE", callback=_date, help="Only photos taken on or after DATE (YYYY-MM-DD).")
@click.option("--until", metavar="DATE", callback=_date, help="Only photos taken on or before DATE (the whole day).")
@click.option("--tag", help="Only photos with this saved tag (see `clipsearch tag --save`).")
@engine_options
@JSON_OPTION
@click.option("--verbose", is_flag=True, help="Say on stderr how the query is encoded (the light ONNX path or "
              "open_clip, and why) and how long the search took.")
@friendly_errors
def search(query, index_dir, top_k, min_score, folder, since, until, tag, device, image_backend, text_backend,
           reference, as_json, verbose) -> None:
    """Search by words, example images, or both, combined with + and - and weights.

    \b
    Examples:
      clipsearch search "beach" + "sunset" - "people"
      clipsearch search ./photo.jpg + "at night"
      clipsearch search 2:"red car" ./ref.jpg --top 5 --json
      clipsearch search "a birthday cake" --since 2024-01-01 --until 2024-12-31
      clipsearch search '#17' - day + night --tag beach
    """
    if verbose:
        _log_to_stderr()
    from clipsearch.library import Library, SearchFilter

    # One query, then exit: the light model loads its towers for one run rather than many.
    engine = dataclasses.replace(embed_options(device, image_backend, text_backend, reference), one_shot=True)
    started = time.perf_counter()
    with Library.open(index_dir, embed_options=engine) as library:
        where = SearchFilter.dated(folder, since, until, tag=tag)  # dates taken: EXIF, else the mtime
        hits = library.search(list(query), top_k=top_k, min_score=min_score, where=where)
    logging.getLogger("clipsearch.cli").info(
        "%d results in %.0f ms (torch %s)", len(hits), (time.perf_counter() - started) * 1e3,
        "imported" if "torch" in sys.modules else "not imported",
    )
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    if not hits:
        click.echo("no results")
    for hit in hits:
        click.echo(f"{hit.score:.3f}  #{hit.id}  {printable(hit.path)}")


def _log_to_stderr() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("clipsearch: %(message)s"))
    logger = logging.getLogger("clipsearch")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
