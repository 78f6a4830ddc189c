"""Real retrieval with the bundled, trained clipsearch-tiny model on freshly generated held-out scenes.

Every library here is generated from the tests' own seeds, which training never uses (tools/train_tiny.py), and
searched through the library's public path (index, then search) as a user would. Queries are scored exactly
against the attributes each caption record carries (clipsearch.world.synthetic.record_matches).
"""

from __future__ import annotations

import io
import random
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from clipsearch import Library
from clipsearch.imaging.decode import open_image
from clipsearch.world import synthetic as world
from clipsearch.world.synthetic import Thing, query_text, record_matches
from tests.conftest import HELD_OUT_SEED

# Measured with the committed checkpoint on these libraries (tools/TRAINING.md, "What the tests measure"; the
# figures print with `pytest -s`). Each threshold sits a stated margin below its measured value, so a real
# regression fails and noise (another platform's JPEG decoder or BLAS) does not.
MIN_CAPTION_R1 = 0.90  # measured 0.975 (120 scenes)
MIN_CAPTION_R5 = 0.97  # measured 1.000
MIN_PHOTO_SINGLE_P5 = 0.90  # measured 1.000 (18 queries: every place, time, weather and object), each >= 0.8
MIN_SHAPE_SINGLE_P5 = 0.25  # measured 0.36 (5 shapes): the known weakness, see tools/TRAINING.md
MIN_SINGLE_P5 = 0.80  # measured 0.861 over all 23 single-attribute queries (the target, 0.9, is not met)
MIN_PAIR_P5 = 0.88  # measured 0.939 (66 queries)
MIN_POSITION_P5 = 0.45  # measured 0.533 (15 queries; the target, 0.75, is not met)
MIN_DISTRACTOR_P5 = 0.75  # measured 0.833 (6 queries, each among 5 right answers and 8 near misses), each >= 0.6
MIN_UNSEEN_SINGLE_P5 = 0.75  # measured 0.838 (21 queries on combinations never trained on)
MIN_UNSEEN_CAPTION_R5 = 0.90  # measured 1.000
MIN_DIRECTION_TOP5 = 0.90  # measured 1.00 (40 scenes), median rank 1
MIN_MORE_LIKE_THIS_SAME = 0.75  # measured 0.90 of 30 photos; 21 places x times, so chance is about 0.05
MIN_DIRECTION_GAIN = 0.05  # measured 1.00 against 0.88 for the day photo alone (median rank 3)


def index_library(folder: Path, directory: Path, spec, embedder) -> Library:
    library = Library.open(directory, model=spec, create=True)
    library.use_embedder(embedder)
    library.index([folder])
    return library


def names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def precision_at_5(library: Library, records: dict[str, dict], wanted: dict) -> float:
    return sum(record_matches(records[n], **wanted) for n in names(library.search(query_text(**wanted), top_k=5))) / 5


def queries_with_answers(records: list[dict], candidates: list[dict], minimum: int = 5) -> list[dict]:
    return [q for q in candidates if sum(record_matches(r, **q) for r in records) >= minimum]


@pytest.fixture(scope="module")
def world_library(tmp_path_factory, tiny_spec, tiny_embedder):
    """300 scenes of a fresh seed, every kind: (library, records by file name)."""
    folder = tmp_path_factory.mktemp("world")
    records = world.generate_library(folder, 300, HELD_OUT_SEED + 1)
    library = index_library(folder, tmp_path_factory.mktemp("world-index"), tiny_spec, tiny_embedder)
    return library, {r["file"]: r for r in records}


@pytest.fixture(scope="module")
def unseen_library(tmp_path_factory, tiny_spec, tiny_embedder):
    """100 scenes that each hold a combination the model was never trained on."""
    folder = tmp_path_factory.mktemp("unseen")
    records = world.generate_library(folder, 100, HELD_OUT_SEED + 2, split="unseen")
    library = index_library(folder, tmp_path_factory.mktemp("unseen-index"), tiny_spec, tiny_embedder)
    return library, {r["file"]: r for r in records}


@pytest.fixture(scope="module")
def families(tmp_path_factory, tiny_spec, tiny_embedder):
    """40 photo scenes, each rendered by day, at sunset and at night: (library, folder, records)."""
    folder = tmp_path_factory.mktemp("families")
    records = world.generate_library(folder, 40, HELD_OUT_SEED + 3, variants=("day", "sunset", "night"),
                                     photo_share=1.0)
    library = index_library(folder, tmp_path_factory.mktemp("families-index"), tiny_spec, tiny_embedder)
    return library, folder, records


# -- whole captions ------------------------------------------------------------------------------------------

def caption_recall(library: Library, records: list[dict], k: int) -> float:
    """Share of captions with an identically captioned scene in the top k (a few captions repeat)."""
    by_name = {r["file"]: r["caption"] for r in records}
    found = 0
    for record in records:
        found += any(by_name[n] == record["caption"] for n in names(library.search(record["caption"], top_k=k)))
    return found / len(records)


def test_text_finds_the_described_scene(scenes_library, scenes):
    _, records = scenes
    r1, r5 = caption_recall(scenes_library, records, 1), caption_recall(scenes_library, records, 5)
    print(f"held-out caption->image R@1={r1:.3f} R@5={r5:.3f} (n={len(records)})")
    assert r1 >= MIN_CAPTION_R1
    assert r5 >= MIN_CAPTION_R5


# -- query words -------------------------------------------------------------------------------------------

SINGLE = (
    [{"place": p} for p in world.PLACES]
    + [{"time": t} for t in world.TIMES]
    + [{"weather": w} for w in ("snow", "rain", "fog")]
    + [{"object": o} for o in world.OBJECTS]
    + [{"shape": s} for s in world.SHAPES]
)


def scored(library, records: dict, queries: list[dict]) -> dict[str, float]:
    return {query_text(**q): precision_at_5(library, records, q) for q in queries}


def test_one_word_finds_that_place_time_weather_object_or_shape(world_library):
    library, records = world_library
    queries = queries_with_answers(list(records.values()), SINGLE)
    assert len(queries) == len(SINGLE)
    scores = scored(library, records, queries)
    print("single-attribute P@5:", {k: round(v, 2) for k, v in scores.items()})
    shapes = {query_text(shape=s) for s in world.SHAPES}
    photo = [v for k, v in scores.items() if k not in shapes]
    shape = [v for k, v in scores.items() if k in shapes]
    assert statistics.mean(scores.values()) >= MIN_SINGLE_P5
    assert statistics.mean(photo) >= MIN_PHOTO_SINGLE_P5 and min(photo) >= 0.8
    assert statistics.mean(shape) >= MIN_SHAPE_SINGLE_P5


def pair_queries(records: list[dict]) -> list[dict]:
    colours = list(world.COLOURS)
    candidates = (
        [{"colour": c, "object": o} for c in colours for o in world.OBJECTS]
        + [{"place": p, "weather": w} for p in world.PLACES for w in ("snow", "rain", "fog")]
        + [{"place": p, "time": t} for p in world.PLACES for t in world.TIMES]
        + [{"colour": c, "shape": s} for c in colours for s in world.SHAPES]
    )
    return queries_with_answers(records, candidates)


def test_two_words_find_scenes_with_both(world_library):
    library, records = world_library
    queries = pair_queries(list(records.values()))
    scores = scored(library, records, queries)
    print(f"two-attribute P@5 over {len(queries)} queries:", {k: round(v, 2) for k, v in scores.items()})
    assert len(queries) >= 20
    assert statistics.mean(scores.values()) >= MIN_PAIR_P5


def test_position_words_find_the_object_on_that_side(world_library):
    library, records = world_library
    candidates = [{"object": o, "position": p} for o in world.OBJECTS for p in world.PHOTO_POSITIONS]
    queries = queries_with_answers(list(records.values()), candidates)
    scores = scored(library, records, queries)
    print(f"position P@5 over {len(queries)} queries:", {k: round(v, 2) for k, v in scores.items()})
    assert len(queries) >= 6
    assert statistics.mean(scores.values()) >= MIN_POSITION_P5


# -- distractors: the right answers hidden among scenes that share all but one of the asked attributes --------

DISTRACTED = (
    {"object": "boat", "colour": "red"},
    {"shape": "circle", "colour": "red"},
    {"object": "car", "colour": "white"},
    {"place": "forest", "weather": "snow"},
    {"place": "beach", "time": "night"},
    {"object": "tree", "position": "left"},
)


def scene_showing(rng: random.Random, wanted: dict):
    """A random scene with exactly the wanted attributes (and anything else)."""
    if "shape" in wanted:
        scene = world.random_shape_scene(rng)
        scene = replace(scene, **wanted)
        if scene.background == scene.colour:
            scene = replace(scene, background=rng.choice([c for c in world.COLOURS if c != scene.colour]))
        return scene
    while True:
        scene = world.random_photo_scene(rng)
        if scene.place != wanted.get("place", scene.place):
            continue
        scene = world.with_conditions(scene, time=wanted.get("time"), weather=wanted.get("weather"))
        if "object" in wanted or "colour" in wanted:
            name = wanted.get("object") or rng.choice(world.OBJECTS)
            if scene.place not in world.OBJECT_PLACES[name]:
                continue
            thing = Thing(name, wanted.get("colour") or rng.choice(world.OBJECT_COLOURS[name]),
                          wanted.get("position") or rng.choice(world.PHOTO_POSITIONS))
            scene = replace(scene, things=(thing,))
        return scene


def distractors_of(rng: random.Random, wanted: dict) -> list:
    """Scenes that keep one asked attribute and change the other: a red house or a white boat for a red boat."""
    out = []
    alternatives = {
        "colour": list(world.COLOURS), "object": list(world.OBJECTS), "shape": list(world.SHAPES),
        "place": list(world.PLACES), "time": list(world.TIMES), "weather": list(world.WEATHERS),
        "position": list(world.PHOTO_POSITIONS),
    }
    for key in wanted:
        for _ in range(4):
            other = rng.choice([v for v in alternatives[key] if v != wanted[key]])
            changed = {**wanted, key: other}
            if "object" in changed and "colour" in changed and changed["colour"] not in world.OBJECT_COLOURS[
                    changed["object"]]:
                changed["colour"] = rng.choice(world.OBJECT_COLOURS[changed["object"]])
            out.append(scene_showing(rng, changed))
    return out


@pytest.fixture(scope="module")
def distractor_library(tmp_path_factory, tiny_spec, tiny_embedder):
    rng = random.Random(HELD_OUT_SEED + 4)
    scenes = []
    for wanted in DISTRACTED:
        scenes += [scene_showing(rng, wanted) for _ in range(5)]
        scenes += distractors_of(rng, wanted)
    folder = tmp_path_factory.mktemp("distractors")
    records = world.write_scenes(folder, scenes, HELD_OUT_SEED + 4)
    library = index_library(folder, tmp_path_factory.mktemp("distractors-index"), tiny_spec, tiny_embedder)
    return library, {r["file"]: r for r in records}


def test_asked_attributes_beat_distractors_that_share_all_but_one(distractor_library):
    library, records = distractor_library
    for wanted in DISTRACTED:  # the library holds five right answers and eight near misses for each
        positives = sum(record_matches(r, **wanted) for r in records.values())
        near = [r for r in records.values() if not record_matches(r, **wanted)
                and any(record_matches(r, **{k: v}) for k, v in wanted.items())]
        assert positives >= 5 and len(near) >= 8
    scores = scored(library, records, list(DISTRACTED))
    print("P@5 among distractors:", {k: round(v, 2) for k, v in scores.items()})
    assert statistics.mean(scores.values()) >= MIN_DISTRACTOR_P5
    assert min(scores.values()) >= 0.4


# -- combinations never trained on -----------------------------------------------------------------------

def test_unseen_combinations_are_found_too(unseen_library):
    library, records = unseen_library
    assert all(r["held_out"] for r in records.values())
    r5 = caption_recall(library, list(records.values()), 5)
    queries = queries_with_answers(list(records.values()), SINGLE)
    scores = scored(library, records, queries)
    print(f"unseen: caption R@5={r5:.3f}; single-attribute P@5 over {len(queries)} queries:",
          {k: round(v, 2) for k, v in scores.items()})
    assert len(queries) >= 12
    assert r5 >= MIN_UNSEEN_CAPTION_R5
    assert statistics.mean(scores.values()) >= MIN_UNSEEN_SINGLE_P5


# -- directions: this photo, but at night --------------------------------------------------------------------

def rank_of(library: Library, query, target: str, leave_out: str) -> int:
    ranked = [n for n in names(library.search(query, top_k=1000)) if n != leave_out]
    return ranked.index(target) + 1


@pytest.mark.parametrize("words", [("day", "night"), ("day", "at night")])
def test_minus_day_plus_night_finds_the_same_scene_at_night(families, words):
    library, folder, records = families
    groups: dict[str, dict[str, str]] = {}
    for record in records:
        groups.setdefault(record["group"], {})[record["time"]] = record["file"]
    moved, plain = [], []
    for times in groups.values():
        day, night = times["day"], times["night"]
        moved.append(rank_of(library, [str(folder / day), "-", words[0], "+", words[1]], night, day))
        plain.append(rank_of(library, str(folder / day), night, day))
    top5 = sum(r <= 5 for r in moved) / len(moved)
    plain_top5 = sum(r <= 5 for r in plain) / len(plain)
    print(f"'- {words[0]} + {words[1]}': night variant in the top 5 for {top5:.2f} of {len(moved)} scenes "
          f"(median rank {statistics.median(moved)}); more like this alone: {plain_top5:.2f} "
          f"(median rank {statistics.median(plain)})")
    assert top5 >= MIN_DIRECTION_TOP5
    assert top5 - plain_top5 >= MIN_DIRECTION_GAIN
    assert statistics.median(moved) < statistics.median(plain)


# -- images as queries -----------------------------------------------------------------------------------

def test_resized_recompressed_copy_finds_its_original_first(scenes_library, scenes, tmp_path):
    folder, records = scenes
    for record in records[:15]:
        original = Image.open(folder / record["file"]).convert("RGB")
        copy = original.resize((original.width * 2 // 3, original.height * 2 // 3), Image.Resampling.BILINEAR)
        path = tmp_path / (Path(record["file"]).stem + "-copy.jpg")
        copy.save(path, quality=60)
        hits = scenes_library.search(str(path), top_k=1)
        assert Path(hits[0].path).name == record["file"]


def test_subtracting_a_colour_moves_it_down_the_ranking(world_library):
    library, records = world_library
    circles = [n for n, r in records.items() if record_matches(r, shape="circle")]
    red = [n for n in circles if record_matches(records[n], shape="circle", colour="red")]
    other = [n for n in circles if n not in red]
    assert red and other, "the held-out set must hold red and non-red circles"
    ranked = [n for n in names(library.search(["circle", "-", "red"], top_k=len(records))) if n in circles]
    position = {name: i for i, name in enumerate(ranked)}
    assert statistics.mean(position[n] for n in other) < statistics.mean(position[n] for n in red)
    assert not set(ranked[:3]) & set(red)


def test_more_like_this_finds_photos_of_the_same_place_and_time(world_library):
    library, records = world_library
    photos = [h for h in library.search("a photo", top_k=300) if records[Path(h.path).name]["kind"] == "photo"][:30]
    same = 0
    for hit in photos:
        similar = library.more_like(hit.id, top_k=2)
        assert similar[0].id == hit.id and similar[0].score == pytest.approx(1.0, abs=1e-4)
        mine, theirs = records[Path(hit.path).name], records[Path(similar[1].path).name]
        same += (mine["place"], mine["time"]) == (theirs.get("place"), theirs.get("time"))
    print(f"more like this: the nearest other photo shares place and time for {same / len(photos):.2f}")
    assert same / len(photos) >= MIN_MORE_LIKE_THIS_SAME


def test_image_encoding_matches_open_clip_reference(tiny_embedder, scenes):
    folder, records = scenes
    images = [Image.open(folder / r["file"]).convert("RGB") for r in records[:8]]
    ours = tiny_embedder.encode_images(images)
    model, preprocess = tiny_embedder.model, tiny_embedder.preprocess
    with torch.inference_mode():
        reference = model.encode_image(torch.stack([preprocess(im) for im in images]))
    reference = torch.nn.functional.normalize(reference, dim=-1).numpy()
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() >= 0.9999


def test_text_encoding_matches_open_clip_reference(tiny_embedder, scenes):
    _, records = scenes
    texts = [r["caption"] for r in records[:8]] + ["red", "a photo of a red boat on a lake at night"]
    ours = tiny_embedder.encode_texts(texts)
    import open_clip

    tokenizer = open_clip.get_tokenizer("clipsearch-tiny")
    with torch.inference_mode():
        reference = tiny_embedder.model.encode_text(tokenizer(texts))
    reference = torch.nn.functional.normalize(reference, dim=-1).numpy()
    assert (ours * reference).sum(axis=1).min() >= 0.9999


def test_indexed_vector_equals_reference_on_the_decoded_file(scenes_library, scenes, tiny_embedder):
    """The whole index path (worker decode with draft, resize, crop) against open_clip on the same decode."""
    folder, records = scenes
    record = records[3]
    hit = next(h for h in scenes_library.search(record["caption"], top_k=120) if Path(h.path).name == record["file"])
    stored = scenes_library.vector_of(hit.id)
    size = tiny_embedder.pixel_spec.size
    image = open_image(io.BytesIO((folder / record["file"]).read_bytes()), min_side=size)
    with torch.inference_mode():
        reference = tiny_embedder.model.encode_image(tiny_embedder.preprocess(image).unsqueeze(0))[0]
    reference = torch.nn.functional.normalize(reference, dim=-1).numpy()
    assert float(stored @ reference) >= 0.9999
