"""Decode workers: a crashing or hanging decoder costs one file; files that vanish or change mid-read."""

from __future__ import annotations

import os
import time

from clipsearch import IndexOptions
from clipsearch.imaging.decode import DecodeOptions, PixelSpec
from clipsearch.ingest.workers import prepare_file
from clipsearch.store.catalog import FileStat
from tests.reliability.conftest import catalog_paths
from tests.reliability.hostile import crash_on_marked, encoded, hang_on_marked, mutate_on_marked, picture


def fill(root, names):
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (root / name).write_bytes(encoded(picture(i), "PNG"))


def outcome(library):
    return {os.path.basename(os.fsdecode(p)): v for p, v in catalog_paths(library).items()}


def test_a_decoder_that_crashes_its_process_costs_only_that_file(hash_library, tmp_path):
    names = [f"good-{i:02}.png" for i in range(20)]
    fill(tmp_path / "photos", names + ["crash-1.png", "crash-2.png"])
    library = hash_library()
    report = library.index([tmp_path / "photos"], IndexOptions(workers=2, batch_size=4, prepare=crash_on_marked))
    rows = outcome(library)
    assert {n for n, (s, _) in rows.items() if s == "ok"} == set(names)
    assert rows["crash-1.png"] == rows["crash-2.png"] == ("skipped", "the image decoder crashed on this file")
    assert report.indexed == 20 and len(report.skipped) == 2


def test_a_hanging_decoder_times_out_per_file_and_the_run_goes_on(hash_library, tmp_path):
    names = [f"good-{i:02}.png" for i in range(12)]
    fill(tmp_path / "photos", names + ["hang.png"])
    library = hash_library()
    started = time.monotonic()
    # The deadline is generous for good files on a loaded 2-core machine; the hanging one never finishes.
    library.index([tmp_path / "photos"], IndexOptions(workers=2, file_timeout=5, prepare=hang_on_marked))
    assert time.monotonic() - started < 60
    rows = outcome(library)
    assert {n for n, (s, _) in rows.items() if s == "ok"} == set(names)
    status, reason = rows["hang.png"]
    assert status == "skipped" and "longer than 5 s" in reason


def test_files_that_vanish_or_change_while_being_read_are_skipped_then_picked_up(hash_library, tmp_path):
    fill(tmp_path / "photos", ["keep.png", "vanish.png", "change.png"])
    library = hash_library()
    library.index([tmp_path / "photos"], IndexOptions(workers=1, prepare=mutate_on_marked))
    rows = outcome(library)
    assert rows["keep.png"][0] == "ok"
    assert rows["vanish.png"] == ("skipped", "file vanished before it could be read")
    assert rows["change.png"][0] == "ok"  # replaced before the read: the new content is what got stored
    report = library.index([tmp_path / "photos"], IndexOptions(workers=1))
    assert report.removed == 1 and "vanish.png" not in outcome(library)
    assert report.indexed == 0  # the changed file was stored with the stat of what was actually read


def test_a_file_growing_during_the_read_is_refused_not_half_stored(tmp_path, monkeypatch):
    path = tmp_path / "growing.png"
    path.write_bytes(encoded(picture(1), "PNG"))
    stat = FileStat.of(str(path), os.stat(path))
    real_fstat = os.fstat
    calls = []

    def fstat_that_sees_growth(fd):
        calls.append(fd)
        if len(calls) == 2:  # the check after the read: someone appended meanwhile
            with open(path, "ab") as handle:
                handle.write(b"more bytes")
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", fstat_that_sees_growth)
    prepared = prepare_file(stat, PixelSpec(32), DecodeOptions())
    assert prepared.error == "file changed while it was being read; it is retried on the next run"
