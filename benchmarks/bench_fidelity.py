"""Every fast path against the reference: cosine of embeddings and top-10 ranking overlap.

Reference = ``EmbedOptions(reference=True)``: ``PIL.Image.open`` + open_clip's ``preprocess`` + ``encode_image``,
``encode_text`` at the full context length. Each fast path is what the indexer and queries really run: pixels from
the decode workers' function (``decode.load_pixels``: reduced JPEG decoding + resize) through one image backend,
and the trimmed text path. Ranking overlap = |top-10 fast ∩ top-10 reference| / 10, averaged over the queries:
every distinct caption of the held-out scenes (text → image) and every scene (image → image, the scene itself
left out: it always finds itself). "Image error / spread" = the largest (1 − cosine to its own reference) as a
share of (1 − cosine to the nearest *other* scene's reference): random weights put different pictures close
together, so a cosine alone says little; 1 would mean a vector is as far off as another picture.

Models: the bundled trained clipsearch-tiny (its held-out scenes, seed 424242) and ViT-B-32 with random weights on
the same scenes. A reduced-precision path may be a default only with a text → image overlap ≥ 0.95 on the tiny
model; an fp32-equivalent path needs cosine ≥ 0.9999. The speed tests use the same measures.

    python -m benchmarks.bench_fidelity
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks import _common

HELD_OUT_SEED = 424242  # never used in training (tools/train_tiny.py)
BACKENDS = ("torch", "torch-int8", "onnx", "onnx-int8")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def overlap_at_k(reference: np.ndarray, fast: np.ndarray, k: int = 10, drop_self: bool = False) -> float:
    """Mean |top-k(reference) ∩ top-k(fast)| / k over the rows of two score matrices. With ``drop_self`` (square
    scores of one set against itself) each row's own column is left out: an item always finds itself."""
    if drop_self:
        reference, fast = reference.astype(float), fast.astype(float)  # copies
        np.fill_diagonal(reference, -np.inf)
        np.fill_diagonal(fast, -np.inf)
    total = 0.0
    for ref_row, fast_row in zip(reference, fast):
        a = set(np.argsort(-ref_row, kind="stable")[:k].tolist())
        b = set(np.argsort(-fast_row, kind="stable")[:k].tolist())
        total += len(a & b) / k
    return total / len(reference)


def error_against_spread(got: np.ndarray, reference: np.ndarray) -> float:
    """The largest (1 - cos(got_i, reference_i)) / (1 - max_j≠i cos(reference_i, reference_j)): 0 is exact; 1 means
    a vector sits as far from its own reference as the nearest different input does. Needs two inputs or more."""
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    others = unit @ unit.T
    np.fill_diagonal(others, -np.inf)
    return float(np.max((1 - cosines(got, reference)) / (1 - others.max(axis=1))))


def scenes(count: int) -> tuple[list[str], list[str]]:
    from clipsearch.world.synthetic import generate_library

    folder = _common.work_dir() / f"held-out-scenes-{count}-seed{HELD_OUT_SEED}"
    marker = folder / "captions.jsonl"
    if marker.is_file():
        records = [json.loads(line) for line in marker.read_text().splitlines()]
    else:
        records = generate_library(folder, count, HELD_OUT_SEED)
    return [str(folder / r["file"]) for r in records], [r["caption"] for r in records]


def compare(model: str, checkpoint: str | None, count: int) -> list[dict]:
    """Rows of (path, cosine min/mean, text→image and image→image top-10 overlap) for one model."""
    from PIL import Image

    from clipsearch.imaging.decode import load_pixels
    from clipsearch.model.embed import Embedder, EmbedOptions
    from clipsearch.model.models import ModelSpec

    spec = ModelSpec.parse(model, checkpoint=checkpoint)
    paths, captions = scenes(count)
    queries = sorted(set(captions))
    reference = Embedder.load(spec, EmbedOptions(reference=True))
    ref_images = np.concatenate([
        reference.encode_images([Image.open(p).convert("RGB") for p in paths[i : i + 32]])
        for i in range(0, len(paths), 32)
    ])
    ref_texts = reference.encode_texts(queries)
    ref_t2i, ref_i2i = ref_texts @ ref_images.T, ref_images @ ref_images.T

    rows = []

    def add(path: str, images: np.ndarray, texts: np.ndarray) -> None:
        cos = np.sum(images * ref_images, axis=1)
        rows.append({
            "model": model, "path": path,
            "image_cos_min": float(cos.min()), "image_cos_mean": float(cos.mean()),
            "image_spread": error_against_spread(images, ref_images),
            "text_cos_min": float(np.min(np.sum(texts * ref_texts, axis=1))),
            "t2i_overlap": overlap_at_k(ref_t2i, texts @ images.T),
            "i2i_overlap": overlap_at_k(ref_i2i, images @ images.T, drop_self=True),
        })

    default = Embedder.load(spec)
    texts = default.encode_texts(queries)
    add(f"text: trimmed to real length, {default.text_backend} (auto's choice); images: reference",
        ref_images, texts)
    int8_text = Embedder.load(spec, EmbedOptions(text_backend="torch-int8")).encode_texts(queries)
    add("text: trimmed + torch-int8 Linear layers; images: reference", ref_images, int8_text)
    torch_default = Embedder.load(spec, EmbedOptions(image_backend="torch"))
    same = np.concatenate([torch_default.encode_images([Image.open(p).convert("RGB") for p in paths[i : i + 32]])
                           for i in range(0, len(paths), 32)])
    add("encode_images (own resize, no draft), torch fp32", same, texts)
    for backend in BACKENDS:
        embedder = Embedder.load(spec, EmbedOptions(image_backend=backend))
        pixels = np.stack([load_pixels(p, embedder.pixel_spec) for p in paths])
        images = np.concatenate([embedder.encode_pixels(pixels[i : i + 32]) for i in range(0, len(paths), 32)])
        chosen = " (auto's choice)" if backend == default.image_backend else ""
        add(f"indexing: worker pixels (JPEG draft) + {backend}{chosen}", images, texts)
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=120, help="held-out scenes (default 120)")
    parser.add_argument("--vit-count", type=int, default=48, help="scenes for the (slow) ViT-B-32 rows")
    args = parser.parse_args(argv)
    from clipsearch.model.models import ModelSpec

    rows = _common.run_isolated("benchmarks.bench_fidelity", "compare", model="clipsearch-tiny", checkpoint=None,
                                count=args.count)
    vit = _common.vit_b32_spec()
    rows += _common.run_isolated("benchmarks.bench_fidelity", "compare", model="ViT-B-32",
                                 checkpoint=vit.checkpoint, count=min(args.count, args.vit_count))
    table = [[r["model"], r["path"], r["image_cos_min"], r["image_cos_mean"], f"{r['image_spread']:.4f}",
              r["text_cos_min"], r["t2i_overlap"], r["i2i_overlap"]] for r in rows]
    weights = ModelSpec.parse("clipsearch-tiny").identity()["weights_sha256"]
    note = f"clipsearch-tiny weights sha256 {weights[:12]}…; ViT-B-32: random weights, seed 0."
    return _common.print_table(
        f"Fidelity against the reference path (held-out scenes, seed {HELD_OUT_SEED}: {args.count} for the "
        f"tiny model, {min(args.count, args.vit_count)} for ViT-B-32)",
        ["model", "fast path", "image cos min", "image cos mean", "image error / spread", "text cos min",
         "top-10 overlap text→image", "top-10 overlap image→image (itself left out)"],
        table,
        note=note,
    )


if __name__ == "__main__":
    main()
