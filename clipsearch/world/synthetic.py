"""Procedural captioned scenes: one coloured shape over a textured background.

They stand in for photos wherever a real CLIP model cannot be downloaded: the tiny CLIP that ships with
clipsearch is trained on them (tools/train_tiny.py), and tests and demos search libraries made of them.
Only PIL and numpy are needed, so generating a library never imports torch.

    python -m clipsearch.world.synthetic demo-library --count 200 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Far apart in RGB and in name, so that a tiny model seeing 64 px images can tell each pair apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 220, 20),
    "green": (30, 160, 50),
    "blue": (30, 80, 220),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "centre")
TEXTURES = ("plain", "striped", "dotted", "checkered")

_POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}
# Shape centre as a fraction of the central square of the image (x, y).
_POSITION_CENTRES = {
    "left": (0.28, 0.5),
    "right": (0.72, 0.5),
    "top": (0.5, 0.28),
    "bottom": (0.5, 0.72),
    "centre": (0.5, 0.5),
}
# Shape radius as a fraction of the image's shorter side: a small shape still spans about 18 of the model's
# 64 pixels, enough to tell a star from a circle.
_SIZE_RADII = {"small": (0.13, 0.15), "large": (0.23, 0.26)}

_SUPERSAMPLE = 2  # the shape is drawn at 2x and scaled down, which anti-aliases its edges


@dataclass(frozen=True)
class Scene:
    """What one synthetic image shows; `caption(scene)` says it in words."""

    shape: str
    colour: str
    size: str
    position: str
    background: str
    texture: str


def random_scene(rng: random.Random) -> Scene:
    """Draw a scene uniformly over all attributes, the shape's colour never equal to the background's."""
    colour = rng.choice(list(COLOURS))
    background = rng.choice([name for name in COLOURS if name != colour])
    return Scene(
        shape=rng.choice(SHAPES),
        colour=colour,
        size=rng.choice(SIZES),
        position=rng.choice(POSITIONS),
        background=background,
        texture=rng.choice(TEXTURES),
    )


def caption(scene: Scene) -> str:
    """Describe a scene, e.g. "a large red circle on the left over a striped blue background"."""
    return (
        f"a {scene.size} {scene.colour} {scene.shape} {_POSITION_PHRASES[scene.position]}"
        f" over a {scene.texture} {scene.background} background"
    )


def render(scene: Scene, size: tuple[int, int] = (256, 256), rng: random.Random | None = None) -> Image.Image:
    """Draw a scene as an RGB image of `size` (width, height).

    `rng` jitters colours, placement, rotation, texture scale and pixel noise, so two renders of one scene are
    alike but not identical; without it the jitter is derived from the scene, and the result is repeatable.
    The shape always lies inside the central square of the image, so a centre crop (as CLIP preprocessing
    does) keeps it whole and keeps "left"/"top" true.
    """
    if rng is None:
        rng = random.Random(repr(scene))
    width, height = size
    side = min(width, height)
    fg = _jitter_colour(COLOURS[scene.colour], rng)
    bg = _jitter_colour(COLOURS[scene.background], rng)

    pixels = _background(scene.texture, bg, width, height, rng)

    fx, fy = _POSITION_CENTRES[scene.position]
    cx = (width - side) / 2 + (fx + rng.uniform(-0.03, 0.03)) * side
    cy = (height - side) / 2 + (fy + rng.uniform(-0.03, 0.03)) * side
    radius = rng.uniform(*_SIZE_RADII[scene.size]) * side
    alpha = _shape_mask(scene.shape, cx, cy, radius, rng.uniform(-15, 15), width, height)

    pixels = pixels * (1 - alpha[..., None]) + np.asarray(fg, dtype=np.float32) * alpha[..., None]
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(2, 6), pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), "RGB")


def generate_library(out_dir: str | Path, count: int, seed: int) -> list[dict]:
    """Write `count` scene images and a captions.jsonl into `out_dir`; the same seed gives the same files.

    Sizes vary from 160 to 640 px a side, square, landscape and portrait; most files are JPEG, some PNG.
    Returns the records written to captions.jsonl: {"file": name relative to out_dir, "caption": ...}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        rng = random.Random(seed * 1_000_003 + index)
        scene = random_scene(rng)
        image = render(scene, _library_image_size(rng), rng)
        if rng.random() < 0.8:
            name = f"scene-{index:05d}.jpg"
            image.save(out / name, "JPEG", quality=rng.randint(70, 95))
        else:
            name = f"scene-{index:05d}.png"
            image.save(out / name, "PNG")
        records.append({"file": name, "caption": caption(scene)})
    with open(out / "captions.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    return records


def _library_image_size(rng: random.Random) -> tuple[int, int]:
    short = rng.randint(160, 480)
    long = min(640, round(short * rng.choice((1.0, 4 / 3, 3 / 2, 16 / 9))))
    return (long, short) if rng.random() < 0.55 else (short, long)


def _jitter_colour(rgb: tuple[int, int, int], rng: random.Random) -> tuple[float, float, float]:
    return tuple(min(255.0, max(0.0, c + rng.uniform(-12, 12))) for c in rgb)


def _pattern_colour(bg: tuple[float, float, float]) -> np.ndarray:
    # A shade of the background itself, so a "striped blue background" still reads as blue.
    base = np.asarray(bg, dtype=np.float32)
    luminance = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2]
    return base * 0.65 if luminance > 110 else base + (255 - base) * 0.35


def _background(texture: str, bg: tuple, width: int, height: int, rng: random.Random) -> np.ndarray:
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[:] = bg
    if texture == "plain":
        return pixels
    side = min(width, height)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs += rng.uniform(0, side)
    ys += rng.uniform(0, side)
    # Periods are fractions of the image, so the texture survives downscaling to the model's 64 px.
    if texture == "striped":
        period = side / rng.uniform(5.5, 7.0)
        angle = math.radians(rng.choice((0, 45, 90, 135)))
        mask = (xs * math.cos(angle) + ys * math.sin(angle)) % period < period / 2
    elif texture == "dotted":
        period = side / rng.uniform(6.0, 7.5)
        dx, dy = xs % period - period / 2, ys % period - period / 2
        mask = dx * dx + dy * dy < (0.25 * period) ** 2
    elif texture == "checkered":
        period = side / rng.uniform(4.5, 6.0)
        mask = (np.floor(xs / period) + np.floor(ys / period)) % 2 == 0
    else:
        raise ValueError(f"unknown texture {texture!r}; expected one of {TEXTURES}")
    pixels[mask] = _pattern_colour(bg)
    return pixels


def _shape_mask(
    shape: str, cx: float, cy: float, radius: float, degrees: float, width: int, height: int
) -> np.ndarray:
    """Coverage of the shape per pixel, 0..1, anti-aliased by supersampling."""
    s = _SUPERSAMPLE
    mask = Image.new("L", (width * s, height * s), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy, r = cx * s, cy * s, radius * s
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, math.radians(degrees)), fill=255)
    small = mask.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        half = 0.85 * r
        points = [(-half, -half), (half, -half), (half, half), (-half, half)]
    elif shape == "triangle":
        # Circumradius a little above r so its area is not much smaller than the circle's.
        points = [
            (1.15 * r * math.sin(t), -1.15 * r * math.cos(t)) for t in (0, 2 * math.pi / 3, 4 * math.pi / 3)
        ]
    elif shape == "star":
        points = []
        for k in range(10):
            rad = 1.1 * r if k % 2 == 0 else 0.45 * r
            t = k * math.pi / 5
            points.append((rad * math.sin(t), -rad * math.cos(t)))
    elif shape == "cross":
        a, b = r, 0.34 * r
        arm = [(-b, -a), (b, -a), (b, -b)]  # the top arm, then the same a quarter turn on, three times
        points = [
            (x * c - y * s, x * s + y * c) for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1)) for x, y in arm
        ]
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]


def main(argv: list[str] | None = None) -> None:
    """Write a library of synthetic captioned images."""
    parser = argparse.ArgumentParser(
        prog="python -m clipsearch.world.synthetic",
        description="Write COUNT synthetic scene images and captions.jsonl into OUT_DIR.",
    )
    parser.add_argument("out_dir", help="folder to write (created if missing)")
    parser.add_argument("--count", type=int, default=200, help="number of images (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    args = parser.parse_args(argv)
    records = generate_library(args.out_dir, args.count, args.seed)
    print(f"wrote {len(records)} images and captions.jsonl to {args.out_dir} (seed {args.seed})")


if __name__ == "__main__":
    main()
