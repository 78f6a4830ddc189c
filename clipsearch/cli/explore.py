"""`clipsearch duplicates | outliers | themes | map | tag | eval`: what the space says about the library."""

from __future__ import annotations

import json

import click

from clipsearch.cli.common import INDEX_OPTION, JSON_OPTION, friendly_errors, printable

LABELS_FILE_OPTION = click.option(
    "--labels", "labels_file", type=click.Path(dir_okay=False),
    help="A plain text file of labels, one per line (default: the vocabulary shipped with clipsearch).")


def _open(index_dir):
    from clipsearch.library import Library

    return Library.open(index_dir)


def _echo_json(items) -> None:
    click.echo(json.dumps(items, indent=2))


def _labels_from_file(labels_file):
    from clipsearch.explore.labels import read_labels_file

    return read_labels_file(labels_file) if labels_file else None


@click.command()
@INDEX_OPTION
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True),
              help="Cosine similarity from which two photos may be the same picture, in (0, 1] (default 0.90).")
@click.option("--vectors-only", is_flag=True,
              help="Trust the vectors alone: skip the pixel check that confirms each near pair (faster).")
@JSON_OPTION
@friendly_errors
def duplicates(index_dir, threshold, vectors_only, as_json) -> None:
    """Groups of photos that are the same picture: exact copies, and resized, recompressed, slightly cropped or
    EXIF-rotated ones. Each group names the one to keep (most pixels, then largest file, then most EXIF fields).

    \b
    Example:
      clipsearch duplicates --json
    """
    with _open(index_dir) as library:
        groups = library.duplicates(threshold, check_pixels=not vectors_only)
    if as_json:
        _echo_json([g.to_dict() for g in groups])
        return
    if not groups:
        click.echo("no duplicates")
        return
    for number, group in enumerate(groups, 1):
        click.echo(f"group {number}: {len(group.ids)} photos, similarity {group.similarity:.3f}")
        for rank, (file_id, path) in enumerate(zip(group.ids, group.paths)):
            click.echo(f"  {'keep' if rank == 0 else '    '}  #{file_id}  {printable(path)}")
    extra = sum(len(g.ids) - 1 for g in groups)
    click.echo(f"{len(groups)} groups; {extra} photos are copies of a kept one")


@click.command()
@INDEX_OPTION
@click.option("--top", "top_k", type=click.IntRange(1, None), default=20, show_default=True,
              help="How many odd ones out to show.")
@JSON_OPTION
@friendly_errors
def outliers(index_dir, top_k, as_json) -> None:
    """The photos least like the rest of the library, most unusual first (score: mean cosine distance to their
    10 nearest photos; higher is odder).

    \b
    Example:
      clipsearch outliers --top 10
    """
    with _open(index_dir) as library:
        found = library.outliers(top_k)
    if as_json:
        _echo_json([o.to_dict() for o in found])
        return
    for outlier in found:
        click.echo(f"{outlier.score:.3f}  #{outlier.id}  {printable(outlier.path)}")


@click.command()
@INDEX_OPTION
@click.option("--count", type=click.IntRange(1, None), help="How many themes (default: chosen from the photos).")
@LABELS_FILE_OPTION
@JSON_OPTION
@friendly_errors
def themes(index_dir, count, labels_file, as_json) -> None:
    """The library in themes: groups of similar photos, each named by a label and shown by its most typical
    photo. Every photo is in exactly one theme.

    \b
    Example:
      clipsearch themes --count 12 --labels my-labels.txt
    """
    labels = _labels_from_file(labels_file)
    with _open(index_dir) as library:
        found = library.themes(count, labels)
    if as_json:
        _echo_json([t.to_dict() for t in found])
        return
    for theme in found:
        others = ", ".join(name for name, _ in theme.labels[1:])
        click.echo(f"{theme.name}  ({theme.size} photos{'; also ' + others if others else ''})")
        click.echo(f"    e.g. #{theme.representative_id}  {printable(theme.representative)}")


@click.command(name="map")
@INDEX_OPTION
@click.option("--recompute", is_flag=True, help="Compute the whole map again instead of updating the saved one.")
@LABELS_FILE_OPTION
@JSON_OPTION
@friendly_errors
def map_command(index_dir, recompute, labels_file, as_json) -> None:
    """2-D coordinates for every photo (a t-SNE map: similar photos close together), with each photo's theme.
    Saved in the index; photos added later are placed into it without moving the others.

    \b
    Example:
      clipsearch map --json > map.json
    """
    labels = _labels_from_file(labels_file)
    with _open(index_dir) as library:
        points = library.map(recompute=recompute, labels=labels)
    if as_json:
        _echo_json([p.to_dict() for p in points])
        return
    for point in points:
        click.echo(f"{point.x:9.3f} {point.y:9.3f}  {point.theme}  #{point.id}  {printable(point.path)}")


@click.command()
@INDEX_OPTION
@click.option("--labels", "labels_text", help='Comma-separated labels, e.g. "beach, snow, city".')
@click.option("--labels-file", type=click.Path(dir_okay=False), help="A plain text file of labels, one per line.")
@click.option("--min-score", type=click.FloatRange(0, 1), help="Lowest score (0..1) a tag needs (default 0.5).")
@click.option("--save", is_flag=True,
              help="Save the tags in the index (replacing earlier tags of these labels), for `search --tag`.")
@JSON_OPTION
@friendly_errors
def tag(index_dir, labels_text, labels_file, min_score, save, as_json) -> None:
    """Zero-shot tags: which of the labels each photo shows, with scores (0..1).

    \b
    Examples:
      clipsearch tag --labels "beach, snow, city" --save
      clipsearch search "people" --tag beach
    """
    from clipsearch.explore.labels import parse_labels

    if bool(labels_text) == bool(labels_file):
        raise click.UsageError("give the labels with either --labels \"a, b, c\" or --labels-file FILE")
    labels = parse_labels(labels_text) if labels_text else _labels_from_file(labels_file)
    with _open(index_dir) as library:
        found = library.tag(labels, min_score, save=save)
        counts = library.tag_counts() if save else None
    if as_json:
        _echo_json([p.to_dict() for p in found])
        return
    for photo in found:
        tags = ", ".join(f"{label} {score:.2f}" for label, score in photo.tags)
        click.echo(f"#{photo.id}  {printable(photo.path)}: {tags}")
    click.echo(f"{len(found)} photos tagged" + (f"; saved: {json.dumps(counts)}" if counts is not None else ""))


def _parse_ks(ctx, param, value: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers like 1,5,10, not {value!r}") from None
    if not ks or ks[0] < 1:
        raise click.BadParameter("each K must be at least 1")
    return ks


@click.command(name="eval")
@click.argument("captions", type=click.Path(dir_okay=False))
@INDEX_OPTION
@click.option("--k", "ks", default="1,5,10", show_default=True, callback=_parse_ks,
              help="The K of recall@K, comma-separated.")
@JSON_OPTION
@friendly_errors
def evaluate(captions, index_dir, ks, as_json) -> None:
    """How well words find the right photo in your own library: text-to-image recall@K and mean reciprocal rank.

    CAPTIONS is JSON lines ({"file": ..., "caption": ...}) or CSV (file,caption); files are relative to the
    captions file or absolute. Index one folder with two models and evaluate both to compare them.

    \b
    Example:
      clipsearch eval my-captions.csv --k 1,5,10
    """
    with _open(index_dir) as library:
        result = library.evaluate(captions, ks)
    if as_json:
        _echo_json(result.to_dict())
        return
    why = ", ".join(f"{n} {reason}" for reason, n in result.reasons.items())
    click.echo(f"captions: {result.n} evaluated, {result.skipped} skipped" + (f" ({why})" if why else ""))
    for k, value in result.recall.items():
        click.echo(f"recall@{k:<4} {value:.3f}")
    click.echo(f"MRR        {result.mrr:.3f}")


COMMANDS = (duplicates, outliers, themes, map_command, tag, evaluate)
