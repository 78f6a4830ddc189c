"""`clipsearch index`: add photo folders to an index and bring it up to date."""

from __future__ import annotations

import json
import sys

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

FOLDER_MISSING = 3  # exit status: the run completed, but a folder named or known was not there


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@INDEX_OPTION
@model_options
@click.option("--workers", type=click.IntRange(0, 64), help="Decode processes (0: decode in this process).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option("--file-timeout", type=click.FloatRange(1, 3600), default=120, show_default=True,
              help="Seconds one image may take to decode before it is skipped.")
@click.option("--retry-skipped", is_flag=True,
              help="Try again the files skipped for a timeout, a crashed decoder or a read error (others stay).")
@engine_options
@click.option("--engine", "run_on", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where decoding and embedding run: this machine, or a Ray cluster (pip install clipsearch[ray]).")
@click.option("--ray-address", help="Ray cluster to use with --engine ray: auto, HOST:6379 or ray://HOST:10001 "
              "(default: start Ray on this machine).")
@JSON_OPTION
@friendly_errors
def index(paths, index_dir, model, pretrained, checkpoint, workers, batch_size, file_timeout, retry_skipped, device,
          image_backend, text_backend, reference, run_on, ray_address, as_json) -> None:
    """Index photo folders: embed new and changed images, drop deleted ones, follow moved ones.

    Without PATHS, every folder the index already knows is refreshed. A folder that is not there (an
    unplugged drive) does not stop the others, and nothing indexed under it is removed.

    \b
    Exit status: 0 done (skipped files included); 3 done, but a folder was missing; 1 error; 2 bad usage.

    \b
    Example:
      clipsearch index ~/Pictures /mnt/photos --index ~/photo-index
      clipsearch index --retry-skipped
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
    # Refreshing needs an index to refresh: never create an empty one for that.
    library = Library.open(index_dir, model=spec, create=bool(paths), embed_options=engine)
    with library, progress_bar() as progress:
        embedding = None
        if run_on == "ray":
            from clipsearch.ingest.ray_engine import ModelLoader, RayEngine

            embedding = RayEngine(ray_address, load_model=ModelLoader(library.model, engine))
        options = IndexOptions(batch_size=batch_size, workers=workers, file_timeout=file_timeout,
                               retry_skipped=retry_skipped, engine=embedding)
        report = library.index(paths or None, options, progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if report.missing_roots:
        sys.exit(FOLDER_MISSING)


def _print_report(report) -> None:
    click.echo(
        f"indexed {report.indexed}, unchanged {report.unchanged}, moved {report.moved}, "
        f"removed {report.removed}, skipped {len(report.skipped)} in {report.seconds:.1f}s"
    )
    for root in report.missing_roots:
        click.echo(f"  folder not available (nothing under it was removed): {printable(root)}")
    for path, reason in report.skipped[:20]:
        click.echo(f"  skipped {printable(path)}: {reason}")
    if len(report.skipped) > 20:
        click.echo(f"  ... {len(report.skipped) - 20} more; `clipsearch status` lists them all")
