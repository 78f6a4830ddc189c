"""The offline demo: generates a library, indexes it with the bundled model and shows real results."""

from __future__ import annotations

from click.testing import CliRunner

from clipsearch.cli import main


def test_demo_indexes_and_searches_offline(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path), "--count", "60", "--no-serve"])
    assert result.exit_code == 0, result.output
    assert "indexed 60, unchanged 0, skipped 0" in result.output
    assert "search: a red circle" in result.output
    # the first result line under the red-circle query is a red circle
    lines = result.output.splitlines()
    first_hit = lines[lines.index("search: a red circle") + 1]
    assert "red circle" in first_hit
    again = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path), "--count", "60", "--no-serve"])
    assert again.exit_code == 0 and "indexed 0, unchanged 60" in again.output
