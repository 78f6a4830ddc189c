"""Warm text queries through rclip's own Python API; run by ``bench_rclip`` with the rclip venv's Python.

    RCLIP_DATADIR=... rclip-venv/bin/python benchmarks/rclip_warm.py DIRECTORY --fill 100000 --repeats 40 QUERY...

``--fill N`` first adds N rows of random unit vectors under DIRECTORY to rclip's database (once; the rows are
what rclip's indexer would have stored), so a warm query scans as many vectors as clipsearch's does. Prints one
JSON object: the per-query milliseconds. Imports nothing of clipsearch.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def fill(database, directory: str, count: int, dim: int = 512, seed: int = 0) -> None:
    have = database._con.execute("SELECT COUNT(*) FROM images WHERE filepath LIKE ?", (directory + "/%",)).fetchone()[0]
    if have >= count:
        return
    rng = np.random.default_rng(seed)
    for start in range(have, count, 10_000):
        n = min(10_000, count - start)
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        database._con.executemany(
            "INSERT INTO images(filepath, modified_at, size, vector) VALUES (?, 0, 3000000, ?)",
            ((f"{directory}/{(start + i) // 500:04d}/IMG_{start + i:07d}.jpg", vectors[i].tobytes())
             for i in range(n)),
        )
    database._con.commit()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("queries", nargs="+")
    parser.add_argument("--fill", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    from rclip.main import init_rclip

    directory = os.path.abspath(args.directory)
    rclip, model, database = init_rclip(directory, 8, no_indexing=True)
    if args.fill:
        fill(database, directory, args.fill)
    for query in args.queries[:2]:  # warm: sessions loaded, caches hot
        rclip.search(query, directory, args.top)
    times = []
    for i in range(args.repeats):
        started = time.perf_counter()
        results = rclip.search(args.queries[i % len(args.queries)], directory, args.top)
        times.append((time.perf_counter() - started) * 1e3)
    # rclip's search reads every vector from SQLite on each query; its query work proper, for comparison:
    # the text tower, the product with the vectors already in memory, and rclip's own sort.
    _, features = rclip._get_features(directory)
    in_memory = []
    for i in range(args.repeats):
        started = time.perf_counter()
        model.compute_similarities_to_text(features, [args.queries[i % len(args.queries)]], [])
        in_memory.append((time.perf_counter() - started) * 1e3)
    count = database._con.execute("SELECT COUNT(*) FROM images WHERE filepath LIKE ?", (directory + "/%",)).fetchone()
    print(json.dumps({"ms": times, "in_memory_ms": in_memory, "vectors": count[0], "results": len(results)}))


if __name__ == "__main__":
    main()
