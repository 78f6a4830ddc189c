"""No-op rescan: ``Library.index()`` over a folder of 10,000 tiny files that have not changed since the last run.

This is the cost of every "refresh" a user runs: walk the folders, stat every file, compare with the catalog,
write nothing. The model is a trivial stand-in (the real one is never called on a no-op run), handed in already
loaded; a separate row times the first step alone (the walk) as the floor, and one a fresh ``Library.open``.

    python -m benchmarks.bench_rescan                  # 10,000 files
    python -m benchmarks.bench_rescan --count 50000
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time

import numpy as np

from benchmarks import _common


def stand_in_embedder():
    """The EmbeddingModel interface with no model: a unit vector from a hash of the pixels."""
    from clipsearch.model.models import ModelSpec
    from clipsearch.testing import HashEmbedder

    return HashEmbedder(ModelSpec("bench-stand-in", "none"), size=16)


def tiny_files_folder(count: int, seed: int = 0) -> str:
    """``count`` distinct 16x16 JPEGs spread over 40 folders (cached between runs)."""
    from PIL import Image

    folder = _common.work_dir() / f"tiny-files-{count}-seed{seed}"
    if (folder / ".complete").is_file():
        return str(folder)
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=80)
    base = buffer.getvalue()
    for i in range(count):
        sub = folder / f"day-{i % 40:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        # A JPEG comment segment right after SOI keeps every file distinct and still valid.
        comment = f"clipsearch bench file {i}".encode()
        data = base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]
        (sub / f"IMG_{i:06d}.jpg").write_bytes(data)
    (folder / ".complete").write_text("ok")
    return str(folder)


def run(count: int, repeats: int) -> dict:
    from clipsearch import Library
    from clipsearch.ingest.scan import scan_root

    folder = os.path.realpath(tiny_files_folder(count))
    scratch = tempfile.mkdtemp(prefix="bench-rescan-")
    embedder = stand_in_embedder()
    try:
        library = Library.open(os.path.join(scratch, "index"), model=embedder.spec, create=True)
        library.use_embedder(embedder)
        t = time.perf_counter()
        first = library.index([folder])
        first_s = time.perf_counter() - t
        assert first.indexed == count, first.to_dict()
        rescans, walks, opens = [], [], []
        for _ in range(repeats):
            t = time.perf_counter()
            report = library.index()
            rescans.append(time.perf_counter() - t)
            assert report.unchanged == count and report.indexed == 0, report.to_dict()
            t = time.perf_counter()
            scan_root(folder)
            walks.append(time.perf_counter() - t)
            t = time.perf_counter()
            fresh = Library.open(os.path.join(scratch, "index"))
            fresh.use_embedder(embedder)
            fresh.index()
            fresh.close()
            opens.append(time.perf_counter() - t)
        library.close()
        return {"first_s": first_s, "rescan": rescans, "walk": walks, "fresh": opens}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    r = _common.run_isolated("benchmarks.bench_rescan", "run", count=args.count, repeats=args.repeats)
    walk = _common.median(r["walk"])
    rows = [
        ["walk only (scan_root): the floor", walk, 1.0],
        ["no-op Library.index() (warm library)", _common.median(r["rescan"]), _common.median(r["rescan"]) / walk],
        ["Library.open + no-op index() + close", _common.median(r["fresh"]), _common.median(r["fresh"]) / walk],
    ]
    return _common.print_table(
        f"No-op rescan of {args.count:,} unchanged tiny files (median of {args.repeats})",
        ["step", "seconds", "× walk"],
        rows,
        note=f"First full index of the folder (stand-in model, no decoding cost to speak of): {r['first_s']:.1f} s.",
    )


if __name__ == "__main__":
    main()
