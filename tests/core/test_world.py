"""The generated world (clipsearch.world.synthetic): repeatable, truthful records, variants, held-out sets, CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch.world import synthetic as world
from clipsearch.world.synthetic import PhotoScene, ShapeScene, Thing


def test_the_same_seed_writes_the_same_files_and_records(tmp_path):
    first = world.generate_library(tmp_path / "a", 12, seed=7, variants=("night",))
    second = world.generate_library(tmp_path / "b", 12, seed=7, variants=("night",))
    assert first == second
    for record in first:
        assert (tmp_path / "a" / record["file"]).read_bytes() == (tmp_path / "b" / record["file"]).read_bytes()
    other = world.generate_library(tmp_path / "c", 12, seed=8)
    assert [r["caption"] for r in other] != [r["caption"] for r in first if r["variant"] is None]


def test_captions_jsonl_holds_the_returned_records(tmp_path):
    records = world.generate_library(tmp_path, 10, seed=1)
    lines = (tmp_path / "captions.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    assert {p.name for p in tmp_path.iterdir()} == {r["file"] for r in records} | {"captions.jsonl"}


def test_each_record_says_in_fields_what_its_caption_says_in_words(tmp_path):
    records = world.generate_library(tmp_path, 80, seed=3)
    assert {r["kind"] for r in records} == {"photo", "shapes"}
    for record in records:
        scene = world.scene_from_record(record)
        assert world.caption(scene) == record["caption"]
        assert world.attributes(scene) == {k: record[k] for k in world.attributes(scene)}
        assert record["held_out"] == world.is_held_out(scene)
        if record["kind"] == "photo":
            assert record["place"] in world.PLACES and record["time"] in world.TIMES
            assert record["weather"] in world.WEATHERS
            for obj in record["objects"]:
                if obj["object"] in world.SKY_OBJECTS:
                    assert obj["colour"] is None and obj["position"] == "sky"
                    assert f"with the {obj['object']}" in record["caption"]
                else:
                    assert record["place"] in world.OBJECT_PLACES[obj["object"]]
                    assert f"{obj['colour']} {obj['object']} " in record["caption"]
        else:
            (shape,) = record["objects"]
            assert shape["object"] in world.SHAPES and shape["colour"] != record["background"]


def test_captions_are_plain_words_that_fit_the_text_tower():
    import open_clip

    from clipsearch.model.models import register_tiny_model

    register_tiny_model()
    tokenizer = open_clip.get_tokenizer("clipsearch-tiny")
    longest = PhotoScene(
        "mountains",
        "sunset",
        "snow",
        (Thing("person", "orange", "left"), Thing("person", "purple", "right"), Thing("sun", None, "sky")),
    )
    text = world.caption(longest)
    assert text == (
        "an orange person on the left and a purple person on the right in the mountains at sunset"
        " in the snow with the sun"
    )
    assert int((tokenizer([text])[0] != 0).sum()) <= tokenizer.context_length
    assert world.caption(PhotoScene("lake", "night", "clear", ())) == "a lake at night"
    assert world.caption(PhotoScene("lake", "day", "fog", (Thing("boat", "red", "left"),))) == (
        "a red boat on the left on a lake by day in the fog"
    )


def object_pixels(scene: PhotoScene, size=(200, 150), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """The pixels that the scene's one object changes (against the same scene without it), and the image."""
    with_object = np.asarray(world.render(scene, size, random.Random(seed)), dtype=np.int16)
    without = np.asarray(world.render(replace(scene, things=()), size, random.Random(seed)), dtype=np.int16)
    return np.abs(with_object - without).max(axis=2) > 40, with_object


@pytest.mark.parametrize("seed", range(40))
def test_an_object_is_drawn_in_its_colour_on_its_side(seed):
    rng = random.Random(seed)
    scene = world.random_photo_scene(rng)
    name = rng.choice([o for o in world.OBJECTS if scene.place in world.OBJECT_PLACES[o]])
    thing = Thing(name, rng.choice(world.OBJECT_COLOURS[name]), rng.choice(world.PHOTO_POSITIONS))
    scene = replace(scene, time="day", weather="clear", things=(thing,))
    mask, pixels = object_pixels(scene, seed=seed)
    side, left = 150, 25  # a 200 x 150 image: its central square starts 25 px in
    centre = (np.nonzero(mask)[1].mean() - left) / side
    assert {"left": centre < 0.35, "centre": 0.35 < centre < 0.65, "right": centre > 0.65}[thing.position]
    in_colour = (np.abs(pixels[mask] - np.array(world.COLOURS[thing.colour])).max(axis=1) < 50).mean()
    assert in_colour > 0.4, f"{thing}: only {in_colour:.0%} of its pixels in its colour"


def test_time_of_day_and_weather_show_in_the_picture():
    scene = PhotoScene("field", "day", "clear", (Thing("house", "white", "centre"),))
    day, night, sunset, snow = (
        np.asarray(world.render(world.with_conditions(scene, **c), (160, 160), random.Random(1)), dtype=np.float32)
        for c in ({}, {"time": "night"}, {"time": "sunset"}, {"weather": "snow"})
    )
    assert night.mean() < 0.6 * day.mean()
    sky = slice(55, 78)  # just above the horizon (v 0.52): orange at sunset, pale blue by day
    assert sunset[sky, :, 0].mean() > sunset[sky, :, 2].mean() and day[sky, :, 2].mean() > day[sky, :, 0].mean()
    ground = slice(120, 160)
    assert (snow[ground].min(axis=2) > 180).mean() > 0.5 > (day[ground].min(axis=2) > 180).mean()


def test_variants_share_everything_but_time_and_weather(tmp_path):
    records = world.generate_library(tmp_path, 30, seed=11, variants=("night", "snow", "day/rain"))
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["group"], []).append(record)
    photo_groups = [g for g in groups.values() if g[0]["kind"] == "photo"]
    assert photo_groups and all(len(g) == 1 for g in groups.values() if g[0]["kind"] == "shapes")
    for group in photo_groups:
        base, *variants = group
        assert base["variant"] is None and base["file"] == base["group"] + Path(base["file"]).suffix
        assert len(variants) >= 2  # at most one of the three can equal the base scene itself
        for variant in variants:
            wanted = world.parse_variant(variant["variant"].replace("-", "/"))
            assert variant["file"].startswith(base["group"] + "-" + variant["variant"])
            assert variant["time"] == wanted.get("time", base["time"])
            assert variant["weather"] == wanted.get("weather", base["weather"])
            assert variant["place"] == base["place"]
            sky = "moon" if variant["time"] == "night" else "sun"
            assert variant["objects"] == [
                {**o, "object": sky} if o["object"] in world.SKY_OBJECTS else o for o in base["objects"]
            ]
            with Image.open(tmp_path / base["file"]) as a, Image.open(tmp_path / variant["file"]) as b:
                assert a.size == b.size


def test_a_variant_keeps_the_layout_of_its_scene():
    scene = PhotoScene("beach", "day", "clear", (Thing("car", "white", "left"), Thing("house", "yellow", "right")))
    masks = []
    for time in ("day", "night", "sunset"):
        shown = world.with_conditions(scene, time=time)
        with_objects = np.asarray(world.render(shown, (180, 180), random.Random(4)), dtype=np.int16)
        without = np.asarray(world.render(replace(shown, things=()), (180, 180), random.Random(4)), dtype=np.int16)
        masks.append(np.abs(with_objects - without).max(axis=2) > 25)
    for other in masks[1:]:
        assert (masks[0] & other).sum() / (masks[0] | other).sum() > 0.9


def test_held_out_combinations_never_appear_in_the_seen_split_and_always_in_the_unseen_one():
    rng = random.Random(0)
    seen = [world.random_scene(rng, split="seen") for _ in range(400)]
    unseen = [world.random_scene(rng, split="unseen") for _ in range(200)]
    assert not any(world.is_held_out(s) for s in seen)
    assert all(world.is_held_out(s) for s in unseen)
    triples = {(s.place, s.time, t.object) for s in unseen if isinstance(s, PhotoScene) for t in s.things}
    assert triples & world.HELD_OUT_PLACE_TIME_OBJECT
    assert any(isinstance(s, ShapeScene) for s in unseen)
    # every held-out value is seen in other combinations, so an unseen scene is new only as a combination
    for place, time, obj in world.HELD_OUT_PLACE_TIME_OBJECT:
        assert any(
            s.place == place and any(t.object == obj for t in s.things) for s in seen if isinstance(s, PhotoScene)
        )
        assert any(s.time == time and any(t.object == obj for t in s.things) for s in seen if isinstance(s, PhotoScene))


def test_query_words_and_record_matching_agree_on_one_object():
    record = world.attributes(
        PhotoScene(
            "lake",
            "night",
            "snow",
            (Thing("boat", "white", "left"), Thing("house", "red", "right"), Thing("moon", None, "sky")),
        )
    )
    assert world.record_matches(record, object="boat", colour="white")
    assert not world.record_matches(record, object="boat", colour="red")  # red belongs to the house
    assert world.record_matches(record, object="house", position="right", place="lake", time="night")
    assert not world.record_matches(record, object="house", position="left")
    assert world.record_matches(record, place="lake", weather="snow") and world.record_matches(record, object="moon")
    circle = world.attributes(ShapeScene("circle", "red", "large", "left", "blue", "striped"))
    assert world.record_matches(circle, shape="circle", colour="red", position="left")
    assert not world.record_matches(circle, object="boat")
    assert world.query_text(object="boat", colour="red") == "a red boat"
    assert world.query_text(place="forest", weather="snow") == "a forest in the snow"
    assert world.query_text(shape="circle", colour="red") == "a red circle"
    assert world.query_text(object="tree", position="left") == "a tree on the left"
    assert world.query_text(time="night") == "at night"
    assert world.query_text(object="car", colour="orange") == "an orange car"


def test_rendering_is_fast_enough_for_the_demo(tmp_path):
    import time

    started = time.process_time()
    world.generate_library(tmp_path, 40, seed=5)
    assert time.process_time() - started < 40 * 0.1  # about 15-25 ms a scene here; a demo renders 300


def test_command_line_writes_a_library(tmp_path):
    out = tmp_path / "lib"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "clipsearch.world.synthetic",
            str(out),
            "--count",
            "4",
            "--seed",
            "2",
            "--variants",
            "night,fog",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "images and captions.jsonl" in done.stdout
    records = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert records == world.generate_library(tmp_path / "again", 4, 2, variants=("night", "fog"))
    assert len({r["group"] for r in records}) == 4


@pytest.mark.parametrize("argv", [["--variants", "noon"], ["--variants", "night/day"], ["--split", "some"]])
def test_command_line_rejects_bad_options(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        world.main([str(tmp_path / "x"), "--count", "1", *argv])
    assert exit_info.value.code == 2
