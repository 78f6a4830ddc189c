"""The ``clipsearch`` command: a thin shell over the library. Only this module prints or exits."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

from clipsearch.errors import ClipsearchError

INDEX_OPTION = click.option(
    "--index", "index_dir", type=click.Path(file_okay=False, path_type=Path), envvar="CLIPSEARCH_INDEX",
    help="Index folder (env CLIPSEARCH_INDEX). Default: index/default in a checkout, else ~/.local/share/clipsearch.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def model_options(func: Callable) -> Callable:
    """--model / --pretrained / --checkpoint, shared by the commands that may create an index."""
    func = click.option("--checkpoint", type=click.Path(dir_okay=False), help="Local open_clip checkpoint file.")(func)
    func = click.option("--pretrained", help="open_clip pretrained tag, e.g. laion2b_s34b_b79k.")(func)
    func = click.option(
        "--model", envvar="CLIPSEARCH_MODEL",
        help="open_clip model name, NAME/TAG, hf-hub:ORG/REPO, or clipsearch-tiny (env CLIPSEARCH_MODEL). "
        "Default for a new index: ViT-B-32/laion2b_s34b_b79k.",
    )(func)
    return func


def engine_options(func: Callable) -> Callable:
    """--device / --image-backend / --text-backend / --reference: how the model runs (never what it computes)."""
    from clipsearch.models import IMAGE_BACKENDS, TEXT_BACKENDS

    func = click.option("--reference", is_flag=True,
                        help="Plain open_clip everywhere (no fast paths): the ground truth the fast paths are tested "
                        "against.")(func)
    func = click.option("--text-backend", type=click.Choice(TEXT_BACKENDS), default="auto", show_default=True)(func)
    func = click.option("--image-backend", type=click.Choice(IMAGE_BACKENDS), default="auto", show_default=True,
                        help="auto: ONNX Runtime int8 for large image towers on CPU, else torch.")(func)
    func = click.option("--device", help="torch device, e.g. cpu or cuda:0 (default: CUDA when present).")(func)
    return func


def _embed_options(device, image_backend, text_backend, reference):
    from clipsearch.embed import EmbedOptions

    return EmbedOptions(device=device, reference=reference, image_backend=image_backend, text_backend=text_backend)


def friendly_errors(func: Callable) -> Callable:
    """Turn library errors into one line on stderr and exit code 1; never a traceback."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ClipsearchError as exc:
            click.echo(f"clipsearch: error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("clipsearch: interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clipsearch")
def main() -> None:
    """Local-first image search with CLIP: find photos by words, by example image, or both.

    \b
    Example:
      clipsearch index ~/Pictures
      clipsearch search "a dog on a beach" - people
    """
    # open_clip and huggingface_hub log download retries to the root logger; the CLI reports errors itself.
    logging.getLogger().addHandler(logging.NullHandler())


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@INDEX_OPTION
@model_options
@click.option("--workers", type=click.IntRange(0, 64), help="Decode processes (0: decode in this process).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option("--file-timeout", type=click.FloatRange(1, 3600), default=120, show_default=True,
              help="Seconds one image may take to decode before it is skipped.")
@engine_options
@JSON_OPTION
@friendly_errors
def index(paths, index_dir, model, pretrained, checkpoint, workers, batch_size, file_timeout, device, image_backend,
          text_backend, reference, as_json) -> None:
    """Index photo folders: embed new and changed images, drop deleted ones, follow moved ones.

    \b
    Example:
      clipsearch index ~/Pictures /mnt/photos --index ~/photo-index
    """
    from clipsearch.indexer import IndexOptions
    from clipsearch.library import Library
    from clipsearch.models import ModelSpec

    spec = ModelSpec.parse(model, pretrained, checkpoint) if (model or checkpoint or pretrained) else None
    engine = _embed_options(device, image_backend, text_backend, reference)
    library = Library.open(index_dir, model=spec, create=True, embed_options=engine)
    if library.model is None:  # a new index: the default model
        library.close()
        library = Library.open(library.directory, model=ModelSpec.parse(None), create=True, embed_options=engine)
    with library, _progress_bar() as progress:
        options = IndexOptions(batch_size=batch_size, workers=workers, file_timeout=file_timeout)
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
        click.echo(f"  skipped {_printable(path)}: {reason}")
    if len(report.skipped) > 20:
        click.echo(f"  ... {len(report.skipped) - 20} more; `clipsearch status` lists them all")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("query", nargs=-1, required=True, type=click.UNPROCESSED)
@INDEX_OPTION
@click.option("--top", "top_k", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--min-score", type=float, help="Hide results below this cosine similarity.")
@click.option("--folder", type=click.Path(), help="Only results under this folder.")
@engine_options
@JSON_OPTION
@friendly_errors
def search(query, index_dir, top_k, min_score, folder, device, image_backend, text_backend, reference, as_json) -> None:
    """Search by words, example images, or both, combined with + and - and weights.

    \b
    Examples:
      clipsearch search "beach" + "sunset" - "people"
      clipsearch search ./photo.jpg + "at night"
      clipsearch search 2:"red car" ./ref.jpg --top 5 --json
    """
    from clipsearch.library import Library, SearchFilter

    engine = _embed_options(device, image_backend, text_backend, reference)
    with Library.open(index_dir, embed_options=engine) as library:
        hits = library.search(list(query), top_k=top_k, min_score=min_score, where=SearchFilter(folder=folder))
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    if not hits:
        click.echo("no results")
    for hit in hits:
        click.echo(f"{hit.score:.3f}  {_printable(hit.path)}")


@main.command()
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
    for root in info.roots:
        click.echo(f"root:    {_printable(root)}")
    if info.last_run and info.last_run.get("summary"):
        click.echo(f"last run: {json.dumps(info.last_run['summary'])}")
    for path, reason in info.skipped:
        click.echo(f"skipped: {_printable(path)}: {reason}")


@main.command()
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
    from clipsearch.synthetic import generate_library

    records = generate_library(out_dir, count, seed)
    click.echo(f"wrote {len(records)} images and captions.jsonl to {out_dir}")


@main.command()
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

    with _progress_bar() as progress:
        result = run_demo(demo_dir, count, progress=progress, echo=click.echo)
    if serve:
        _serve(result.library, host, port, password=None)


@main.command()
@INDEX_OPTION
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --password.")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True)
@click.option("--password", envvar="CLIPSEARCH_PASSWORD", help="Required when listening beyond this machine.")
@engine_options
@friendly_errors
def serve(index_dir, host, port, password, device, image_backend, text_backend, reference) -> None:
    """Open the web app on an index.

    \b
    Example:
      clipsearch serve --index ~/photo-index --port 7860
    """
    # One thread per request beats thread pools fighting over 2 cores under concurrent queries (DESIGN.md); it
    # must be set before torch or faiss is imported, which is why only this outermost shell does it.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from clipsearch.library import Library

    engine = _embed_options(device, image_backend, text_backend, reference)
    _serve(Library.open(index_dir, embed_options=engine), host, port, password)


def _serve(library, host: str, port: int, password: str | None) -> None:
    try:
        from ui.app import launch
    except ImportError as exc:
        raise ClipsearchError(f"the web app is not available ({exc})") from None
    launch(library, host=host, port=port, password=password)


class _progress_bar:
    """A tqdm bar on stderr (only on a terminal), fed by the library's ``progress(done, total)`` callback."""

    def __enter__(self):
        self._bar = None
        return self

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None and total:
            self._bar = tqdm(total=total, unit="img", desc="embedding", file=sys.stderr, disable=None)
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.close()


def _printable(path: str) -> str:
    """A path safe to print: undecodable bytes shown as escapes, control characters (newlines) escaped."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)
