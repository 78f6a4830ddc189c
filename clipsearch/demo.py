"""The offline demo: a generated photo library, indexed with the bundled model, searched a few ways.

The library is the synthetic world (clipsearch.world.synthetic): places at times of day and in weathers, with coloured
objects, and shape scenes. A few files are planted for the explore views to find: resized, recompressed copies
of some photos (near-duplicates), odd ones out (confetti, gradients), and scenes shown both by day and at night,
which the sample searches use to show a direction: "this photo, but at night".
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import ModelMismatchError
from clipsearch.ingest.run import IndexReport, Progress
from clipsearch.library import REPO_INDEX_DIR, Library, default_index_dir
from clipsearch.model.models import TINY_MODEL, ModelSpec

DEMO_SEED = 2026
WORLD_VERSION = 2  # bumped when the generated world changes, so an old demo folder is regenerated
# What the bundled model knows: a colour, a place in some weather, a coloured object, a place at a time of day.
DEMO_QUERIES = ("red", "a forest in the snow", "a red car", "a yellow house", "a beach at sunset", "a tree on the left")


@dataclass
class DemoResult:
    library: Library
    photos: Path
    report: IndexReport
    seconds: float


def default_demo_dir() -> Path:
    if (REPO_INDEX_DIR / "README.md").is_file():
        return REPO_INDEX_DIR / "demo"
    return default_index_dir().parent / "demo"


def run_demo(
    demo_dir: Path | None = None,
    count: int = 300,
    progress: Progress | None = None,
    echo: Callable[[str], None] = lambda line: None,
) -> DemoResult:
    """Generate (once) a library of ``count`` files, index it with ``clipsearch-tiny``, and run sample searches."""
    started = time.monotonic()
    demo_dir = Path(demo_dir) if demo_dir else default_demo_dir()
    photos = demo_dir / "photos"
    manifest = {"world": WORLD_VERSION, "seed": DEMO_SEED, "count": count}
    if _read_json(photos / "demo.json") != manifest:
        echo(f"generating {count} sample photos in {photos} ...")
        write_demo_photos(photos, count)
        (photos / "demo.json").write_text(json.dumps(manifest))
    records = {r["file"]: r for r in map(json.loads, (photos / "captions.jsonl").open())}
    library = _open_library(demo_dir / "index", echo)
    echo(f"indexing with the bundled model {TINY_MODEL} into {library.directory} ...")
    report = library.index([photos], progress=progress)
    echo(f"indexed {report.indexed}, unchanged {report.unchanged}, skipped {len(report.skipped)}")

    def caption(path: str) -> str:
        return records.get(Path(path).relative_to(photos).as_posix(), {}).get("caption", "")

    original = next(r for r in records.values() if r.get("duplicates"))
    day = next(r for r in records.values() if r["file"].startswith("pairs/") and r["time"] == "day")
    described = next(r for r in records.values() if "/" not in r["file"] and r["kind"] == "photo")
    for query in (*DEMO_QUERIES, described["caption"]):
        _show(library, query, caption, echo)
    path = str(photos / original["file"])
    # more like this (its planted copy comes next), then a mixed query: this photo's look, moved towards words
    _show(library, path, caption, echo, note=original["caption"])
    _show(library, [path, "+", "in the snow"], caption, echo, note=original["caption"])
    # a direction: this photo by day, minus "day", plus "night" finds the same scene at night
    _show(library, [str(photos / day["file"]), "-", "day", "+", "night"], caption, echo, note=day["caption"])
    odd = [f for f, r in records.items() if r["kind"] == "odd"]
    echo(f"\nplanted for the explore views: {sum(len(r.get('duplicates', [])) for r in records.values())} "
         f"near-duplicates (duplicates/), {len(odd)} odd ones out (odd/), "
         f"{sum(1 for f in records if f.startswith('pairs/'))} photos shown by day and at night (pairs/)")
    seconds = time.monotonic() - started
    echo(f"\ndemo ready in {seconds:.1f}s")
    return DemoResult(library, photos, report, seconds)


def _show(library: Library, query, caption, echo, note: str = "") -> None:
    text = query if isinstance(query, str) else " ".join(query)
    echo(f"\nsearch: {text}" + (f"   (caption: {note})" if note else ""))
    for hit in library.search(query, top_k=3):
        name = Path(hit.path).relative_to(library_root(hit.path)).as_posix()
        echo(f"  {hit.score:.3f}  {name:<24} {caption(hit.path)}")


def library_root(path: str) -> Path:
    """The demo's photos folder above a hit (hits in pairs/, duplicates/ and odd/ are shown with that prefix)."""
    parent = Path(path).parent
    return parent.parent if parent.name in ("pairs", "duplicates", "odd") else parent


def _open_library(index_dir: Path, echo) -> Library:
    spec = ModelSpec.parse(TINY_MODEL)
    try:
        return Library.open(index_dir, model=spec, create=True)
    except ModelMismatchError:
        # The demo's own index, made by an earlier bundled model: its vectors cannot be mixed with the new ones.
        echo("the bundled model has changed since this demo index was built; rebuilding it ...")
        shutil.rmtree(index_dir)
        return Library.open(index_dir, model=spec, create=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_demo_photos(photos: Path, count: int) -> list[dict]:
    """Write exactly ``count`` files into ``photos`` and one captions.jsonl that describes them all.

    Most are generated scenes; a few are planted: day/night pairs of one scene (pairs/), resized and recompressed
    copies of some scenes (duplicates/), and odd ones out that are no scene at all (odd/).
    """
    from PIL import Image

    from clipsearch.world import synthetic

    if (photos / "captions.jsonl").is_file():
        shutil.rmtree(photos)  # an earlier demo's generated photos: stale files would stay in the index
    pairs, copies, odd = max(1, count // 100), max(1, count // 60), max(1, count // 60)
    scenes = count - 2 * pairs - copies - odd
    records = synthetic.generate_library(photos, scenes, DEMO_SEED)

    rng = random.Random(DEMO_SEED)
    day_scenes = []
    while len(day_scenes) < pairs:
        scene = synthetic.random_photo_scene(rng)
        if len([t for t in scene.things if t.object not in synthetic.SKY_OBJECTS]) == 1:
            day_scenes.append(synthetic.with_conditions(scene, time="day", weather="clear"))
    for record in synthetic.write_scenes(photos / "pairs", day_scenes, DEMO_SEED, variants=("night",)):
        records.append({**record, "file": "pairs/" + record["file"], "group": "pairs/" + record["group"]})

    (photos / "duplicates").mkdir()
    # Copies of clear-weather photos with something in them: the sample searches move the first one "into the snow".
    clear = [i for i in range(scenes) if records[i]["weather"] == "clear" and any(
        o["object"] not in synthetic.SKY_OBJECTS for o in records[i]["objects"])]
    originals = rng.sample(clear, copies) if len(clear) >= copies else rng.sample(range(scenes), copies)
    for index in originals:
        original = records[index]
        with Image.open(photos / original["file"]) as image:
            image = image.convert("RGB")
            copy = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.BILINEAR)
        name = f"duplicates/{Path(original['file']).stem}-copy.jpg"
        copy.save(photos / name, "JPEG", quality=60)
        original["duplicates"] = [name]
        records.append({**original, "file": name, "duplicates": [], "duplicate_of": original["file"]})

    (photos / "odd").mkdir()
    for k in range(odd):
        kind = ("confetti", "gradient")[k % 2]
        name = f"odd/{kind}-{k + 1}.png" if kind == "confetti" else f"odd/{kind}-{k + 1}.jpg"
        _odd_image(kind, rng).save(photos / name)
        records.append({"file": name, "caption": f"odd one out: {kind}", "kind": "odd", "place": None, "time": None,
                        "weather": None, "objects": [], "background": None, "texture": None, "group": name,
                        "variant": None, "held_out": False})
    with open(photos / "captions.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return records


def _odd_image(kind: str, rng: random.Random):
    import numpy as np
    from PIL import Image, ImageDraw

    width, height = rng.choice(((320, 240), (240, 320), (300, 300)))
    if kind == "confetti":
        # coloured discs all over: unlike any scene to the bundled model (pixel noise is not: it reads as fog)
        colour = lambda: tuple(rng.randrange(256) for _ in range(3))  # noqa: E731
        image = Image.new("RGB", (width, height), colour())
        draw = ImageDraw.Draw(image)
        for _ in range(60):
            x, y, r = rng.randrange(width), rng.randrange(height), rng.randint(4, 24)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour())
        return image
    a, b = (np.array([rng.randrange(256) for _ in range(3)], dtype=np.float32) for _ in range(2))
    t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    row = a * (1 - t) + b * t
    return Image.fromarray(np.broadcast_to(row, (height, width, 3)).astype(np.uint8), "RGB")

