"""End-to-end indexing throughput: ``Library.index`` against a plain one-process open_clip pipeline.

The reference is what a first implementation does: ``PIL.Image.open`` + open_clip's ``preprocess`` +
``encode_image`` in batches, in one process. Both run on the same generated 12 MP photo folder, each in a fresh
process, in the same invocation; the table gives images/s, the ratio, peak RSS of the whole process tree (decode
workers included) and CPU time. Model loading and the one-time ONNX export are timed apart.

    python -m benchmarks.bench_index                # ~3 minutes on 2 cores
    python -m benchmarks.bench_index --count 400 --sweep
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from benchmarks import _common
from benchmarks.photos import ensure_folder, folder_summary


def photo_folder(count: int, seed: int = 0) -> str:
    return str(ensure_folder(_common.work_dir() / f"photos-{count}-seed{seed}", count, seed))


def _image_paths(folder: str, limit: int | None = None) -> list[str]:
    paths = sorted(
        os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if not f.startswith(".")
    )
    return paths[:limit] if limit else paths


def run_reference(folder: str, checkpoint: str, limit: int, batch_size: int = 32) -> dict:
    """The baseline, in this process: PIL.Image.open + preprocess + encode_image, batch by batch."""
    import open_clip
    import torch
    from PIL import Image

    paths = _image_paths(folder, limit)
    with _common.PeakTreeRss() as load_rss:
        started = time.perf_counter()
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=checkpoint)
        model.eval()
        loaded = time.perf_counter()
    with _common.PeakTreeRss() as rss:
        cpu0 = _common.cpu_seconds()
        count = 0
        with torch.inference_mode():
            for start in range(0, len(paths), batch_size):
                images = [preprocess(Image.open(p).convert("RGB")) for p in paths[start : start + batch_size]]
                features = model.encode_image(torch.stack(images))
                torch.nn.functional.normalize(features, dim=-1).numpy()
                count += len(images)
        seconds = time.perf_counter() - loaded
    return {"images": count, "seconds": seconds, "load_s": loaded - started, "peak_rss": rss.peak,
            "load_rss": load_rss.peak, "cpu_s": _common.cpu_seconds() - cpu0}


def run_library(folder: str, checkpoint: str, image_backend: str = "auto", batch_size: int = 32,
                workers: int | None = None, limit: int | None = None) -> dict:
    """``Library.index`` on ``folder`` into a fresh index (the first ``limit`` files when given)."""
    import numpy as np

    from clipsearch import Library
    from clipsearch.ingest.run import IndexOptions
    from clipsearch.model.embed import EmbedOptions
    from clipsearch.model.models import ModelSpec

    spec = ModelSpec("ViT-B-32", None, checkpoint)
    scratch = tempfile.mkdtemp(prefix="bench-index-")
    source = folder
    if limit:
        source = os.path.join(scratch, "photos")  # hard links to the first `limit` files (symlinks that
        os.makedirs(source)                          # leave a root are, rightly, never followed)
        for path in _image_paths(folder, limit):
            os.link(path, os.path.join(source, os.path.basename(path)))
        source = os.path.realpath(source)
    try:
        with _common.PeakTreeRss() as load_rss:
            started = time.perf_counter()
            library = Library.open(os.path.join(scratch, "index"), model=spec, create=True,
                                   embed_options=EmbedOptions(image_backend=image_backend))
            embedder = library.embedder
            loaded = time.perf_counter()
            # Build (or load from the cache) the fast image tower before the clock starts.
            embedder.encode_pixels(np.zeros((2, embedder.pixel_spec.size, embedder.pixel_spec.size, 3), np.uint8))
            ready = time.perf_counter()
        with _common.PeakTreeRss() as rss:
            cpu0 = _common.cpu_seconds()
            report = library.index([source], IndexOptions(batch_size=batch_size, workers=workers))
            seconds = time.perf_counter() - ready
            library.close()
        if report.skipped:
            raise RuntimeError(f"skipped files: {report.skipped[:3]}")
        return {"images": report.indexed, "seconds": seconds, "load_s": loaded - started,
                "tower_s": ready - loaded, "backend": embedder.image_backend, "peak_rss": rss.peak,
                "load_rss": load_rss.peak,
                "cpu_s": _common.cpu_seconds() - cpu0}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=96, help="photos in the folder (default 96; full: 400)")
    parser.add_argument("--reference-count", type=int, default=32,
                        help="photos the slow reference pipeline runs on (its rate does not depend on the count)")
    parser.add_argument("--sweep", action="store_true", help="also try other backends, worker counts, batches")
    parser.add_argument("--full", action="store_true", help="the full sizes: --count 400 --reference-count 96")
    args = parser.parse_args(argv)
    if args.full:
        args.count, args.reference_count = max(args.count, 400), max(args.reference_count, 96)
    checkpoint = _common.vit_b32_spec().checkpoint
    folder = photo_folder(args.count)
    summary = folder_summary(folder)

    runs: list[tuple[str, dict]] = []
    ref = _common.run_isolated("benchmarks.bench_index", "run_reference", folder=folder, checkpoint=checkpoint,
                               limit=min(args.reference_count, args.count))
    runs.append(("reference: PIL.open + preprocess + encode_image, 1 process", ref))
    variants = [("clipsearch default (auto)", {})]
    variants.append((f"clipsearch default, half the folder ({args.count // 2} files)", {"limit": args.count // 2}))
    variants.append(("clipsearch, image_backend=torch (fp32)", {"image_backend": "torch"}))
    if args.sweep:
        variants += [
            ("clipsearch, image_backend=torch-int8", {"image_backend": "torch-int8"}),
            ("clipsearch auto, workers=1", {"workers": 1}),
            ("clipsearch auto, workers=3", {"workers": 3}),
            ("clipsearch auto, batch 64", {"batch_size": 64}),
            ("clipsearch auto, batch 16", {"batch_size": 16}),
        ]
    for label, kwargs in variants:
        result = _common.run_isolated("benchmarks.bench_index", "run_library", folder=folder,
                                      checkpoint=checkpoint, **kwargs)
        runs.append((label, result))

    base = ref["images"] / ref["seconds"]
    rows = []
    for label, r in runs:
        rate = r["images"] / r["seconds"]
        rows.append([label, r.get("backend", "torch"), r["images"], rate, rate / base, r["peak_rss"] / 2**20,
                     r["load_rss"] / 2**20, r["cpu_s"] / r["images"] * 1000, r["load_s"],
                     r.get("tower_s", float("nan"))])
    return _common.print_table(
        f"Indexing throughput, ViT-B-32 (random weights), {summary['files']} photos, {summary['megabytes']} MB",
        ["pipeline", "image tower", "images", "images/s", "× reference", "peak RSS indexing MiB",
         "peak RSS loading MiB", "CPU ms/image",
         "model load s", "tower ready s"],
        rows,
        note="Photos: 80% 12 MP JPEG, 5% EXIF-rotated 12 MP JPEG, 5% 2560x1600 PNG, 10% 800x600 JPEG "
             "(benchmarks/photos.py, seed 0). 'tower ready' = loading (or, when not cached, exporting) the fast "
             "image tower, excluded from images/s. Peak RSS = whole process tree (decode workers included), "
             "sampled every 50 ms; 'loading' is the model load alone (open_clip holds model + checkpoint).",
    )


if __name__ == "__main__":
    main()
