"""`clipsearch serve` and `clipsearch demo`: the web app (imported only when a command runs)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from clipsearch.cli.common import (
    INDEX_OPTION,
    embed_options,
    engine_options,
    friendly_errors,
    progress_bar,
)
from clipsearch.errors import ClipsearchError


def _check_allowed_hosts(ctx, param, values) -> tuple[str, ...]:
    from ui.security import check_allowed_host

    try:
        return tuple(check_allowed_host(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--dir", "demo_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the demo photos and index go (default: index/demo in a checkout).")
@click.option("--count", type=click.IntRange(10, 100_000), default=300, show_default=True)
@click.option("--serve/--no-serve", default=True, show_default=True, help="Open the web app at the end.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True)
@friendly_errors
def demo(demo_dir, count, serve, host, port) -> None:
    """Offline demo: generate a sample library, index it with the bundled model, search it, open the web app.

    \b
    Example:
      clipsearch demo --no-serve
    """
    from clipsearch.demo import run_demo

    if serve:
        _check_port(host, port)
    with progress_bar() as progress:
        result = run_demo(demo_dir, count, progress=progress, echo=click.echo)
    if serve:
        serve_library(result.library, host, port, password=None)


@click.command()
@INDEX_OPTION
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --password.")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True)
@click.option("--password", envvar="CLIPSEARCH_PASSWORD", help="Required when listening beyond this machine.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME", callback=_check_allowed_hosts,
              help="Another name the app may be reached by (repeatable), e.g. photos.lan. The app answers only "
              "requests naming loopback, the --host address or these (a guard against DNS rebinding).")
@engine_options
@friendly_errors
def serve(index_dir, host, port, password, allowed_hosts, device, image_backend, text_backend, reference) -> None:
    """Open the web app on an index.

    \b
    Example:
      clipsearch serve --index ~/photo-index --port 7860
      clipsearch serve --host 0.0.0.0 --password 's3cret' --allowed-host photos.lan
    """
    _check_port(host, port)  # in a moment, before the model loads (seconds) and Gradio is imported
    # One thread per request beats thread pools fighting over 2 cores under concurrent queries (DESIGN.md); it
    # must be set before torch or faiss is imported, which is why only this outermost shell does it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from clipsearch.library import Library

    engine = embed_options(device, image_backend, text_backend, reference)
    serve_library(Library.open(index_dir, embed_options=engine), host, port, password, allowed_hosts)


def serve_library(library, host: str, port: int, password: str | None, allowed_hosts=()) -> None:
    try:
        from ui.app import serve
    except ImportError as exc:
        raise ClipsearchError(f"the web app is not available ({exc})") from None
    serve(library, host=host, port=port, password=password, allowed_hosts=allowed_hosts)  # no share-link hint


def _check_port(host: str, port: int) -> None:
    from ui.security import check_port_free

    check_port_free(host, port)
