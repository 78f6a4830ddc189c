"""Approximate search: index types over sizes, one query at a time on one thread, against exact search.

Data: ``clipsearch.world.vectors.clustered_unit_vectors``, a seeded mixture of clusters on the 512-d sphere (about
n/500 clusters, each a 16-dimensional Gaussian in its own random subspace plus isotropic noise; a point's cosine to
its centre ≈ 0.8, to its nearest neighbours ≈ 0.8-0.9). Uniform random vectors would be an unrealistic worst
case. 200 queries are held out of the same mixture; the truth is their exact top 10 over all n vectors.

Each size gets a real catalog (SQLite, cached in $CLIPSEARCH_BENCH_DIR). Each index type is built in its own
process from the catalog's vectors, as ``DerivedIndex`` builds it (build seconds, peak RSS), and searched in a
fresh process with ``OMP_NUM_THREADS=1``: the index file loaded as a server loads it (an IVF index memory-mapped),
the short list re-ranked exactly from the catalog (``Catalog.vectors_of``). RSS is that process's resident memory
after the queries (its file-backed part, pages of the mapped index and libraries, in brackets). HNSW (faiss
``HNSW32,Flat``, efSearch 64) is built and searched directly for comparison up to 100k.

    python -m benchmarks.bench_ann                       # 10k, 100k, 1M
    python -m benchmarks.bench_ann --sizes 10000 50000   # quicker
    python -m benchmarks.bench_ann --big 2000000         # also IVF-PQ alone at 2M (the 10M extrapolation)
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # searches: one thread, one query at a time (a serving process)

from benchmarks import _common  # noqa: E402

DIM = 512
QUERIES = 200
HNSW_UP_TO = 100_000


def prepare(count: int, seed: int = 0) -> str:
    """A folder with a catalog of ``count`` clustered vectors, held-out queries and their exact top 10."""
    import numpy as np

    from clipsearch.store.catalog import Catalog, Embedded, FileStat
    from clipsearch.world.vectors import clustered_chunks

    folder = _common.work_dir() / f"ann-{count}-{DIM}-seed{seed}"
    if (folder / "complete").is_file():
        return str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.sqlite").unlink(missing_ok=True)
    catalog = Catalog.open(str(folder / "catalog.sqlite"), create=True)
    catalog.add_roots(["/photos"])
    queries, best_ids, best_scores, stored = None, None, None, 0
    for chunk in clustered_chunks(count + QUERIES, DIM, seed):
        if queries is None:
            queries, chunk = chunk[:QUERIES], chunk[QUERIES:]
            best_ids = np.zeros((QUERIES, 0), np.int64)
            best_scores = np.zeros((QUERIES, 0), np.float32)
        catalog.store_embedded(
            Embedded(FileStat(f"/photos/{(stored + i) // 500:05d}/IMG_{stored + i:07d}.jpg", 3_000_000, 0,
                              stored + i, 1), "0" * 32, 4000, 3000, v) for i, v in enumerate(chunk))
        ids = np.arange(stored + 1, stored + 1 + len(chunk))  # catalog ids: insertion order, from 1
        scores = np.concatenate([best_scores, queries @ chunk.T], axis=1)
        every = np.concatenate([best_ids, np.broadcast_to(ids, (QUERIES, len(ids)))], axis=1)
        top = np.argsort(-scores, axis=1)[:, :10]
        best_scores, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(every, top, 1)
        stored += len(chunk)
    assert catalog.vector_stats() == (count, DIM)
    catalog.close()
    np.save(folder / "queries.npy", queries)
    np.save(folder / "truth.npy", best_ids)
    (folder / "complete").write_text("ok")
    return str(folder)


def build(folder: str, kind: dict, name: str) -> dict:
    """Build one index type from the catalog (in this fresh process) and save it; seconds and peak RSS."""
    import faiss

    from clipsearch.store.catalog import Catalog
    from clipsearch.store.vectors import _CatalogChunks, stamp_of

    faiss.omp_set_num_threads(1)  # one core: two OpenMP threads crawl on this shared machine (see RESULTS.md)
    catalog = Catalog.open(os.path.join(folder, "catalog.sqlite"))
    path = os.path.join(folder, f"{name}.faiss")
    with _common.PeakTreeRss() as peak:
        started = time.perf_counter()
        from clipsearch.store.vectors import VectorIndex

        with catalog.snapshot():
            stamp = dict(stamp_of(catalog.state()), index=kind)
            index = VectorIndex.build_from_chunks(_CatalogChunks(catalog), stamp)
        built = time.perf_counter() - started
        index.save(path)
    return {"build_s": built, "build_rss": peak.peak, "file_bytes": os.path.getsize(path)}


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def search(folder: str, name: str, k: int = 10) -> dict:
    """Load the saved index as a server does and answer the held-out queries one at a time."""
    import numpy as np

    from clipsearch.store.catalog import Catalog
    from clipsearch.store.vectors import VectorIndex

    queries = np.load(os.path.join(folder, "queries.npy"))
    truth = np.load(os.path.join(folder, "truth.npy"))
    catalog = Catalog.open(os.path.join(folder, "catalog.sqlite"))
    rss_before = _status_kib("VmRSS")
    started = time.perf_counter()
    index = VectorIndex.load(os.path.join(folder, f"{name}.faiss"), {})
    load_s = time.perf_counter() - started
    index.use_stored_vectors(catalog.vectors_of)
    for q in queries[:20]:  # warm-up
        index.search(q, k)
    times, recall = [], []
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        hits = index.search(q, k)
        times.append((time.perf_counter() - t0) * 1e3)
        recall.append(len({h.id for h in hits} & set(t.tolist())) / k)
    return {"p50": _common.median(times), "p95": _common.percentile(times, 95), "recall": float(np.mean(recall)),
            "rss": _status_kib("VmRSS") * 1024, "rss_file": _status_kib("RssFile") * 1024,
            "rss_before": rss_before * 1024, "load_s": load_s}


def hnsw(folder: str, k: int = 10) -> dict:
    """faiss HNSW32 (flat storage), built from the catalog and searched with efSearch 64, in one process."""
    import faiss
    import numpy as np

    from clipsearch.store.catalog import Catalog

    catalog = Catalog.open(os.path.join(folder, "catalog.sqlite"))
    queries = np.load(os.path.join(folder, "queries.npy"))
    truth = np.load(os.path.join(folder, "truth.npy"))
    faiss.omp_set_num_threads(1)
    index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    ids = []
    for chunk_ids, matrix in catalog.vector_chunks():
        index.add(matrix)
        ids.append(chunk_ids)
    built = time.perf_counter() - started
    ids = np.concatenate(ids)
    index.hnsw.efSearch = 64
    times, recall = [], []
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        _, found = index.search(q.reshape(1, -1), k)
        times.append((time.perf_counter() - t0) * 1e3)
        recall.append(len(set(ids[found[0]].tolist()) & set(t.tolist())) / k)
    return {"p50": _common.median(times), "p95": _common.percentile(times, 95), "recall": float(np.mean(recall)),
            "rss": _status_kib("VmRSS") * 1024, "rss_file": _status_kib("RssFile") * 1024, "build_s": built,
            "build_rss": 0, "file_bytes": 0}


def measure(count: int, with_flat: bool = True, with_hnsw: bool = True) -> list[dict]:
    from clipsearch.store.vectors import FLAT, IndexPolicy, approximate_type

    folder = _common.run_isolated("benchmarks.bench_ann", "prepare", count=count)
    default = IndexPolicy().choose(count, DIM)
    kinds = {"ivfpq": approximate_type(count, DIM)}
    if with_flat:
        kinds["flat"] = FLAT
    rows = []
    for name, kind in kinds.items():
        built = _common.run_isolated("benchmarks.bench_ann", "build", folder=folder, kind=kind.to_dict(), name=name)
        found = _common.run_isolated("benchmarks.bench_ann", "search", folder=folder, name=name)
        rows.append({"count": count, "type": kind.factory + (" + exact re-rank" if kind.approximate else ""),
                     "default": kind == default, **built, **found})
        print(json.dumps(rows[-1]), flush=True)
    if with_hnsw and count <= HNSW_UP_TO:
        rows.append({"count": count, "type": "HNSW32,Flat (efSearch 64)", "default": False,
                     **_common.run_isolated("benchmarks.bench_ann", "hnsw", folder=folder)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--big", type=int, help="also measure IVF-PQ alone at this size (for the 10M figure)")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = []
    for count in args.sizes:
        rows += measure(count)
    if args.big:
        rows += measure(args.big, with_flat=False, with_hnsw=False)
    mib = 1024**2
    table = [[f"{r['count']:,}", r["type"] + (" (default)" if r["default"] else ""), r["recall"], r["p50"], r["p95"],
              f"{r['rss'] / mib:.0f} ({r['rss_file'] / mib:.0f})", r["build_s"], r["file_bytes"] / mib]
             for r in rows]
    text = _common.print_table(
        "Approximate search: recall@10 against exact, one query at a time, one thread",
        ["vectors", "index type", "recall@10", "p50 ms", "p95 ms", "search RSS MiB (file-backed)", "build s",
         "file MiB"], table,
        note=f"Seeded mixture of clusters on the 512-d sphere (clipsearch.world.vectors); 200 held-out queries; "
             f"builds on one FAISS thread; load at start {load:.1f}.")
    chosen = [r for r in rows if r["default"] and r["count"] == max(args.sizes)]
    if chosen:
        r = chosen[0]
        line = (f"ann: {r['count']:,} vectors, {r['type']}, recall@10 {r['recall']:.3f}, p50 {r['p50']:.2f} ms, "
                f"p95 {r['p95']:.2f} ms, rss {r['rss'] / mib:.0f} MiB, build {r['build_s']:.0f} s")
        print(line, flush=True)
        text += "\n" + line + "\n"
    return text


if __name__ == "__main__":
    main()
