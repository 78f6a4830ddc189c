"""No-op rescan: ``clipsearch index`` over a folder of 10,000 tiny files that have not changed since the last run.

This is the cost of every "refresh" a user runs: walk the folders, stat every file, compare with the catalog,
write nothing. The index is made by the CLI with the bundled clipsearch-tiny model, as a user's would be; then
each round times, alternating: a cold CLI process ``clipsearch index FOLDER --index DIR`` (what a user meets:
interpreter start, imports, open, rescan), the process floor (``clipsearch --help``), the walk alone
(``scan_root``), and in this process a no-op ``Library.index()`` on a warm library and with a fresh
``Library.open``.

    python -m benchmarks.bench_rescan                  # 10,000 files
    python -m benchmarks.bench_rescan --count 50000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import _common


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
    index = os.path.join(scratch, "index")
    cli = [sys.executable, "-m", "clipsearch"]
    env = dict(os.environ, PYTHONPATH=str(_common.REPO), HF_HUB_OFFLINE="1",
               CLIPSEARCH_CACHE=os.path.join(scratch, "cache"))

    def timed(command: list[str]) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        return time.perf_counter() - started, done.stdout

    try:
        first_s, out = timed([*cli, "index", folder, "--index", index, "--model", "clipsearch-tiny", "--json"])
        assert json.loads(out)["indexed"] == count, out[-500:]
        library = Library.open(index)  # the stored model; a no-op run never loads it

        def cli_rescan(_round):
            seconds, out = timed([*cli, "index", folder, "--index", index, "--json"])
            report = json.loads(out)
            assert report["indexed"] == 0 and report["unchanged"] == count, report
            return seconds

        def warm_rescan(_round):
            started = time.perf_counter()
            report = library.index()
            assert report.unchanged == count and report.indexed == 0, report.to_dict()
            return time.perf_counter() - started

        def fresh_rescan(_round):
            started = time.perf_counter()
            fresh = Library.open(index)
            fresh.index()
            fresh.close()
            return time.perf_counter() - started

        def walk(_round):
            started = time.perf_counter()
            scan_root(folder)
            return time.perf_counter() - started

        result = _common.alternate({"cli": cli_rescan, "help": lambda _round: timed([*cli, "--help"])[0],
                                    "walk": walk, "rescan": warm_rescan, "fresh": fresh_rescan}, repeats)
        library.close()
        return {"first_s": first_s, **result}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    r = _common.run_isolated("benchmarks.bench_rescan", "run", count=args.count, repeats=args.repeats)
    walk = _common.median(r["walk"])
    rows = [[label, _common.spread(r[key], 3), _common.median(r[key]) / walk] for label, key in (
        ("cold CLI process: clipsearch index FOLDER --index DIR (nothing changed)", "cli"),
        ("  its floor: a cold clipsearch --help", "help"),
        ("walk only (scan_root)", "walk"),
        ("no-op Library.index() (warm library, in process)", "rescan"),
        ("Library.open + no-op index() + close (in process)", "fresh"),
    )]
    return _common.print_table(
        f"No-op rescan of {args.count:,} unchanged tiny files ({args.repeats} alternating rounds)",
        ["step", "seconds, median (range)", "× walk"],
        rows,
        note=f"Index made first by `clipsearch index FOLDER --model clipsearch-tiny` in {r['first_s']:.1f} s. "
             "Load average at the end: " + f"{os.getloadavg()[0]:.1f}.",
    )


if __name__ == "__main__":
    main()
