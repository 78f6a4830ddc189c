"""Exploring 100k vectors: duplicates, odd ones out, themes and the 2-D map, each in a fresh process.

The data is a seeded mixture on the unit sphere standing in for a photo library's CLIP vectors: ``clusters``
themes (cosine ~0.5 between photos of one theme, ~0 across), 1 % of photos with a planted near-copy (cosine
0.96-0.995 to its original, as a crop or recompression gives), 0.1 % planted outliers (uniform on the sphere,
unlike every theme). Every analysis is the library's own function on the vectors (no files: duplicates use the
vectors alone, without the pixel check). Baselines, measured in the same run: FAISS's IVF index searched one query
at a time (``IndexIVFFlat``, the usual way) for duplicates and outliers, k-means told the true number of themes,
and umap-learn for the map (when installed). Neighbour quality is also checked against an exact search on a
sample of 1,000 photos.

    python -m benchmarks.bench_explore                      # 100k vectors, 512 dimensions
    python -m benchmarks.bench_explore --count 20000 --no-umap
"""

from __future__ import annotations

import argparse
import time

from benchmarks import _common

DIM = 512


def mixture(count: int, dim: int = DIM, clusters: int = 40, seed: int = 0):
    """``(vectors, theme, copies [(copy_row, original_row)], outlier_rows)``, all seeded."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n_out = max(1, count // 1000)
    n_copies = count // 100
    n_base = count - n_out - n_copies
    theme = rng.integers(0, clusters, n_base)
    # a photo = its theme's direction + as much again of its own: cosine ~0.5 within a theme
    base = centres[theme] + rng.standard_normal((n_base, dim)).astype(np.float32) / np.sqrt(dim)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    originals = rng.choice(n_base, n_copies, replace=False)
    jitter = rng.uniform(0.1, 0.3, (n_copies, 1)).astype(np.float32)
    copies = base[originals] + jitter * rng.standard_normal((n_copies, dim)).astype(np.float32) / np.sqrt(dim)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    outliers = rng.standard_normal((n_out, dim)).astype(np.float32)
    outliers /= np.linalg.norm(outliers, axis=1, keepdims=True)
    vectors = np.concatenate([base, copies, outliers])
    order = rng.permutation(count)  # planted rows anywhere, as in a real catalog
    position = np.empty(count, np.int64)
    position[order] = np.arange(count)
    vectors = np.ascontiguousarray(vectors[order])
    themes = np.concatenate([theme, theme[originals], np.full(n_out, -1)])[order]
    pairs = [(int(position[n_base + i]), int(position[o])) for i, o in enumerate(originals)]
    outlier_rows = position[n_base + n_copies:].tolist()
    return vectors, themes, pairs, outlier_rows


def measure(analysis: str, method: str, count: int, clusters: int) -> dict:
    """Run one analysis on the mixture in this (fresh) process: seconds, peak RSS and its quality."""
    import numpy as np

    vectors, themes, pairs, outlier_rows = mixture(count, clusters=clusters)
    result: dict = {"analysis": analysis, "method": method, "count": count}
    with _common.PeakTreeRss() as rss:
        started = time.perf_counter()
        if analysis == "duplicates":
            from clipsearch.explore.duplicates import DEFAULT_THRESHOLD, find_duplicates

            if method == "ivf":
                first, second = _ivf_pairs(vectors, DEFAULT_THRESHOLD)
                found = {frozenset((int(a), int(b))) for a, b in zip(first, second) if a != b}
            else:
                groups = find_duplicates(np.arange(count), vectors, DEFAULT_THRESHOLD)
                found = {frozenset((a, b)) for g in groups for a in g for b in g if a < b}
            seconds = time.perf_counter() - started
            planted = {frozenset(p) for p in pairs}
            result.update(quality=f"planted pairs: recall {len(found & planted) / len(planted):.4f}, precision "
                                  f"{len(found & planted) / max(1, len(found)):.4f}")
        elif analysis == "outliers":
            from clipsearch.explore.neighbours import nearest

            if method == "ivf":
                sims, rows = _ivf_nearest(vectors, 10)
            else:
                sims, rows = nearest(vectors, 10)
            scores = (1 - sims).mean(axis=1)
            seconds = time.perf_counter() - started
            top = set(np.argsort(-scores)[: len(outlier_rows)].tolist())
            share = len(top & set(outlier_rows)) / len(outlier_rows)
            result.update(quality=f"planted in the top {len(outlier_rows)}: {share:.4f}; neighbour recall@10 "
                                  f"{_neighbour_recall(vectors, rows):.4f}")
        elif analysis == "themes":
            from sklearn.cluster import KMeans
            from sklearn.metrics import adjusted_rand_score

            from clipsearch.explore.themes import cluster, describe

            if method == "told-k":  # baseline: k-means told the true number of themes
                assignment = KMeans(clusters, n_init=2, random_state=0).fit_predict(vectors)
            else:
                assignment = cluster(vectors)
                labels = [f"label {i}" for i in range(143)]
                label_vectors = np.random.default_rng(1).standard_normal((143, vectors.shape[1])).astype(np.float32)
                label_vectors /= np.linalg.norm(label_vectors, axis=1, keepdims=True)
                describe(np.arange(count), vectors, assignment, labels, label_vectors)
            seconds = time.perf_counter() - started
            real = themes >= 0
            result.update(quality=f"k = {len(np.unique(assignment))} (true {clusters}), adjusted Rand "
                                  f"{adjusted_rand_score(themes[real], assignment[real]):.4f}")
        else:
            result.update(_map(method, vectors, started))
            seconds = result.pop("seconds")
    result.update(seconds=seconds, peak_mib=rss.peak / 2**20)
    return result


def _ivf(vectors, nprobe: int):
    import math

    import faiss
    import numpy as np

    lists = int(2 * math.sqrt(len(vectors)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], lists,
                               faiss.METRIC_INNER_PRODUCT)
    index.train(vectors[np.random.default_rng(0).choice(len(vectors), min(len(vectors), 40 * lists), replace=False)])
    index.add(vectors)
    index.nprobe = nprobe
    return index


def _ivf_pairs(vectors, threshold: float):
    import numpy as np

    lims, _, found = _ivf(vectors, 8).range_search(vectors, threshold - 1e-6)
    first = np.repeat(np.arange(len(vectors)), np.diff(lims).astype(np.int64))
    return first, found


def _ivf_nearest(vectors, k: int):
    sims, rows = _ivf(vectors, 12).search(vectors, k + 1)
    return sims[:, 1:], rows[:, 1:]  # the query itself first (ties with an identical copy aside)


def _neighbour_recall(vectors, rows, sample: int = 1000) -> float:
    """Share of the exact 10 nearest neighbours found, over a fixed sample of photos."""
    import numpy as np

    chosen = np.random.default_rng(3).choice(len(vectors), sample, replace=False)
    found = []
    for block in np.array_split(chosen, 20):  # 50 rows at a time: the check must not set the row's peak RSS
        sims = vectors[block] @ vectors.T
        sims[np.arange(len(block)), block] = -np.inf
        exact = np.argpartition(-sims, 10, axis=1)[:, :10]
        found += [len(set(exact[i]) & set(rows[c].tolist())) / 10 for i, c in enumerate(block)]
    return float(np.mean(found))


def _map(method: str, vectors, started: float) -> dict:
    import numpy as np
    from sklearn.manifold import trustworthiness

    new, reference = vectors[-1000:], vectors[:-1000]
    if method == "umap":
        import umap

        model = umap.UMAP(n_neighbors=15, metric="cosine", random_state=0)
        coords = model.fit_transform(reference)
        fitted = time.perf_counter()
        model.transform(new)
    else:
        from clipsearch.explore.projection import fit_map, place_points

        coords = fit_map(reference)
        fitted = time.perf_counter()
        place_points(reference, coords, new)
    placed = time.perf_counter() - fitted
    sample = np.random.default_rng(2).choice(len(reference), 5000, replace=False)
    score = trustworthiness(reference[sample], coords[sample], n_neighbors=10, metric="cosine")
    return {"seconds": fitted - started,
            "quality": f"trustworthiness@10 {score:.4f} (5k sample); 1,000 new placed in {placed:.1f} s"}


TARGETS = {"duplicates": 30, "outliers": 30, "themes": 60, "map": 180}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--no-umap", action="store_true", help="skip the umap-learn baseline of the map")
    args = parser.parse_args(argv)
    plan = [("duplicates", "ivf"), ("duplicates", "clipsearch"), ("outliers", "ivf"), ("outliers", "clipsearch"),
            ("themes", "told-k"), ("themes", "clipsearch"), ("map", "clipsearch")]
    if not args.no_umap:
        try:
            import umap  # noqa: F401

            plan.append(("map", "umap"))
        except ImportError:
            pass
    results = [_common.run_isolated("benchmarks.bench_explore", "measure", analysis=a, method=m, count=args.count,
                                    clusters=args.clusters) for a, m in plan]
    baseline = {r["analysis"]: r["seconds"] for r in results if r["method"] != "clipsearch"}
    names = {"ivf": "baseline: FAISS IVF-Flat, query by query", "clipsearch": "clipsearch",
             "told-k": f"baseline: k-means told k = {args.clusters}",
             "umap": "baseline: umap-learn (15 neighbours, cosine)"}
    rows = []
    for r in results:
        method = names[r["method"]]
        ratio = baseline[r["analysis"]] / r["seconds"] if r["analysis"] in baseline else float("nan")
        target = f"≤ {TARGETS[r['analysis']]} s" if r["method"] == "clipsearch" else ""
        rows.append([r["analysis"], method, r["seconds"], ratio, r["peak_mib"], r["quality"], target])
    return _common.print_table(
        f"Exploring {args.count:,} vectors ({DIM}-d mixture of {args.clusters} themes, 1 % planted near-copies, "
        "0.1 % planted outliers)",
        ["analysis", "method", "seconds", "× baseline (speed)", "peak RSS MiB", "quality", "target"],
        rows,
        note="Each row is a fresh process (peak RSS of that process, the 200 MB of vectors included). Duplicates "
             "at the default threshold 0.90, vectors only. The map: t-SNE of all but 1,000 vectors, then those "
             "1,000 placed into it.",
    )


if __name__ == "__main__":
    main()
