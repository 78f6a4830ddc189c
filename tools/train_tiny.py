"""Train clipsearch's tiny CLIP on synthetic scenes and save it as fp16 safetensors.

Pretrained CLIP weights cannot be downloaded everywhere clipsearch is tested, so it ships its own: a small
open_clip CLIP (clipsearch/world/model_configs/clipsearch-tiny.json) trained from scratch on clipsearch.world.synthetic
scenes. The run is repeatable from its seed; it ends by measuring text->image recall on a freshly generated
library (JPEG/PNG files of assorted sizes, decoded with PIL like any user's photos) and a few behaviour checks.

    .venv/bin/python tools/train_tiny.py --seed 0 --steps 800 --batch-size 128
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so a plain checkout runs it without installing clipsearch

from clipsearch.world.synthetic import (  # noqa: E402
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    TEXTURES,
    Scene,
    caption,
    generate_library,
    random_scene,
    render,
)

MODEL_NAME = "clipsearch-tiny"
CONFIG_PATH = ROOT / "clipsearch" / "world" / "model_configs" / f"{MODEL_NAME}.json"
DEFAULT_OUT = ROOT / "clipsearch" / "world" / "weights" / f"{MODEL_NAME}.safetensors"
THREADS = 2


@dataclass(frozen=True)
class TrainOptions:
    seed: int
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    pool_size: int
    group_size: int
    partial_caption_rate: float
    eval_count: int
    out: Path


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    torch.set_num_threads(THREADS)
    torch.manual_seed(options.seed)
    open_clip.add_model_config(CONFIG_PATH)
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    print(f"{MODEL_NAME}: {sum(p.numel() for p in model.parameters()):,} parameters; preprocess {preprocess}")

    started = time.time()
    scenes, images = render_training_pool(options.pool_size, options.seed, options.group_size, preprocess)
    print(f"rendered {len(scenes)} training images in {time.time() - started:.0f}s")

    train(model, tokenizer, scenes, images, options)
    train_seconds = time.time() - started
    save_checkpoint(model, options)
    print(f"trained in {train_seconds / 60:.1f} min; saved {options.out} ({options.out.stat().st_size / 1e6:.1f} MB)")

    report = evaluate(model, tokenizer, preprocess, options)
    print(json.dumps(report, indent=2))


def parse_options(argv: list[str] | None) -> TrainOptions:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--pool-size", type=int, default=32_000, help="training images rendered up front")
    parser.add_argument(
        "--group-size",
        type=int,
        default=1,
        help="scenes per group of near twins (one attribute changed) that share a batch; 1: no twins,"
        " as the bundled checkpoint was trained (4 is experimental)",
    )
    parser.add_argument(
        "--partial-caption-rate",
        type=float,
        default=0.5,
        help="share of captions cut down to a few attributes, e.g. 'red circle'",
    )
    parser.add_argument("--eval-count", type=int, default=500, help="held-out library size")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    return TrainOptions(
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        pool_size=args.pool_size,
        group_size=args.group_size,
        partial_caption_rate=args.partial_caption_rate,
        eval_count=args.eval_count,
        out=args.out,
    )


# --- data -------------------------------------------------------------------------------------------------

_worker_preprocess = None


def _init_worker(preprocess) -> None:
    global _worker_preprocess
    _worker_preprocess = preprocess
    torch.set_num_threads(1)


# Which attribute a twin changes: mostly the shape, the attribute a small ViT is slowest to pick up.
_TWIN_WEIGHTS = {"shape": 5, "colour": 2, "position": 1, "size": 1, "texture": 1, "background": 1}


def scene_twin(scene: Scene, rng: random.Random) -> Scene:
    """The scene with one attribute changed, a hard negative that only that attribute tells apart."""
    attribute = rng.choices(list(_TWIN_WEIGHTS), weights=list(_TWIN_WEIGHTS.values()))[0]
    if attribute in ("colour", "background"):
        taken = {scene.colour, scene.background}
        return replace(scene, **{attribute: rng.choice([c for c in COLOURS if c not in taken])})
    values = {"shape": SHAPES, "position": POSITIONS, "size": SIZES, "texture": TEXTURES}[attribute]
    return replace(scene, **{attribute: rng.choice([v for v in values if v != getattr(scene, attribute)])})


def _render_training_image(job: tuple[int, int, int]) -> tuple[Scene, np.ndarray]:
    seed, index, group_size = job
    rng = random.Random(f"train:{seed}:{index}")
    if group_size == 1:
        scene = random_scene(rng)
    else:
        scene = random_scene(random.Random(f"train:{seed}:group:{index // group_size}"))
        if index % group_size:
            scene = scene_twin(scene, rng)
    short = rng.randint(72, 200)
    long = round(short * rng.choice((1.0, 1.0, 4 / 3, 3 / 2, 16 / 9)))
    image = render(scene, (long, short) if rng.random() < 0.5 else (short, long), rng)
    if rng.random() < 0.7:  # most library photos are JPEGs; teach the model to ignore their artefacts
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=rng.randint(50, 95))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return scene, _worker_preprocess(image).numpy().astype(np.float16)


def render_training_pool(count: int, seed: int, group_size: int, preprocess) -> tuple[list[Scene], torch.Tensor]:
    """Render and preprocess `count` scenes on every core, in consecutive groups of near twins.

    The same seed gives the same pool.
    """
    jobs = [(seed, index, group_size) for index in range(count)]
    with multiprocessing.get_context("fork").Pool(THREADS, _init_worker, (preprocess,)) as pool:
        results = pool.map(_render_training_image, jobs, chunksize=256)
    scenes = [scene for scene, _ in results]
    images = torch.from_numpy(np.stack([pixels for _, pixels in results]))
    return scenes, images


# The shapes of query people type: "red circle", "a circle on the left", "striped blue background", ...
QUERY_FORMS = (
    ("colour", "shape"),
    ("colour", "shape"),
    ("shape",),
    ("colour",),
    ("size", "colour", "shape"),
    ("colour", "shape", "position"),
    ("shape", "position"),
    ("size", "shape"),
    ("texture", "background"),
    ("background",),
    ("colour", "shape", "background"),
)


def partial_caption(scene: Scene, rng: random.Random) -> str:
    """A query-like caption naming only some attributes: "red circle", "a small star at the top", ...

    Half follow the common query shapes above, half a random subset of attributes.
    """
    if rng.random() < 0.5:
        keep = set(rng.choice(QUERY_FORMS))
    else:
        keep = set(rng.sample(("size", "colour", "shape", "position", "texture", "background"), rng.randint(1, 3)))
    words = [getattr(scene, name) for name in ("size", "colour") if name in keep]
    if "shape" in keep or words or "position" in keep:
        words.append(scene.shape if "shape" in keep else "shape")
    if "position" in keep:
        words.append(caption(scene).split(f" {scene.shape} ")[1].split(" over ")[0])
    backdrop = [getattr(scene, name) for name in ("texture", "background") if name in keep]
    if backdrop:
        words += (["over", "a"] if words else []) + backdrop + ["background"]
    text = " ".join(words)
    return f"a {text}" if rng.random() < 0.5 else text


# --- training ---------------------------------------------------------------------------------------------


def learning_rate(step: int, options: TrainOptions) -> float:
    if step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    progress = (step - options.warmup_steps) / max(1, options.steps - options.warmup_steps)
    return options.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train(model, tokenizer, scenes: list[Scene], images: torch.Tensor, options: TrainOptions) -> None:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": options.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=options.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    loss_fn = open_clip.ClipLoss()
    rng = random.Random(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    # Whole groups of twins go into a batch together, so the loss can only be lowered by telling them apart.
    groups = torch.arange(len(scenes)).reshape(-1, options.group_size)
    groups_per_batch = options.batch_size // options.group_size
    order = torch.randperm(len(groups), generator=generator)
    cursor = 0
    model.train()
    started = time.time()
    for step in range(options.steps):
        if cursor + groups_per_batch > len(order):
            order, cursor = torch.randperm(len(groups), generator=generator), 0
        batch = groups[order[cursor : cursor + groups_per_batch]].flatten()
        cursor += groups_per_batch
        texts = [
            partial_caption(scenes[i], rng) if rng.random() < options.partial_caption_rate else caption(scenes[i])
            for i in batch.tolist()
        ]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, options)
        image_features, text_features, logit_scale = model(images[batch].float(), tokenizer(texts))
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():  # as in CLIP: keep the temperature from exceeding 100
            model.logit_scale.clamp_(0, math.log(100))
        if step % 25 == 0 or step == options.steps - 1:
            print(
                f"step {step:5d}  loss {loss.item():.3f}  scale {logit_scale.item():6.1f}"
                f"  lr {learning_rate(step, options):.2e}  {time.time() - started:5.0f}s",
                flush=True,
            )


def save_checkpoint(model, options: TrainOptions) -> None:
    options.out.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().half().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {"model": MODEL_NAME, "seed": str(options.seed), "steps": str(options.steps)}
    save_file(state, str(options.out), metadata=metadata)


# --- evaluation -------------------------------------------------------------------------------------------


@torch.no_grad()
def embed_images(model, preprocess, images: list[Image.Image]) -> torch.Tensor:
    features = [
        model.encode_image(torch.stack([preprocess(im) for im in images[i : i + 256]]))
        for i in range(0, len(images), 256)
    ]
    return F.normalize(torch.cat(features), dim=-1)


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str]) -> torch.Tensor:
    return F.normalize(model.encode_text(tokenizer(texts)), dim=-1)


def evaluate(model, tokenizer, preprocess, options: TrainOptions) -> dict:
    """Recall and behaviour checks on a held-out library written to disk, as a user's would be."""
    model.eval()
    with tempfile.TemporaryDirectory() as folder:
        records = generate_library(folder, options.eval_count, seed=options.seed + 1_000_000)
        images = [Image.open(Path(folder) / r["file"]).convert("RGB") for r in records]
    captions = [r["caption"] for r in records]
    image_features = embed_images(model, preprocess, images)

    # A query counts as found when an image with exactly its caption is in the top k (a few captions repeat).
    text_features = embed_texts(model, tokenizer, captions)
    ranking = (text_features @ image_features.T).argsort(dim=1, descending=True)
    same = torch.tensor([[captions[j] == captions[i] for j in range(len(captions))] for i in range(len(captions))])
    found = torch.gather(same, 1, ranking)
    recall = {f"R@{k}": round(found[:, :k].any(dim=1).float().mean().item(), 3) for k in (1, 5, 10)}

    red_circle = [" red circle " in c for c in captions]
    order = (embed_texts(model, tokenizer, ["red circle"]) @ image_features.T)[0].argsort(descending=True)
    n = sum(red_circle)
    red_circle_precision = sum(red_circle[i] for i in order[:n].tolist()) / max(n, 1)

    # Each image's resized, recompressed copy should find that image first.
    copies = []
    for image in images[:100]:
        buffer = io.BytesIO()
        image.resize((image.width * 2 // 3, image.height * 2 // 3), Image.Resampling.BILINEAR).save(
            buffer, "JPEG", quality=60
        )
        copies.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    copy_top1 = (embed_images(model, preprocess, copies) @ image_features.T).argmax(dim=1)
    copy_found = (copy_top1 == torch.arange(len(copies))).float().mean().item()

    # "circle" minus "red": among circles, the non-red ones should come first.
    circle, red = embed_texts(model, tokenizer, ["circle", "red"])
    scores = image_features @ F.normalize(circle - red, dim=0)
    circles = [i for i, c in enumerate(captions) if " circle " in c]
    circles.sort(key=lambda i: -scores[i].item())
    is_red = [" red circle " in captions[i] for i in circles]
    pairs = [(a, b) for a in range(len(circles)) for b in range(len(circles)) if not is_red[a] and is_red[b]]
    circle_minus_red = sum(a < b for a, b in pairs) / max(len(pairs), 1)
    top10 = scores.argsort(descending=True)[:10].tolist()

    return {
        "held_out_images": len(records),
        "text_to_image": recall,
        "red_circle_precision_at_n": {"n": n, "precision": round(red_circle_precision, 3)},
        "copy_finds_original_top1": round(copy_found, 3),
        "circle_minus_red": {
            "non_red_circle_above_red_circle_pairs": round(circle_minus_red, 3),
            "top10_non_red_circles": sum(
                " circle " in captions[i] and " red circle " not in captions[i] for i in top10
            ),
        },
    }


if __name__ == "__main__":
    main()
