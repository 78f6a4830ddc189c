"""`clipsearch search`: mixed queries over an index."""

from __future__ import annotations

import json

import click

from clipsearch.cli.common import (
    INDEX_OPTION,
    JSON_OPTION,
    embed_options,
    engine_options,
    friendly_errors,
    printable,
)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("query", nargs=-1, required=True, type=click.UNPROCESSED)
@INDEX_OPTION
@click.option("--top", "top_k", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--min-score", type=float, help="Hide results below this cosine similarity.")
@click.option("--folder", type=click.Path(), help="Only results under this folder.")
@click.option("--tag", help="Only photos with this saved tag (see `clipsearch tag --save`).")
@engine_options
@JSON_OPTION
@friendly_errors
def search(query, index_dir, top_k, min_score, folder, tag, device, image_backend, text_backend, reference,
           as_json) -> None:
    """Search by words, example images, or both, combined with + and - and weights.

    \b
    Examples:
      clipsearch search "beach" + "sunset" - "people"
      clipsearch search ./photo.jpg + "at night"
      clipsearch search 2:"red car" ./ref.jpg --top 5 --json
      clipsearch search '#17' - day + night --tag beach
    """
    from clipsearch.library import Library, SearchFilter

    engine = embed_options(device, image_backend, text_backend, reference)
    with Library.open(index_dir, embed_options=engine) as library:
        hits = library.search(list(query), top_k=top_k, min_score=min_score, where=SearchFilter(folder=folder, tag=tag))
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    if not hits:
        click.echo("no results")
    for hit in hits:
        click.echo(f"{hit.score:.3f}  #{hit.id}  {printable(hit.path)}")
