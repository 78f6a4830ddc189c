"""Train clipsearch's tiny CLIP on the synthetic world and save it as fp16 safetensors.

Pretrained CLIP weights cannot be downloaded everywhere clipsearch is tested, so it ships its own: a small
open_clip CLIP (clipsearch/world/model_configs/clipsearch-tiny.json) trained from scratch on clipsearch.world.synthetic
scenes. The run is repeatable from its seed. It never sees the held-out attribute combinations
(`synthetic.is_held_out`), chooses its checkpoint on a validation seed, and ends by measuring the chosen model
on libraries of a fresh seed (JPEG/PNG files of assorted sizes, decoded with PIL like any user's photos), seen
and unseen combinations apart. The tests' seed (tests/conftest.py HELD_OUT_SEED) is never used here.

    .venv/bin/python tools/train_tiny.py --seed 0
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import multiprocessing
import random
import resource
import statistics
import sys
import tempfile
import time
import zlib
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

from clipsearch.world import synthetic as world  # noqa: E402
from clipsearch.world.synthetic import (  # noqa: E402
    ShapeScene,
    caption,
    generate_library,
    is_held_out,
    query_text,
    random_scene,
    record_matches,
    render,
    with_conditions,
)

MODEL_NAME = "clipsearch-tiny"
CONFIG_PATH = ROOT / "clipsearch" / "world" / "model_configs" / f"{MODEL_NAME}.json"
DEFAULT_OUT = ROOT / "clipsearch" / "world" / "weights" / f"{MODEL_NAME}.safetensors"
THREADS = 2  # processes that render the training pool
# A little more of the shape scenes than a library has (0.2): telling a star from a cross is learnt slowly.
TRAIN_PHOTO_SHARE = 0.75
# Seeds derived from --seed: the validation libraries choose the checkpoint, the report libraries are looked at
# only once, after training. Neither is the tests' seed.
VALIDATION_SEED_OFFSET = 2_000_000
REPORT_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class TrainOptions:
    seed: int
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    pool_size: int
    family_size: int
    partial_caption_rate: float
    eval_every: int
    bf16: bool
    threads: int
    temperature_lr_scale: float
    validation_count: int
    report_count: int
    out: Path


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    open_clip.add_model_config(CONFIG_PATH)
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    print(f"{MODEL_NAME}: {sum(p.numel() for p in model.parameters()):,} parameters; preprocess {preprocess}")
    print(f"options: {options}", flush=True)

    started = time.time()
    pool = render_training_pool(options.pool_size, options.seed, options.family_size, preprocess)
    print(f"rendered {len(pool.scenes)} training images in {time.time() - started:.0f}s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        validation = EvalSet.generate(Path(folder) / "validation", options.seed + VALIDATION_SEED_OFFSET,
                                      options.validation_count)
        print(f"validation libraries ready ({time.time() - started:.0f}s)", flush=True)
        best = train(model, tokenizer, preprocess, pool, validation, options)
    train_seconds = time.time() - started
    model.load_state_dict(best["state"])
    save_checkpoint(model, options, best["step"])
    print(f"trained in {train_seconds / 60:.1f} min; chose step {best['step']} (validation score "
          f"{best['score']:.3f}); saved {options.out} ({options.out.stat().st_size / 1e6:.1f} MB)", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        report_set = EvalSet.generate(Path(folder), options.seed + REPORT_SEED_OFFSET, options.report_count)
        report = measure(model, tokenizer, preprocess, report_set)
    report["training_captions_seen_verbatim"] = {
        part: round(sum(caption_of(r) in pool.captions for r in records) / max(1, len(records)), 3)
        for part, records in (("fresh_seed", report_set.mixed.records), ("unseen", report_set.unseen.records))
    }
    print(json.dumps(report, indent=2))
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    print(f"total {(time.time() - started) / 60:.1f} min wall, {cpu / 60:.1f} min of CPU time (all processes)")


def parse_options(argv: list[str] | None) -> TrainOptions:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--pool-size", type=int, default=48_000, help="training images rendered up front")
    parser.add_argument(
        "--family-size",
        type=int,
        default=2,
        help="renders of one scene that share a batch, all but one with one thing changed (often the time of"
        " day or the weather): hard negatives that only that thing tells apart",
    )
    parser.add_argument("--partial-caption-rate", type=float, default=0.5,
                        help="share of captions cut down to query shapes, e.g. 'a red boat', 'at night'")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between validation checkpoints")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads for training (1 on a busy 2-core machine: two threads that wait on each"
                        " other ran a step in 2.9 s at load 4, one thread in 1.1 s)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast for the forward pass (measured slower here: 0.85 s a step against 0.5 s"
                        " in fp32 on the 2-core VM, whose backward pass in bf16 costs twice as much)")
    parser.add_argument("--temperature-lr-scale", type=float, default=10.0,
                        help="learning rate of the logit scale, as a multiple of --lr")
    parser.add_argument("--validation-count", type=int, default=300, help="validation library size")
    parser.add_argument("--report-count", type=int, default=600, help="fresh-seed report library size")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.batch_size % args.family_size:
        parser.error("--batch-size must be a multiple of --family-size")
    return TrainOptions(**{k.replace("-", "_"): v for k, v in vars(args).items()})


# --- data -------------------------------------------------------------------------------------------------

_worker_crop = None


def _init_worker(crop) -> None:
    global _worker_crop
    _worker_crop = crop
    torch.set_num_threads(1)


# What a family member changes. Objects, shapes and positions are what a small ViT learns last (colours, places
# and times come almost free), so most families differ in those; time-of-day twins teach directions.
_PHOTO_CHANGES = {"time": 2, "weather": 1, "colour": 2, "object": 4, "position": 4, "place": 1}
_SHAPE_CHANGES = {"shape": 5, "colour": 2, "position": 3, "size": 1, "texture": 1, "background": 1}


def family_member(scene, rng: random.Random):
    """The scene with one thing changed (never into a held-out combination), or None if that failed."""
    for _ in range(20):
        if isinstance(scene, ShapeScene):
            what = rng.choices(list(_SHAPE_CHANGES), weights=list(_SHAPE_CHANGES.values()))[0]
            if what in ("colour", "background"):
                taken = {scene.colour, scene.background}
                other = replace(scene, **{what: rng.choice([c for c in world.COLOURS if c not in taken])})
            else:
                values = {"shape": world.SHAPES, "position": world.POSITIONS, "size": world.SIZES,
                          "texture": world.TEXTURES}[what]
                other = replace(scene, **{what: rng.choice([v for v in values if v != getattr(scene, what)])})
        else:
            what = rng.choices(list(_PHOTO_CHANGES), weights=list(_PHOTO_CHANGES.values()))[0]
            ground = [i for i, t in enumerate(scene.things) if t.object not in world.SKY_OBJECTS]
            if what == "time":
                other = with_conditions(scene, time=rng.choice([t for t in world.TIMES if t != scene.time]))
            elif what == "weather":
                other = with_conditions(scene, weather=rng.choice([w for w in world.WEATHERS if w != scene.weather]))
            elif what == "place":
                place = rng.choice([p for p in world.PLACES if p != scene.place])
                if not all(place in world.OBJECT_PLACES[scene.things[i].object] for i in ground):
                    continue
                other = replace(scene, place=place)
            elif not ground:
                continue
            else:
                i = rng.choice(ground)
                thing = scene.things[i]
                if what == "colour":
                    new = replace(thing, colour=rng.choice([c for c in world.OBJECT_COLOURS[thing.object]
                                                            if c != thing.colour]))
                elif what == "object":
                    names = [o for o in world.OBJECTS if o != thing.object and scene.place in world.OBJECT_PLACES[o]
                             and thing.colour in world.OBJECT_COLOURS[o]]
                    if not names:
                        continue
                    new = replace(thing, object=rng.choice(names))
                else:
                    free = [p for p in world.PHOTO_POSITIONS if p not in {t.position for t in scene.things}]
                    if not free:
                        continue
                    new = replace(thing, position=rng.choice(free))
                things = [*scene.things[:i], new, *scene.things[i + 1:]]
                ground_things = sorted((t for t in things if t.object not in world.SKY_OBJECTS),
                                       key=lambda t: world.PHOTO_POSITIONS.index(t.position))
                other = replace(scene, things=tuple(ground_things) + tuple(
                    t for t in things if t.object in world.SKY_OBJECTS))
        if other != scene and not is_held_out(other):
            return other
    return None


def _render_family(job: tuple[int, int, int]) -> list[tuple[object, np.ndarray]]:
    """One family: a scene from the seen split and its changed copies, same layout, same size."""
    seed, index, family_size = job
    rng = random.Random(f"train:{seed}:{index}")
    scene = random_scene(rng, split="seen", photo_share=TRAIN_PHOTO_SHARE)
    members = [scene]
    while len(members) < family_size:
        members.append(family_member(scene, rng) or random_scene(rng, split="seen", photo_share=TRAIN_PHOTO_SHARE))
    short = rng.randint(100, 176)
    long = min(320, round(short * rng.choice((1.0, 1.0, 4 / 3, 3 / 2, 16 / 9))))
    size = (long, short) if rng.random() < 0.5 else (short, long)
    layout_seed = rng.getrandbits(64)
    quality = rng.randint(50, 95) if rng.random() < 0.7 else None  # most library photos are JPEGs
    out = []
    for member in members:
        image = render(member, size, random.Random(layout_seed))
        if quality:
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=quality)
            image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        out.append((member, np.asarray(_worker_crop(image), dtype=np.uint8)))
    return out


@dataclass
class Pool:
    scenes: list  # PhotoScene | ShapeScene, in families of `family_size` consecutive entries
    pixels: torch.Tensor  # uint8 (n, size, size, 3), resized and centre-cropped as open_clip's preprocess does
    attributes: "AttributeTable"
    captions: set[str]


def render_training_pool(count: int, seed: int, family_size: int, preprocess) -> Pool:
    """Render `count` images (count / family_size families) on every core; the same seed gives the same pool."""
    crop = _resize_and_crop(preprocess)
    jobs = [(seed, index, family_size) for index in range(count // family_size)]
    with multiprocessing.get_context("fork").Pool(THREADS, _init_worker, (crop,)) as pool:
        families = pool.map(_render_family, jobs, chunksize=64)
    scenes = [scene for family in families for scene, _ in family]
    pixels = torch.from_numpy(np.stack([p for family in families for _, p in family]))
    return Pool(scenes, pixels, AttributeTable.of([world.attributes(s) for s in scenes]),
                {caption(s) for s in scenes})


def _resize_and_crop(preprocess):
    """open_clip's preprocess up to (not including) ToTensor: the pool is kept as uint8 pixels."""
    from torchvision import transforms

    return transforms.Compose(
        [t for t in preprocess.transforms if not isinstance(t, (transforms.ToTensor, transforms.Normalize))]
    )


def _normaliser(preprocess):
    from torchvision import transforms

    norm = next(t for t in preprocess.transforms if isinstance(t, transforms.Normalize))
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(norm.std).view(1, 3, 1, 1) * 255
    return lambda pixels: (pixels.permute(0, 3, 1, 2).float() - mean) / std


# --- captions and which images they describe --------------------------------------------------------------

_SCENE_KEYS = ("place", "time", "weather", "background", "texture")
_OBJECT_KEYS = ("object", "colour", "position", "size")
_ANY = -2  # a wanted value meaning "anything"
_VOCAB = {
    value: i
    for i, value in enumerate(sorted({*world.PLACES, *world.TIMES, *world.WEATHERS, *world.COLOURS, *world.OBJECTS,
                                      *world.SKY_OBJECTS, *world.SHAPES, *world.SIZES, *world.POSITIONS, "sky",
                                      *world.TEXTURES}))
}
_SLOTS = 3


@dataclass
class AttributeTable:
    """Every image's attributes as small integers, so a batch's (text, image) matches are one numpy expression."""

    scene: np.ndarray  # (n, 5): place, time, weather, background, texture (-1: none)
    objects: np.ndarray  # (n, 3, 4): per object slot: object, colour, position, size (-1: none)
    caption_ids: np.ndarray  # (n,): a checksum of the caption, equal for equal captions

    @classmethod
    def of(cls, records: list[dict]) -> AttributeTable:
        scene = np.full((len(records), len(_SCENE_KEYS)), -1, dtype=np.int16)
        objects = np.full((len(records), _SLOTS, len(_OBJECT_KEYS)), -1, dtype=np.int16)
        for i, record in enumerate(records):
            for k, key in enumerate(_SCENE_KEYS):
                if record.get(key) is not None:
                    scene[i, k] = _VOCAB[record[key]]
            for s, obj in enumerate(record["objects"]):
                for k, key in enumerate(_OBJECT_KEYS):
                    if obj.get(key) is not None:
                        objects[i, s, k] = _VOCAB[obj[key]]
        ids = np.array([zlib.crc32(caption_of(r).encode()) for r in records], dtype=np.int64)
        return cls(scene, objects, ids)


def caption_of(record: dict) -> str:
    return record.get("caption") or caption(world.scene_from_record(record))


def wanted_arrays(wanted: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """A text's constraints as arrays (`_ANY` where it does not care); None means its full caption."""
    scene = np.full(len(_SCENE_KEYS), _ANY, dtype=np.int16)
    obj = np.full(len(_OBJECT_KEYS), _ANY, dtype=np.int16)
    for key, value in (wanted or {}).items():
        if key == "shape":
            key = "object"
        if key in _SCENE_KEYS:
            scene[_SCENE_KEYS.index(key)] = _VOCAB[value]
        else:
            obj[_OBJECT_KEYS.index(key)] = _VOCAB[value]
    return scene, obj


def match_matrix(wanted: list[dict | None], texts_of: np.ndarray, table: AttributeTable,
                 images: np.ndarray) -> np.ndarray:
    """(texts, images) booleans: image j shows what text i asks for. A full caption matches equal captions."""
    arrays = [wanted_arrays(w) for w in wanted]
    w_scene = np.stack([a for a, _ in arrays])[:, None, :]
    w_obj = np.stack([b for _, b in arrays])[:, None, None, :]
    s_scene = table.scene[images][None]
    s_obj = table.objects[images][None]
    scene_ok = ((w_scene == _ANY) | (w_scene == s_scene)).all(-1)
    any_object_wanted = (w_obj != _ANY).any(-1)[:, :, 0]  # (texts, 1)
    object_ok = (((w_obj == _ANY) | (w_obj == s_obj)).all(-1) & (s_obj[..., 0] >= 0)).any(-1)
    partial = scene_ok & (object_ok | ~any_object_wanted)
    full = table.caption_ids[texts_of][:, None] == table.caption_ids[images][None, :]
    is_full = np.array([w is None for w in wanted])[:, None]
    return np.where(is_full, full, partial)


def partial_wanted(scene, rng: random.Random) -> dict:
    """Some of a scene's attributes, shaped like a query someone would type: "a red boat", "a forest in the
    snow", "at night", "a tree on the left", "a red circle", "a striped blue background"."""
    if isinstance(scene, ShapeScene):
        form = rng.choice((("shape",), ("colour", "shape"), ("colour", "shape"), ("shape", "position"),
                           ("colour",), ("size", "shape"), ("size", "colour", "shape"), ("colour", "shape", "position"),
                           ("background",), ("texture", "background"), ("colour", "shape", "background"),
                           ("shape", "texture")))
        return {k: getattr(scene, k) for k in form}
    ground = [t for t in scene.things if t.object not in world.SKY_OBJECTS]
    sky = [t for t in scene.things if t.object in world.SKY_OBJECTS]
    parts = ["place", "time", "weather"] + (["thing"] if ground else []) + (["sky"] if sky else [])
    weights = {"place": 3, "time": 3, "weather": 2 if scene.weather != "clear" else 0.3, "thing": 5, "sky": 0.6}
    count = rng.choices((1, 2, 3), weights=(4, 4, 1.5))[0]
    chosen: set[str] = set()
    while len(chosen) < min(count, len(parts)):
        chosen.add(rng.choices(parts, weights=[weights[p] for p in parts])[0])
    wanted: dict[str, str] = {k: getattr(scene, k) for k in ("place", "time", "weather") if k in chosen}
    if "thing" in chosen:
        thing = rng.choice(ground)
        if rng.random() < 0.1:
            wanted["colour"] = thing.colour
        else:
            wanted["object"] = thing.object
            if rng.random() < 0.55:
                wanted["colour"] = thing.colour
            if rng.random() < 0.45:
                wanted["position"] = thing.position
    elif "sky" in chosen:
        wanted["object"] = sky[0].object
    return wanted


# Single words people type for one attribute: "night", "snow", "red".
_BARE_WORDS = {("time",): "time", ("weather",): "weather", ("colour",): "colour"}


def wanted_words(wanted: dict, rng: random.Random) -> str:
    """query_text, sometimes as a bare word ("night", "snow", "red"), without its article ("red boat"), or in
    the "a photo of ..." template that zero-shot naming uses."""
    text = query_text(**wanted)
    bare = _BARE_WORDS.get(tuple(sorted(wanted)))
    if bare and rng.random() < 0.5:
        return wanted[bare]
    if text.startswith(("a ", "an ")):
        roll = rng.random()
        if roll < 0.25:
            return text.split(" ", 1)[1]
        if roll < 0.35:
            return "a photo of " + text
    return text


def batch_texts(scenes: list, rng: random.Random, partial_rate: float) -> tuple[list[str], list[dict | None]]:
    texts, wanted = [], []
    for scene in scenes:
        if rng.random() < partial_rate:
            w = partial_wanted(scene, rng)
            texts.append(wanted_words(w, rng))
            wanted.append(w)
        else:
            texts.append(caption(scene))
            wanted.append(None)
    return texts, wanted


# --- training ---------------------------------------------------------------------------------------------


def learning_rate(step: int, options: TrainOptions) -> float:
    if step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    progress = (step - options.warmup_steps) / max(1, options.steps - options.warmup_steps)
    return options.lr * 0.5 * (1 + math.cos(math.pi * progress))


def multi_positive_clip_loss(image_features, text_features, logit_scale, matches: torch.Tensor) -> torch.Tensor:
    """open_clip's ClipLoss where a text may describe several images of the batch ("a boat" and every boat).

    Each direction's cross-entropy targets are spread evenly over all true matches instead of the diagonal
    alone; with one match per row and column it is exactly ClipLoss. Without this, a partial caption's other
    matches in the batch count as negatives and the loss fights itself.
    """
    logits = logit_scale * text_features @ image_features.T  # (texts, images)
    targets = matches.float()
    text_loss = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    image_loss = -(targets / targets.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return (text_loss + image_loss) / 2


def encode_text_trimmed(model, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text` run only up to the batch's longest text: the tower pools at the end-of-text token
    under a causal mask, so the padding after it changes nothing (clipsearch.embed does the same at query time)."""
    length = int(tokens.argmax(dim=-1).max().item()) + 1  # the end-of-text token has the highest id
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
    return x @ model.text_projection


class CachedTokenizer:
    """open_clip's tokenizer, memoised: the same few thousand query strings come back every step."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for text, tokens in zip(missing, self.tokenizer(missing)):
                self.cache[text] = tokens
        return torch.stack([self.cache[t] for t in texts])


def train(model, tokenizer, preprocess, pool: Pool, validation: EvalSet, options: TrainOptions) -> dict:
    """Train for `options.steps`; return the validation-best checkpoint {"state", "step", "score"}."""
    # The token embedding is 49,408 rows, of which this world's words use about 150: a sparse gradient and a lazy
    # Adam for it skip a dense update of millions of untouched weights every step (no weight decay there anyway).
    model.token_embedding.sparse = True
    dense = [(n, p) for n, p in model.named_parameters() if n != "token_embedding.weight"]
    decay = [p for n, p in dense if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in dense if not (p.ndim >= 2 and "embedding" not in n) and n != "logit_scale"]
    # The temperature is one number on a log scale: at the weights' learning rate it would crawl from 14 to
    # about 22 in a run this short, and a soft softmax barely pushes apart scenes that differ in one object.
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": options.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": [model.logit_scale], "weight_decay": 0.0, "lr_scale": options.temperature_lr_scale},
        ],
        lr=options.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    sparse_optimizer = torch.optim.SparseAdam([model.token_embedding.weight], lr=options.lr, betas=(0.9, 0.98),
                                              eps=1e-6)
    optimizers = (optimizer, sparse_optimizer)
    tokens = CachedTokenizer(tokenizer)
    normalise = _normaliser(preprocess)
    rng = random.Random(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    # Whole families go into a batch together, so the loss can only be lowered by telling them apart.
    families = torch.arange(len(pool.scenes)).reshape(-1, options.family_size)
    per_batch = options.batch_size // options.family_size
    order = torch.randperm(len(families), generator=generator)
    cursor = 0
    best = {"state": None, "step": -1, "score": -1.0}
    started, cpu_started = time.time(), time.process_time()
    for step in range(options.steps):
        model.train()
        if cursor + per_batch > len(order):
            order, cursor = torch.randperm(len(families), generator=generator), 0
        batch = families[order[cursor : cursor + per_batch]].flatten()
        cursor += per_batch
        index = batch.numpy()
        texts, wanted = batch_texts([pool.scenes[i] for i in index], rng, options.partial_caption_rate)
        matches = torch.from_numpy(match_matrix(wanted, index, pool.attributes, index))
        for group in (*optimizer.param_groups, *sparse_optimizer.param_groups):
            group["lr"] = learning_rate(step, options) * group.get("lr_scale", 1.0)
        # fp32 by default: on the 2-core development VM bf16 autocast made a step 1.7x slower (weights and
        # optimiser stay fp32 either way).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=options.bf16):
            image_features = model.encode_image(normalise(pool.pixels[batch]))
            text_features = encode_text_trimmed(model, tokens(texts))
        loss = multi_positive_clip_loss(F.normalize(image_features.float(), dim=-1),
                                        F.normalize(text_features.float(), dim=-1), model.logit_scale.exp(), matches)
        logit_scale = model.logit_scale.exp()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in dense], 1.0)
        for opt in optimizers:
            opt.step()
        with torch.no_grad():  # as in CLIP: keep the temperature from exceeding 100
            model.logit_scale.clamp_(0, math.log(100))
        if step % 25 == 0 or step == options.steps - 1:
            print(
                f"step {step:5d}  loss {loss.item():.3f}  scale {logit_scale.item():6.1f}"
                f"  lr {learning_rate(step, options):.2e}  {time.time() - started:5.0f}s"
                f"  (cpu {time.process_time() - cpu_started:5.0f}s)",
                flush=True,
            )
        if (step + 1) % options.eval_every == 0 or step == options.steps - 1:
            began = time.time()
            figures = measure(model, tokenizer, preprocess, validation, quick=True)
            score = validation_score(figures)
            worst = {k: figures["fresh_seed"][k]["worst"][:3] for k in ("single", "pairs", "positions")
                     if k in figures["fresh_seed"]}
            print(f"validation at step {step + 1}: score {score:.3f} {json.dumps(figures['summary'])}"
                  f" ({time.time() - began:.0f}s); worst {json.dumps(worst)}", flush=True)
            if score >= best["score"]:
                best = {"state": copy.deepcopy(model.state_dict()), "step": step + 1, "score": score}
    model.token_embedding.sparse = False
    return best


def save_checkpoint(model, options: TrainOptions, step: int) -> None:
    options.out.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().half().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {"model": MODEL_NAME, "seed": str(options.seed), "steps": str(options.steps), "chosen_step": str(step)}
    save_file(state, str(options.out), metadata=metadata)


# --- evaluation -------------------------------------------------------------------------------------------


@dataclass
class Library:
    """A generated library on disk, decoded back with PIL as a user's photos would be."""

    records: list[dict]
    images: list[Image.Image]

    @classmethod
    def generate(cls, folder: Path, count: int, seed: int, **kwargs) -> Library:
        records = generate_library(folder, count, seed, **kwargs)
        return cls(records, [Image.open(folder / r["file"]).convert("RGB") for r in records])


@dataclass
class EvalSet:
    mixed: Library  # a fresh seed, every kind of scene (mostly seen combinations, as chance has it)
    unseen: Library  # only scenes with a held-out combination
    families: Library  # photo scenes rendered by day, at sunset and at night

    @classmethod
    def generate(cls, folder: Path, seed: int, count: int) -> EvalSet:
        return cls(
            Library.generate(folder / "mixed", count, seed),
            Library.generate(folder / "unseen", count // 3, seed + 1, split="unseen"),
            Library.generate(folder / "families", count // 6, seed + 2, variants=("day", "sunset", "night"),
                             photo_share=1.0),
        )


@torch.no_grad()
def embed_images(model, preprocess, images: list[Image.Image]) -> torch.Tensor:
    features = [
        model.encode_image(torch.stack([preprocess(im) for im in images[i : i + 128]]))
        for i in range(0, len(images), 128)
    ]
    return F.normalize(torch.cat(features), dim=-1)


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str]) -> torch.Tensor:
    out = [model.encode_text(tokenizer(texts[i : i + 256])) for i in range(0, len(texts), 256)]
    return F.normalize(torch.cat(out), dim=-1)


def caption_recall(records, image_features, text_features) -> dict:
    """Text->image recall with each record's caption; an image with exactly that caption counts as found."""
    captions = [r["caption"] for r in records]
    ranking = (text_features @ image_features.T).argsort(dim=1, descending=True)
    same = torch.tensor([[c == d for d in captions] for c in captions])
    found = torch.gather(same, 1, ranking)
    return {f"R@{k}": round(found[:, :k].any(dim=1).float().mean().item(), 3) for k in (1, 5, 10)}


# The queries scored, by kind: each a dict of wanted attributes (see synthetic.query_text / record_matches).
SINGLE_QUERIES = (
    [{"place": p} for p in world.PLACES]
    + [{"time": t} for t in world.TIMES]
    + [{"weather": w} for w in ("snow", "rain", "fog")]
    + [{"object": o} for o in (*world.OBJECTS, *world.SKY_OBJECTS)]
    + [{"shape": s} for s in world.SHAPES]
)
PAIR_KINDS = (("colour", "object"), ("place", "weather"), ("place", "time"), ("colour", "shape"), ("object", "place"),
              ("object", "time"))
POSITION_KINDS = (("object", "position"), ("shape", "position"))


def candidate_queries(records: list[dict], kinds, minimum: int = 5) -> list[dict]:
    """Every combination of the given kinds that at least `minimum` records show (so P@5 can be 1)."""
    seen = {}
    for record in records:
        for kind in kinds:
            values = _values(record, kind)
            for value in values:
                key = tuple(zip(kind, value))
                seen[key] = seen.get(key, 0) + 1
    queries = []
    for key in sorted(seen):
        wanted = dict(key)
        if "shape" in wanted and "object" in wanted:
            continue
        if sum(record_matches(r, **wanted) for r in records) >= minimum:
            queries.append(wanted)
    return queries


def _values(record: dict, kind: tuple[str, ...]) -> list[tuple]:
    out = set()
    for obj in record["objects"] or [{}]:
        value = []
        for key in kind:
            if key == "shape":
                v = obj.get("object") if record["kind"] == "shapes" else None
            elif key in ("object", "colour", "position"):
                v = obj.get(key) if (record["kind"] == "photo" or key != "object") else None
                if key == "position" and v == "sky":
                    v = None
            else:
                v = record.get(key)
                if key == "weather" and v == "clear":
                    v = None
            value.append(v)
        if None not in value:
            out.add(tuple(value))
    return sorted(out)


def precision_at(records, image_features, text_features, queries, k: int = 5) -> list[float]:
    top = (text_features @ image_features.T).topk(k, dim=1).indices.tolist()
    return [sum(record_matches(records[i], **q) for i in row) / k for row, q in zip(top, queries)]


def query_figures(model, tokenizer, library: Library, image_features) -> dict:
    figures = {}
    for name, queries in (
        ("single", [q for q in SINGLE_QUERIES if sum(record_matches(r, **q) for r in library.records) >= 5]),
        ("pairs", candidate_queries(library.records, PAIR_KINDS)),
        ("positions", candidate_queries(library.records, POSITION_KINDS)),
    ):
        if not queries:
            continue
        texts = [query_text(**q) for q in queries]
        scores = precision_at(library.records, image_features, embed_texts(model, tokenizer, texts), queries)
        worst = sorted(zip(scores, texts))[:5]
        figures[name] = {"P@5": round(statistics.mean(scores), 3), "queries": len(queries),
                         "worst": [f"{t}: {s:.1f}" for s, t in worst]}
    return figures


def direction_figures(model, tokenizer, library: Library, image_features, start="day", goal="night",
                      words=(("day", "night"), ("day", "at night"))) -> dict:
    """For each scene rendered at `start` and `goal`: the goal render's rank (1 = best, the start image itself
    left out) under `start image - start word + goal word`, against its rank under the start image alone."""
    by_group = {}
    for i, r in enumerate(library.records):
        by_group.setdefault(r["group"], {})[r["time"]] = i
    pairs = [(g[start], g[goal]) for g in by_group.values() if start in g and goal in g]
    if not pairs:
        return {}
    result = {}

    def ranks(queries: torch.Tensor) -> list[int]:
        out = []
        for (a, b), q in zip(pairs, queries):
            scores = image_features @ q
            scores[a] = -math.inf
            out.append(int((scores > scores[b]).sum().item()) + 1)
        return out

    plain = ranks(image_features[[a for a, _ in pairs]])
    result["more_like_this"] = {"top5": round(sum(r <= 5 for r in plain) / len(plain), 3),
                                "median_rank": statistics.median(plain)}
    for minus, plus in words:
        t = embed_texts(model, tokenizer, [minus, plus])
        q = F.normalize(image_features[[a for a, _ in pairs]] - t[0] + t[1], dim=-1)
        got = ranks(q)
        result[f"- {minus} + {plus}"] = {"top5": round(sum(r <= 5 for r in got) / len(got), 3),
                                         "median_rank": statistics.median(got)}
    result["scenes"] = len(pairs)
    return result


def copy_figure(model, preprocess, library: Library, image_features, count: int = 60) -> float:
    """Share of resized, recompressed copies that find their original first."""
    copies = []
    for image in library.images[:count]:
        buffer = io.BytesIO()
        image.resize((image.width * 2 // 3, image.height * 2 // 3), Image.Resampling.BILINEAR).save(
            buffer, "JPEG", quality=60)
        copies.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    top1 = (embed_images(model, preprocess, copies) @ image_features.T).argmax(dim=1)
    return round((top1 == torch.arange(len(copies))).float().mean().item(), 3)


def measure(model, tokenizer, preprocess, sets: EvalSet, quick: bool = False) -> dict:
    """Recall, query precision and directions on the libraries of one seed; seen and unseen apart."""
    model.eval()
    report = {}
    for name, library in (("fresh_seed", sets.mixed), ("unseen", sets.unseen)):
        features = embed_images(model, preprocess, library.images)
        captions = embed_texts(model, tokenizer, [r["caption"] for r in library.records])
        part = {"images": len(library.records), "captions": caption_recall(library.records, features, captions)}
        part.update(query_figures(model, tokenizer, library, features))
        if name == "fresh_seed":
            seen = [i for i, r in enumerate(library.records) if not r["held_out"]]
            sub = [library.records[i] for i in seen]
            part["seen_only_captions"] = caption_recall(sub, features[seen], captions[seen])
            if not quick:
                part["copy_finds_original_top1"] = copy_figure(model, preprocess, library, features)
        report[name] = part
    features = embed_images(model, preprocess, sets.families.images)
    report["directions"] = direction_figures(model, tokenizer, sets.families, features)
    if not quick:
        report["directions_night_to_day"] = direction_figures(model, tokenizer, sets.families, features, "night",
                                                              "day", (("night", "day"),))
    report["summary"] = {
        "R@1": report["fresh_seed"]["captions"]["R@1"],
        "R@5": report["fresh_seed"]["captions"]["R@5"],
        "single": report["fresh_seed"].get("single", {}).get("P@5"),
        "pairs": report["fresh_seed"].get("pairs", {}).get("P@5"),
        "positions": report["fresh_seed"].get("positions", {}).get("P@5"),
        "direction_top5": report["directions"].get("- day + night", {}).get("top5"),
        "more_like_this_top5": report["directions"].get("more_like_this", {}).get("top5"),
        "unseen_R@5": report["unseen"]["captions"]["R@5"],
        "unseen_single": report["unseen"].get("single", {}).get("P@5"),
    }
    return report


def validation_score(figures: dict) -> float:
    keys = ("R@1", "R@5", "single", "pairs", "positions", "direction_top5", "unseen_R@5", "unseen_single")
    return statistics.mean(figures["summary"][k] or 0.0 for k in keys)


if __name__ == "__main__":
    main()
