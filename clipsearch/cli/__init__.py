"""The ``clipsearch`` command: a thin shell over the library, one module per command group.

Only this package prints or exits; heavy modules (torch, open_clip, Gradio) load inside the commands.
"""

from __future__ import annotations

import logging

import click

from clipsearch.cli.explore import COMMANDS as EXPLORE_COMMANDS
from clipsearch.cli.index import index
from clipsearch.cli.search import search
from clipsearch.cli.serve import demo, serve
from clipsearch.cli.status import status
from clipsearch.cli.world import synthetic


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


for command in (index, search, status, synthetic, demo, serve, *EXPLORE_COMMANDS):
    main.add_command(command)
