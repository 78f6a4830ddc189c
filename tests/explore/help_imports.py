"""Run by tests/explore/test_cli.py in a fresh process: --help of every explore command, then print which heavy
modules got imported (none should)."""

import sys

from click.testing import CliRunner

from clipsearch.cli import main

for command in ("duplicates", "outliers", "themes", "map", "tag", "eval"):
    assert CliRunner().invoke(main, [command, "--help"]).exit_code == 0, command
print(sorted(m for m in ("torch", "sklearn", "openTSNE", "faiss") if m in sys.modules))
