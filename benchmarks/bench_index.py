"""End-to-end indexing throughput: ``Library.index`` against a plain one-process open_clip pipeline.

The reference is what a first implementation does: ``PIL.Image.open`` + open_clip's ``preprocess`` +
``encode_image`` in batches, in one process. Like for like: every pipeline runs on the same generated 12 MP photo
folder (all of it: equal image counts), in a fresh process, after the same warm-up (the model loaded and one
batch of zeros through its image tower, outside the clock); the pipelines alternate round by round
(``_common.alternate``) and the table gives the median and the range over the rounds: images/s, the ratio to the
reference in the same round, peak RSS of the whole process tree (decode workers included) and CPU time. Model
loading and the one-time ONNX export are timed apart.

    python -m benchmarks.bench_index                  # 64 photos, 3 rounds: ~10 minutes on 2 busy cores
    python -m benchmarks.bench_index --count 200 --repeats 5 --sweep
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from benchmarks import _common
from benchmarks.photos import ensure_folder, folder_summary

BATCH = 32


def photo_folder(count: int, seed: int = 0) -> str:
    return str(ensure_folder(_common.work_dir() / f"photos-{count}-seed{seed}", count, seed))


def _image_paths(folder: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if not f.startswith("."))


def run_reference(folder: str, checkpoint: str, batch_size: int = BATCH) -> dict:
    """The baseline, in this process: PIL.Image.open + preprocess + encode_image, batch by batch."""
    import open_clip
    import torch
    from PIL import Image

    paths = _image_paths(folder)
    with _common.PeakTreeRss() as load_rss:
        started = time.perf_counter()
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=checkpoint)
        model.eval()
        loaded = time.perf_counter()
        size = model.visual.image_size
        size = size[0] if isinstance(size, tuple) else size
        with torch.inference_mode():  # the same warm-up clipsearch gets: one batch of zeros through the tower
            model.encode_image(torch.zeros(batch_size, 3, size, size))
        ready = time.perf_counter()
    with _common.PeakTreeRss() as rss:
        cpu0 = _common.cpu_seconds()
        count = 0
        with torch.inference_mode():
            for start in range(0, len(paths), batch_size):
                images = [preprocess(Image.open(p).convert("RGB")) for p in paths[start : start + batch_size]]
                features = model.encode_image(torch.stack(images))
                torch.nn.functional.normalize(features, dim=-1).numpy()
                count += len(images)
        seconds = time.perf_counter() - ready
    return {"images": count, "seconds": seconds, "load_s": loaded - started, "tower_s": ready - loaded,
            "backend": "torch", "peak_rss": rss.peak, "load_rss": load_rss.peak,
            "cpu_s": _common.cpu_seconds() - cpu0}


def run_library(folder: str, checkpoint: str, image_backend: str = "auto", batch_size: int = BATCH,
                workers: int | None = None) -> dict:
    """``Library.index`` on ``folder`` into a fresh index."""
    import numpy as np

    from clipsearch import Library
    from clipsearch.ingest.run import IndexOptions
    from clipsearch.model.embed import EmbedOptions
    from clipsearch.model.models import ModelSpec

    spec = ModelSpec("ViT-B-32", None, checkpoint)
    scratch = tempfile.mkdtemp(prefix="bench-index-")
    try:
        with _common.PeakTreeRss() as load_rss:
            started = time.perf_counter()
            library = Library.open(os.path.join(scratch, "index"), model=spec, create=True,
                                   embed_options=EmbedOptions(image_backend=image_backend))
            embedder = library.embedder
            loaded = time.perf_counter()
            # Build (or load from the cache) the fast image tower and warm it before the clock starts.
            size = embedder.pixel_spec.size
            embedder.encode_pixels(np.zeros((batch_size, size, size, 3), np.uint8))
            ready = time.perf_counter()
        with _common.PeakTreeRss() as rss:
            cpu0 = _common.cpu_seconds()
            report = library.index([folder], IndexOptions(batch_size=batch_size, workers=workers))
            seconds = time.perf_counter() - ready
            library.close()
        if report.skipped:
            raise RuntimeError(f"skipped files: {report.skipped[:3]}")
        return {"images": report.indexed, "seconds": seconds, "load_s": loaded - started,
                "tower_s": ready - loaded, "backend": embedder.image_backend, "peak_rss": rss.peak,
                "load_rss": load_rss.peak, "cpu_s": _common.cpu_seconds() - cpu0}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


REFERENCE = "reference: PIL.open + preprocess + encode_image, 1 process"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64, help="photos in the folder, for every pipeline (64)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the pipelines alternate (3)")
    parser.add_argument("--sweep", action="store_true", help="also try other backends, worker counts, batches")
    parser.add_argument("--full", action="store_true", help="the full sizes: --count 200 --repeats 5")
    args = parser.parse_args(argv)
    if args.full:
        args.count, args.repeats = max(args.count, 200), max(args.repeats, 5)
    checkpoint = _common.vit_b32_spec().checkpoint
    folder = photo_folder(args.count)
    summary = folder_summary(folder)

    variants = {"clipsearch default (auto)": {}, "clipsearch, image_backend=torch (fp32)": {"image_backend": "torch"}}
    if args.sweep:
        variants.update({
            "clipsearch, image_backend=torch-int8": {"image_backend": "torch-int8"},
            "clipsearch auto, workers=1": {"workers": 1},
            "clipsearch auto, workers=3": {"workers": 3},
            "clipsearch auto, batch 64": {"batch_size": 64},
            "clipsearch auto, batch 16": {"batch_size": 16},
        })

    def pipeline(function: str, **kwargs):
        return lambda _round: _common.run_isolated("benchmarks.bench_index", function, folder=folder,
                                                   checkpoint=checkpoint, **kwargs)

    load_before = os.getloadavg()[0]
    runs = _common.alternate({REFERENCE: pipeline("run_reference"),
                              **{label: pipeline("run_library", **kw) for label, kw in variants.items()}},
                             args.repeats)
    load_after = os.getloadavg()[0]
    counts = {r["images"] for results in runs.values() for r in results}
    if counts != {summary["files"]}:
        raise RuntimeError(f"pipelines embedded different numbers of images: {sorted(counts)}")

    reference_rates = [r["images"] / r["seconds"] for r in runs[REFERENCE]]
    med = _common.median
    rows = []
    for label, results in runs.items():
        rates = [r["images"] / r["seconds"] for r in results]
        ratios = [rate / base for rate, base in zip(rates, reference_rates)]
        rows.append([label, results[0]["backend"], results[0]["images"], _common.spread(rates),
                     _common.spread(ratios), med([r["peak_rss"] for r in results]) / 2**20,
                     med([r["load_rss"] for r in results]) / 2**20,
                     med([r["cpu_s"] / r["images"] for r in results]) * 1000,
                     med([r["load_s"] for r in results]), med([r["tower_s"] for r in results])])
    return _common.print_table(
        f"Indexing throughput, ViT-B-32 (random weights), {summary['files']} photos, {summary['megabytes']} MB, "
        f"{args.repeats} alternating rounds",
        ["pipeline", "image tower", "images", "images/s median (range)", "× reference, same round (range)",
         "peak RSS indexing MiB", "peak RSS loading MiB", "CPU ms/image", "model load s", "warm-up s"],
        rows,
        note="Photos: 80% 12 MP JPEG, 5% EXIF-rotated 12 MP JPEG, 5% 2560x1600 PNG, 10% 800x600 JPEG "
             "(benchmarks/photos.py, seed 0), the same files for every pipeline. Every pipeline runs in a fresh "
             f"process per round, warmed outside the clock with one batch of {BATCH} zeros through its image tower "
             "('warm-up' includes loading, or when not cached exporting, clipsearch's fast tower); images/s and "
             "CPU ms count only the indexing. Rounds alternate the order (A B B A). Peak RSS = whole process tree "
             "(decode workers included), sampled every 50 ms, median over the rounds. Load average "
             f"{load_before:.1f} before, {load_after:.1f} after.",
    )


if __name__ == "__main__":
    main()
