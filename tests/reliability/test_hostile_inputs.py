"""A library full of hostile files: the run goes on, every good file is indexed once, every skip has a reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from clipsearch import IndexOptions
from clipsearch.cli import main
from tests.reliability.conftest import catalog_paths, needs_root, rel
from tests.reliability.hostile import NON_UTF8_NAME, encoded, picture

REPO = Path(__file__).resolve().parents[2]


def check_outcome(library, expected) -> None:
    rows = {rel(expected, p): v for p, v in catalog_paths(library).items()}
    indexed = {p for p, (status, _) in rows.items() if status == "ok"}
    assert indexed == expected.good
    skipped = {p: reason for p, (status, reason) in rows.items() if status == "skipped"}
    assert set(skipped) == set(expected.skipped)
    for path, fragment in expected.skipped.items():
        assert fragment in skipped[path], (path, skipped[path])


def test_hostile_library_indexes_every_good_file_and_gives_every_skip_a_reason(hash_library, hostile):
    library = hash_library()
    started = time.monotonic()
    report = library.index([hostile.root], IndexOptions(workers=2, batch_size=8))
    assert time.monotonic() - started < 60  # nothing blocked on the FIFO, nothing walked 400 GIF frames
    check_outcome(library, hostile)
    assert report.indexed == len(hostile.good)
    assert {rel(hostile, os.fsencode(p)) for p, _ in report.skipped} == set(hostile.skipped)
    assert all(reason for _, reason in report.skipped)
    hits = library.search("anything", top_k=1000)
    assert len(hits) == len(hostile.good) == len({h.path for h in hits})  # each real file exactly once
    assert not any("outside" in h.path for h in hits)


def test_rerun_over_hostile_library_changes_nothing_and_embeds_nothing(hash_library, hostile):
    library = hash_library()
    library.index([hostile.root], IndexOptions(workers=1))
    calls = library.embedder.calls
    report = library.index([hostile.root], IndexOptions(workers=1))
    assert (report.indexed, report.removed, report.skipped) == (0, 0, [])
    assert report.unchanged >= len(hostile.good)  # stored skips of unchanged files count as unchanged too
    assert library.embedder.calls == calls
    check_outcome(library, hostile)


def test_inline_decoding_handles_the_same_hostile_library(hash_library, hostile):
    library = hash_library()
    library.index([hostile.root], IndexOptions(workers=0))
    check_outcome(library, hostile)


def test_status_json_lists_every_skip_with_its_reason_including_non_utf8_names(hash_library, hostile):
    library = hash_library()
    library.index([hostile.root], IndexOptions(workers=1))
    result = CliRunner().invoke(main, ["status", "--index", str(library.directory), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    listed = {rel(hostile, os.fsencode(item["path"])): item["reason"] for item in status["skipped"]}
    assert set(listed) == set(hostile.skipped)
    assert all(listed.values())
    assert status["files"] == len(hostile.good)
    text = CliRunner().invoke(main, ["status", "--index", str(library.directory)])
    assert text.exit_code == 0
    assert "broken/truncated.png" in text.output and "special/fifo.jpg: not a regular file" in text.output
    assert not any(line.startswith("line.jpg") for line in text.output.splitlines())  # newline escaped
    # the non-UTF-8 name is indexed and its raw bytes survive the round trip through the catalog
    paths = {os.fsencode(h.path) for h in library.search("x", top_k=1000)}
    assert os.path.join(os.fsencode(hostile.root), b"names", NON_UTF8_NAME) in paths


@needs_root
def test_unreadable_files_and_folders_are_skipped_and_known_files_inside_are_kept(hash_library, tmp_path):
    """Root ignores permissions, so the run happens in a child that has dropped CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (setpriv): it is then held to the owner bits like any user."""
    root = tmp_path / "photos"
    (root / "locked").mkdir(parents=True)
    (root / "ok.jpg").write_bytes(encoded(picture(1), "JPEG"))
    (root / "secret.jpg").write_bytes(encoded(picture(2), "JPEG"))
    (root / "locked" / "inside.jpg").write_bytes(encoded(picture(3), "JPEG"))
    library = hash_library()
    library.index([root], IndexOptions(workers=1))  # first, as full root: everything readable
    library.close()
    assert len(catalog_paths(library)) == 3
    os.utime(root / "secret.jpg", (1, 1))  # changed since: it must be read again, and cannot be
    os.chmod(root / "secret.jpg", 0)
    os.chmod(root / "locked", 0)
    try:
        drop = "-dac_override,-dac_read_search"
        out = subprocess.run(
            ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", sys.executable, "-m",
             "tests.programs.index_with_hash_model", str(library.directory), str(root)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
        )
    finally:
        os.chmod(root / "locked", 0o755)
        os.chmod(root / "secret.jpg", 0o644)
    result = json.loads(out.stdout)
    reasons = {os.path.relpath(s["path"], root): s["reason"] for s in result["report"]["skipped"]}
    assert reasons == {"secret.jpg": "could not be read: permission denied",
                       "locked": "folder unreadable: permission denied"}
    assert result["report"]["removed"] == 0  # the file inside the unreadable folder is kept, not "deleted"
    assert sorted(os.path.relpath(p, root) for p in result["files"]) == ["locked/inside.jpg", "ok.jpg"]
