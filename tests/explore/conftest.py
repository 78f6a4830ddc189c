"""A library of generated scenes with planted copies and odd ones out, indexed once with the tiny model.

The copies are made the ways photos get copied: resized to half, recompressed at JPEG quality 35, cropped by 5 %
of each side's length (taken from two sides), rotated in the pixels with an EXIF orientation that turns them
back, and byte-for-byte. The odd ones out are unlike any generated scene: noise, a page of text, gradients.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from clipsearch import Library
from clipsearch.world.synthetic import generate_library
from tests.conftest import HELD_OUT_SEED

BASE_SCENES = 100
COPY_KINDS = ("resized", "recompressed", "cropped", "exif-rotated", "exact")
COPIES_PER_KIND = 6
STOP_WORDS = {"a", "an", "the", "on", "in", "at", "over", "by", "of", "with", "and", "background"}


@dataclass
class Planted:
    folder: Path
    library: Library
    captions: dict[str, str]  # file name -> caption, for the generated scenes
    copies: dict[str, tuple[str, str]]  # copy's file name -> (original's file name, kind)
    odd: list[str]  # file names of the odd ones out

    def ids(self) -> dict[str, int]:
        """Catalog id by file name."""
        found = {}
        for chunk_ids, _ in self.library.iter_vectors():
            for file_id, row in self.library.files(chunk_ids.tolist()).items():
                found[Path(row.path).name] = file_id
        return found


def make_copy(source: Path, target_stem: Path, kind: str, rng: random.Random) -> Path:
    image = Image.open(source).convert("RGB")
    width, height = image.size
    if kind == "resized":
        target = target_stem.with_suffix(".jpg")
        image.resize((width // 2, height // 2), Image.Resampling.LANCZOS).save(target, quality=90)
    elif kind == "recompressed":
        target = target_stem.with_suffix(".jpg")
        image.save(target, quality=35)
    elif kind == "cropped":
        target = target_stem.with_suffix(".jpg")
        dx, dy = round(width * 0.05), round(height * 0.05)
        left, top = rng.choice((0, dx)), rng.choice((0, dy))
        image.crop((left, top, left + width - dx, top + height - dy)).save(target, quality=92)
    elif kind == "exif-rotated":
        target = target_stem.with_suffix(".jpg")
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the pixels are stored turned the other way
        image.transpose(Image.Transpose.ROTATE_90).save(target, quality=92, exif=exif)
    else:
        target = target_stem.with_suffix(source.suffix)
        shutil.copyfile(source, target)
    return target


def make_odd_ones(folder: Path, seed: int = 0) -> list[str]:
    """Three kinds of picture nothing in the generated world looks like, three of each, each unlike the others."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(3):
        pixels = rng.integers(0, 256, (240 + 40 * i, 320, 3), dtype=np.uint8)
        names.append(f"odd-noise-{i}.png")
        Image.fromarray(pixels).save(folder / names[-1])
    font = ImageFont.load_default(size=26)
    for i, text in enumerate(("Invoice 2024-117\nTotal due: 342.10 EUR\nPay within 30 days",
                              "Dear Sam,\nthanks for the lovely\nweekend. See you soon!",
                              "TODO\n- call the plumber\n- buy milk\n- backup photos")):
        page = Image.new("RGB", (360, 480), (250, 250, 245))
        ImageDraw.Draw(page).multiline_text((20, 30 + 40 * i), text, fill=(20 + 30 * i, 20, 20), font=font, spacing=12)
        names.append(f"odd-text-{i}.png")
        page.save(folder / names[-1])
    ramp = np.linspace(0.0, 1.0, 320)
    for i, (start, end) in enumerate((((255, 0, 128), (0, 255, 255)), ((10, 10, 10), (250, 250, 250)),
                                      ((255, 200, 0), (80, 0, 160)))):
        rows = np.outer(ramp, np.ones(320)) if i == 1 else np.outer(np.ones(320), ramp)
        pixels = np.asarray(start) + rows[..., None] * (np.asarray(end) - np.asarray(start))
        names.append(f"odd-gradient-{i}.png")
        Image.fromarray(pixels.astype(np.uint8)).save(folder / names[-1])
    return names


@pytest.fixture(scope="session")
def planted(tmp_path_factory, tiny_spec, tiny_embedder) -> Planted:
    folder = tmp_path_factory.mktemp("planted-photos")
    records = generate_library(folder, BASE_SCENES, HELD_OUT_SEED + 1)
    (folder / "captions.jsonl").unlink()
    rng = random.Random(0)
    copies = {}
    for number, record in enumerate(records[:len(COPY_KINDS) * COPIES_PER_KIND]):
        kind = COPY_KINDS[number % len(COPY_KINDS)]
        target = make_copy(folder / record["file"], folder / f"copy-{number:03d}-{kind}", kind, rng)
        copies[target.name] = (record["file"], kind)
    odd = make_odd_ones(folder)
    library = Library.open(tmp_path_factory.mktemp("planted-index"), model=tiny_spec, create=True)
    library.use_embedder(tiny_embedder)
    report = library.index([folder])
    assert report.indexed == BASE_SCENES + len(copies) + len(odd) and not report.skipped
    return Planted(folder, library, {r["file"]: r["caption"] for r in records}, copies, odd)


@pytest.fixture
def own_copy(tmp_path, planted, tiny_embedder):
    """A copy of the planted index, without its cached results, that a test may change (the photos folder is
    shared and never changed)."""

    def make(name: str = "index-copy") -> Library:
        target = tmp_path / name
        shutil.copytree(planted.library.directory, target, ignore=shutil.ignore_patterns("explore"))
        library = Library.open(target)
        library.use_embedder(tiny_embedder)
        return library

    return make


def caption_words(captions: dict[str, str]) -> list[str]:
    """The words the generated world describes its scenes with: a vocabulary for names and tags in tests."""
    import re

    return sorted({w for c in captions.values() for w in re.findall(r"[a-z]+", c)} - STOP_WORDS)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
