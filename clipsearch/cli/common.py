"""Options, error handling and output helpers shared by the commands. Only the CLI prints or exits."""

from __future__ import annotations

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
    from clipsearch.model.models import IMAGE_BACKENDS, TEXT_BACKENDS

    func = click.option("--reference", is_flag=True,
                        help="Plain open_clip everywhere (no fast paths): the ground truth the fast paths are tested "
                        "against.")(func)
    func = click.option("--text-backend", type=click.Choice(TEXT_BACKENDS), default="auto", show_default=True)(func)
    func = click.option("--image-backend", type=click.Choice(IMAGE_BACKENDS), default="auto", show_default=True,
                        help="auto: ONNX Runtime int8 for large image towers on CPU, else torch.")(func)
    func = click.option("--device", help="torch device, e.g. cpu or cuda:0 (default: CUDA when present).")(func)
    return func


def embed_options(device, image_backend, text_backend, reference):
    from clipsearch.model.models import EmbedOptions  # torch-free: a light search must not import torch

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


class progress_bar:
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


def printable(path: str) -> str:
    """A path safe to print: undecodable bytes shown as escapes, control characters (newlines) escaped."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)
