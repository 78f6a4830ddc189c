"""A seeded generator of photo-like folders for the benchmarks.

Real photo libraries are mostly 12-megapixel camera JPEGs with fine detail (which is what makes decoding cost
what it does), plus some large PNGs (screenshots, exports), small JPEGs (messaging apps, web saves) and portrait
shots stored landscape with an EXIF orientation tag. Flat colours would flatter the decoder, so each picture is
built from smooth multi-octave noise, gradients, hard edges and sensor-like grain, using NumPy only.

    python -m benchmarks.photos /tmp/photos --count 200 --seed 0

The folder is reproducible from (count, seed); ``ensure_folder`` reuses a complete one instead of regenerating.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ORIENTATION_TAG = 0x0112
DONE_MARKER = ".complete.json"


@dataclass(frozen=True)
class Kind:
    name: str
    share: float
    size: tuple[int, int]
    fmt: str


# Shares of a typical phone/camera library.
KINDS = (
    Kind("jpeg-12mp", 0.80, (4000, 3000), "JPEG"),
    Kind("jpeg-12mp-exif-portrait", 0.05, (4000, 3000), "JPEG"),  # stored landscape, EXIF says rotate 90
    Kind("png-large", 0.05, (2560, 1600), "PNG"),
    Kind("jpeg-small", 0.10, (800, 600), "JPEG"),
)


def _kind_for(index: int, seed: int) -> Kind:
    # A fixed interleaving, so the first n files of a folder have the same mix as the whole folder.
    u = np.random.default_rng((seed, index, 1)).random()
    edge = 0.0
    for kind in KINDS:
        edge += kind.share
        if u < edge:
            return kind
    return KINDS[0]


def photo_pixels(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A photo-like uint8 RGB array (height, width, 3): smooth noise + gradient + edges + grain.

    The smooth part is computed at 1/4 scale and upscaled by Pillow; edges and grain are added at full scale,
    so a 12 MP picture takes a fraction of a second.
    """
    width, height = size
    low_w, low_h = max(8, width // 4), max(8, height // 4)
    field = np.zeros((low_h, low_w, 3), dtype=np.float32)
    for cells, weight in ((3, 90.0), (12, 45.0), (48, 22.0)):  # multi-octave smooth noise
        small = rng.normal(0.0, 1.0, (cells * 3 // 4 + 2, cells + 2, 3)).astype(np.float32)
        layers = [
            np.asarray(Image.fromarray(small[..., c], mode="F").resize((low_w, low_h), Image.Resampling.BICUBIC))
            for c in range(3)
        ]
        field += weight * np.stack(layers, axis=-1)
    ramp = np.linspace(-1.0, 1.0, low_h, dtype=np.float32)[:, None, None]  # sky-to-ground gradient, tinted
    field += ramp * rng.uniform(-60, 60, 3).astype(np.float32)
    field += rng.uniform(70, 185, 3).astype(np.float32)
    image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8), mode="RGB")
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)  # hard edges, as buildings, horizons and objects give
    for _ in range(int(rng.integers(4, 10))):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), outline=colour, width=int(rng.integers(2, 30)))
    pixels = np.array(image)
    # Sensor grain (flipping the 4 low bits at random): the fine detail that makes camera JPEGs costly to decode.
    grain = np.frombuffer(rng.bytes(width * height * 3), dtype=np.uint8).reshape(height, width, 3) & 15
    np.bitwise_xor(pixels, grain, out=pixels)
    return pixels


def write_photo(path: Path, kind: Kind, rng: np.random.Generator) -> None:
    pixels = photo_pixels(kind.size, rng)
    image = Image.fromarray(pixels, mode="RGB")
    if kind.fmt == "PNG":
        image.save(path, "PNG", compress_level=1)  # fast to write; a large PNG still costs a full decode
        return
    exif = None
    if "exif-portrait" in kind.name:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = 6  # viewers rotate it 90 degrees clockwise
    image.save(path, "JPEG", quality=90, exif=exif.tobytes() if exif is not None else b"")


def generate_folder(folder: str | os.PathLike, count: int, seed: int = 0, subfolders: int = 4) -> list[Path]:
    """Write ``count`` photo-like files under ``folder`` (spread over a few sub-folders); return their paths."""
    folder = Path(folder)
    paths = []
    for index in range(count):
        kind = _kind_for(index, seed)
        sub = folder / f"album-{index % subfolders:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"IMG_{index:05d}.{'png' if kind.fmt == 'PNG' else 'jpg'}"
        if not path.exists():
            write_photo(path, kind, np.random.default_rng((seed, index)))
        paths.append(path)
    return paths


def ensure_folder(folder: str | os.PathLike, count: int, seed: int = 0) -> Path:
    """A complete generated folder for (count, seed) at ``folder``, reusing one already there."""
    folder = Path(folder)
    marker = folder / DONE_MARKER
    wanted = {"count": count, "seed": seed, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return folder
    generate_folder(folder, count, seed)
    marker.write_text(json.dumps(wanted))
    return folder


def folder_summary(folder: str | os.PathLike) -> dict:
    files = [p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")]
    return {"files": len(files), "megabytes": round(sum(p.stat().st_size for p in files) / 1e6, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ensure_folder(args.folder, args.count, args.seed)
    print(json.dumps(folder_summary(args.folder)))


if __name__ == "__main__":
    main()
