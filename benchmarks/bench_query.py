"""Warm text-query latency end to end: parse, encode, search, map ids to files (``Library.search``).

The reference path is open_clip's ``encode_text`` at the full context length (77 tokens) followed by a flat
FAISS inner-product search and the same id-to-file lookups; clipsearch is measured on its default path (the
light model: ONNX Runtime text tower, no torch) and on its open_clip path. Both run warm, in one process, on catalogs of
generated unit vectors (ViT-B-32 text tower with random weights: the real cost), interleaved query by query.

    python -m benchmarks.bench_query                  # 10k and 100k vectors
    python -m benchmarks.bench_query --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a serving process: see DESIGN.md, before faiss/torch import

from benchmarks import _common  # noqa: E402

QUERIES = [
    "a dog on a beach",
    "sunset over the mountains",
    "two children playing football in a park",
    "a red car parked in front of an old house",
    "birthday cake with candles",
    "snow",
    "a plate of pasta with tomato sauce and basil",
    "people walking across a bridge in the rain at night",
    "cat sleeping on a sofa",
    "the eiffel tower",
    "a boat on a calm lake surrounded by forest - people",
    "close-up of a flower",
]


def synthetic_catalog(count: int, spec, dim: int, seed: int = 0) -> str:
    """An index folder holding ``count`` random unit vectors under fake photo paths, recorded as made by
    ``spec`` (cached between runs, one folder per model)."""
    import hashlib
    import json

    import numpy as np

    from clipsearch.store.catalog import Catalog, Embedded, FileStat

    model = hashlib.sha256(json.dumps(spec.identity(), sort_keys=True).encode()).hexdigest()[:8]
    folder = _common.work_dir() / f"query-index-{count}-{dim}-seed{seed}-{model}"
    done = folder / "complete"
    if done.is_file():
        return str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "catalog.sqlite"
    path.unlink(missing_ok=True)
    catalog = Catalog.open(str(path), create=True)
    catalog.set_json("model", {"spec": spec.to_dict(), "identity": spec.identity()})
    catalog.add_roots(["/photos"])
    rng = np.random.default_rng(seed)
    for start in range(0, count, 10_000):
        n = min(10_000, count - start)
        vectors = rng.standard_normal((n, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        catalog.store_embedded(
            Embedded(FileStat(f"/photos/{(start + i) // 500:04d}/IMG_{start + i:07d}.jpg", 3_000_000, 0, i, 1),
                     "0" * 32, 4000, 3000, vectors[i])
            for i in range(n)
        )
    catalog.close()
    done.write_text("ok")
    return str(folder)


def run(sizes: list[int], repeats: int, top_k: int) -> dict:
    import faiss
    import numpy as np
    import torch

    from clipsearch import Library
    from clipsearch.model.embed import Embedder, EmbedOptions

    spec = _common.vit_b32_spec()
    torch_path = Embedder.load(spec)
    # An indexing batch exports the model for the light path (cached), as an index run does.
    torch_path.encode_pixels(np.zeros((1, 224, 224, 3), np.uint8))
    reference = Embedder.load(spec, EmbedOptions(reference=True))
    model, tokenizer = reference.model, reference.tokenizer
    results = {"threads": {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()}, "sizes": {}}
    for count in sizes:
        folder = synthetic_catalog(count, spec, torch_path.dim)
        library = Library.open(folder)  # the default: the light model (ONNX text tower), as a fresh process
        results["encoder"] = type(library.text_encoder).__name__
        with_torch = Library.open(folder)
        with_torch.use_embedder(torch_path)  # today's open_clip path (trimmed text, int8 Linear layers)
        library.search(QUERIES[0], top_k)  # warm: loads or builds the FAISS index
        with_torch.search(QUERIES[0], top_k)
        ids, matrix = (np.concatenate(parts) for parts in zip(*library.iter_vectors()))
        flat = faiss.IndexFlatIP(matrix.shape[1])
        flat.add(matrix)
        del matrix

        def reference_query(text: str, flat=flat, library=library, ids=ids) -> list:
            with torch.inference_mode():
                features = model.encode_text(tokenizer([text]))  # full context length
                vector = torch.nn.functional.normalize(features, dim=-1).numpy()
            scores, rows = flat.search(vector, top_k)
            return [library.file(int(ids[r])) for r in rows[0] if r >= 0]

        times = {"fast": [], "torch": [], "reference": [], "encode": [], "search": []}
        for _ in range(2):  # warm-up
            reference_query(QUERIES[1])
            library.search(QUERIES[1], top_k)
            with_torch.search(QUERIES[1], top_k)
        for i in range(repeats):
            text = QUERIES[i % len(QUERIES)]
            t0 = time.perf_counter()
            library.search(text, top_k)
            t1 = time.perf_counter()
            with_torch.search(text, top_k)
            t2 = time.perf_counter()
            reference_query(text)
            t3 = time.perf_counter()
            vector = library.encode_query(text)
            t4 = time.perf_counter()
            library.search_vector(vector, top_k)
            t5 = time.perf_counter()
            for key, ms in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                times[key].append(ms * 1e3)
        results["sizes"][str(count)] = times
        library.close()
        with_torch.close()
    return results


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    result = _common.run_isolated("benchmarks.bench_query", "run", sizes=args.sizes, repeats=args.repeats,
                                  top_k=args.top)
    rows = []
    for count, r in result["sizes"].items():
        ref50, fast50 = _common.median(r["reference"]), _common.median(r["fast"])
        rows.append([f"{int(count):,}", "reference: encode_text (77 tokens) + flat search", ref50,
                     _common.percentile(r["reference"], 95), 1.0, "", ""])
        torch50 = _common.median(r["torch"])
        rows.append([f"{int(count):,}", "clipsearch, open_clip path (trimmed text, int8 Linear)", torch50,
                     _common.percentile(r["torch"], 95), ref50 / torch50, "", ""])
        rows.append([f"{int(count):,}", f"clipsearch Library.search ({result['encoder']})", fast50,
                     _common.percentile(r["fast"], 95), ref50 / fast50, _common.median(r["encode"]),
                     _common.median(r["search"])])
    threads = result["threads"]
    return _common.print_table(
        f"Warm text query, end to end (top {args.top}, {args.repeats} queries, ViT-B-32 text tower)",
        ["vectors", "path", "p50 ms", "p95 ms", "× faster (p50)", "of which encode ms", "search+map ms"],
        rows,
        note=f"torch threads {threads['torch']}, FAISS threads {threads['faiss']} (OMP_NUM_THREADS=1 as a "
             "serving process sets it). Queries alternate between the paths; no query cache.",
    )


if __name__ == "__main__":
    main()
