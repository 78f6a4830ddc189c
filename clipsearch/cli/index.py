"""`clipsearch index`: add photo folders to an index and bring it up to date."""

from __future__ import annotations

import json

import click

from clipsearch.cli.common import (
    INDEX_OPTION,
    JSON_OPTION,
    embed_options,
    engine_options,
    friendly_errors,
    model_options,
    printable,
    progress_bar,
)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@INDEX_OPTION
@model_options
@click.option("--workers", type=click.IntRange(0, 64), help="Decode processes (0: decode in this process).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option("--file-timeout", type=click.FloatRange(1, 3600), default=120, show_default=True,
              help="Seconds one image may take to decode before it is skipped.")
@engine_options
@click.option("--engine", "run_on", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where decoding and embedding run: this machine, or a Ray cluster (pip install clipsearch[ray]).")
@click.option("--ray-address", help="Ray cluster to use with --engine ray: auto, HOST:6379 or ray://HOST:10001 "
              "(default: start Ray on this machine).")
@JSON_OPTION
@friendly_errors
def index(paths, index_dir, model, pretrained, checkpoint, workers, batch_size, file_timeout, device, image_backend,
          text_backend, reference, run_on, ray_address, as_json) -> None:
    """Index photo folders: embed new and changed images, drop deleted ones, follow moved ones.

    \b
    Example:
      clipsearch index ~/Pictures /mnt/photos --index ~/photo-index
      clipsearch index /shared/photos --engine ray --ray-address auto
    """
    from clipsearch.ingest.run import IndexOptions
    from clipsearch.library import Library
    from clipsearch.model.models import ModelSpec

    spec = ModelSpec.parse(model, pretrained, checkpoint) if (model or checkpoint or pretrained) else None
    engine = embed_options(device, image_backend, text_backend, reference)
    if ray_address and run_on != "ray":
        raise click.UsageError("--ray-address needs --engine ray")
    if run_on == "ray":
        from clipsearch.ingest.ray_engine import import_ray

        import_ray()  # without Ray: one line on how to install it, before anything is opened
    library = Library.open(index_dir, model=spec, create=True, embed_options=engine)
    with library, progress_bar() as progress:
        embedding = None
        if run_on == "ray":
            from clipsearch.ingest.ray_engine import ModelLoader, RayEngine

            embedding = RayEngine(ray_address, load_model=ModelLoader(library.model, engine))
        options = IndexOptions(batch_size=batch_size, workers=workers, file_timeout=file_timeout, engine=embedding)
        report = library.index(paths, options, progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(
        f"indexed {report.indexed}, unchanged {report.unchanged}, moved {report.moved}, "
        f"removed {report.removed}, skipped {len(report.skipped)} in {report.seconds:.1f}s"
    )
    for root in report.missing_roots:
        click.echo(f"  root not available (kept its files): {root}")
    for path, reason in report.skipped[:20]:
        click.echo(f"  skipped {printable(path)}: {reason}")
    if len(report.skipped) > 20:
        click.echo(f"  ... {len(report.skipped) - 20} more; `clipsearch status` lists them all")
