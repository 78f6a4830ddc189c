"""The offline demo: generates a library, indexes it with the bundled model and shows real results."""

from __future__ import annotations

from click.testing import CliRunner

from clipsearch.cli import main


def test_demo_indexes_and_searches_offline(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path), "--count", "60", "--no-serve"])
    assert result.exit_code == 0, result.output
    assert "indexed 60, unchanged 0, skipped 0" in result.output
    lines = result.output.splitlines()
    # the first result under "red" shows a red shape (red in front, not a red background)
    first_hit = lines[lines.index("search: red") + 1]
    assert " red " in first_hit.split(" over ")[0]
    # an image query finds that image first, with score 1
    image_query = next(i for i, line in enumerate(lines) if line.startswith("search: /"))
    assert lines[image_query + 1].strip().startswith("1.000")
    again = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path), "--count", "60", "--no-serve"])
    assert again.exit_code == 0 and "indexed 0, unchanged 60" in again.output
