"""What a committed batch costs a reader: catching its in-memory FAISS index up with the catalog.

During a long index run every committed batch changes the catalog; a searching process (the web app, say) must
then bring its index up to date before it answers. The baseline is the policy before 0.2: rebuild the whole
index from every stored vector (``Catalog.vectors()`` + a new flat index). ``DerivedIndex`` instead applies
only what changed since its generation (the change log of catalog schema 2).

    python -m benchmarks.bench_refresh                 # 100k vectors, 512-d, batches of 32
    python -m benchmarks.bench_refresh --count 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a serving process: see DESIGN.md, before faiss import

from benchmarks import _common  # noqa: E402
from benchmarks.bench_query import synthetic_catalog  # noqa: E402


def run(count: int, dim: int, batch: int, repeats: int) -> dict:
    import numpy as np

    from clipsearch.model.models import ModelSpec
    from clipsearch.store.catalog import Catalog, Embedded, FileStat
    from clipsearch.store.vectors import DerivedIndex, VectorIndex

    spec = ModelSpec("bench-stand-in", "none")
    source = synthetic_catalog(count, spec, dim)
    scratch = tempfile.mkdtemp(prefix="refresh-", dir=_common.work_dir())
    try:
        shutil.copy(os.path.join(source, "catalog.sqlite"), os.path.join(scratch, "catalog.sqlite"))
        path = os.path.join(scratch, "catalog.sqlite")
        reader, writer = Catalog.open(path), Catalog.open(path)
        derived = DerivedIndex(reader, os.path.join(scratch, "vectors.faiss"))
        derived.current()
        rng = np.random.default_rng(1)
        rebuild, catch_up, next_id = [], [], count
        query = rng.standard_normal(dim).astype(np.float32)
        for _ in range(repeats):
            vectors = rng.standard_normal((batch, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            writer.store_embedded(
                Embedded(FileStat(f"/photos/new/IMG_{next_id + i:07d}.jpg", 1, 0, next_id + i, 1), "0" * 32, 1, 1,
                         v) for i, v in enumerate(vectors))
            next_id += batch
            started = time.perf_counter()  # the policy before: every vector, a new flat index
            with reader.snapshot():
                ids, matrix = reader.vectors()
            old = VectorIndex.build(ids, matrix, derived.stamp())
            rebuild.append(time.perf_counter() - started)
            started = time.perf_counter()
            new = derived.current()
            catch_up.append(time.perf_counter() - started)
            assert len(new) == len(old) and new.search(query, 10) == old.search(query, 10)
        return {"count": len(new), "rebuild": rebuild, "catch_up": catch_up}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    result = _common.run_isolated("benchmarks.bench_refresh", "run", count=args.count, dim=args.dim,
                                  batch=args.batch, repeats=args.repeats)
    before, after = _common.median(result["rebuild"]), _common.median(result["catch_up"])
    rows = [
        ["rebuild from every vector (before)", f"{before * 1000:.1f}", f"{max(result['rebuild']) * 1000:.1f}", "1.00"],
        ["catch up with the change log (after)", f"{after * 1000:.2f}", f"{max(result['catch_up']) * 1000:.2f}",
         f"{before / after:.0f}x faster"],
    ]
    return _common.print_table(
        f"reader refresh after a committed batch of {args.batch}, {result['count']:,} vectors of {args.dim}-d",
        ["policy", "median ms", "max ms", "ratio"], rows,
        note=f"{args.repeats} batches, each timed both ways in turn, same process; "
             "both give identical top-10 results (asserted).")


if __name__ == "__main__":
    main()
