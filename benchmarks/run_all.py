"""Run every benchmark and print their tables: ``python -m benchmarks`` (about 25 minutes on 2 cores).

    python -m benchmarks                 # default sizes
    python -m benchmarks --full          # full sizes: 400 photos + sweep, 10k/100k/1M vectors, 50k files
    python -m benchmarks --only query rescan
    python -m benchmarks --only rclip        # the race against rclip 3.3.0 (installs it into its own venv)
    python -m benchmarks --only explore        # 100k vectors: duplicates, odd ones out, themes, map
    python -m benchmarks --only map_draw       # the web app's map drawing 100k points in Chromium
    python -m benchmarks --markdown results.md   # also write the tables to a file
    python -m benchmarks --only index --save     # keep the raw output: benchmarks/results/index-<time>.txt

Each benchmark measures its baseline in the same run, in fresh processes, so ratios hold on a busy machine
better than absolute figures do. Generated folders and checkpoints are cached in $CLIPSEARCH_BENCH_DIR
(default /tmp/clipsearch-bench); exported ONNX towers in the user cache ($CLIPSEARCH_CACHE).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from benchmarks import (
    _common,
    bench_ann,
    bench_explore,
    bench_fidelity,
    bench_index,
    bench_map_draw,
    bench_query,
    bench_rclip,
    bench_refresh,
    bench_rescan,
)

ORDER = ("fidelity", "rescan", "refresh", "query", "index", "rclip", "ann", "explore", "map_draw")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full sizes (about 30-40 minutes)")
    parser.add_argument("--only", nargs="+", choices=ORDER, default=list(ORDER), metavar="NAME",
                        help=f"run only these benchmarks: {', '.join(ORDER)}")
    parser.add_argument("--markdown", help="also write every table to this file")
    parser.add_argument("--save", action="store_true",
                        help="keep each benchmark's output in benchmarks/results/NAME-YYYYMMDD-HHMM.txt, with the "
                             "command and the load before and after (the figures RESULTS.md quotes come from these)")
    args = parser.parse_args(argv)
    runs = {
        "fidelity": lambda: bench_fidelity.main([]),
        "rescan": lambda: bench_rescan.main(["--count", "50000"] if args.full else []),
        "refresh": lambda: bench_refresh.main([]),
        "query": lambda: bench_query.main(["--sizes", "10000", "100000", "1000000"] if args.full else []),
        "index": lambda: bench_index.main(["--full", "--sweep"] if args.full else []),
        "rclip": lambda: bench_rclip.main(["--count", "300"] if args.full else []),
        "ann": lambda: bench_ann.main(["--big", "2000000"] if args.full else []),
        "explore": lambda: bench_explore.main([] if args.full else ["--no-umap"]),
        "map_draw": lambda: bench_map_draw.main([]),
    }
    tables = []
    started = time.monotonic()
    for name in ORDER:
        if name in args.only:
            began, load_before, stamp = time.monotonic(), os.getloadavg(), time.strftime("%Y%m%d-%H%M")
            tables.append(runs[name]())
            took = time.monotonic() - began
            print(f"[{name}: {took:.0f} s]\n", file=sys.stderr, flush=True)
            if args.save:
                _save(name, stamp, tables[-1], load_before, took, args.full)
    print(f"[all: {time.monotonic() - started:.0f} s]", file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write("\n".join(tables))
    return 0


def _save(name: str, stamp: str, table: str, load_before: tuple, took: float, full: bool) -> None:
    results = _common.REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    command = f"python -m benchmarks{' --full' if full else ''} --only {name} --save"
    before, after = ("load average %.2f %.2f %.2f" % load for load in (load_before, os.getloadavg()))
    (results / f"{name}-{stamp}.txt").write_text(
        f"$ {command}\n# {_common.machine()}; before: {before}; after: {after}; {took:.0f} s\n\n{table}",
        encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
