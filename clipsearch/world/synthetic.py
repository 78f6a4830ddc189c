"""A procedural world of captioned, photo-like scenes, and the flat shape scenes as one more kind.

Photo scenes show a place (beach, forest, city, ...) at a time of day (day, sunset, night) in some weather (clear,
snow, rain, fog), with up to two coloured objects (a boat, a house, a tree, a car, a person) on the left, in the
centre or on the right, and sometimes the sun or the moon: "a red boat on the left on a lake at sunset in the fog".
Shape scenes are one coloured shape over a textured background: "a large red circle on the left over a striped
blue background". Every record says what is in its picture as fields too, so tests can score answers exactly, and
a scene can be rendered again at another time of day or in other weather (`variants`), the rest unchanged.

They stand in for photos wherever a real CLIP model cannot be downloaded: the tiny CLIP that ships with clipsearch
is trained on them (tools/train_tiny.py), and tests and the demo search libraries made of them. Some attribute
combinations are held out of training for good (`is_held_out`), so tests can score on scenes no model has seen.
Only PIL and numpy are needed, so generating a library never imports torch.

    python -m clipsearch.world.synthetic demo-library --count 200 --seed 0 --variants night,snow
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# --- the vocabulary --------------------------------------------------------------------------------------------

# Far apart in RGB and in name, so that a tiny model seeing 96 px images can tell each pair apart.
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
PLACES = ("beach", "forest", "city", "desert", "mountains", "lake", "field")
TIMES = ("day", "sunset", "night")
WEATHERS = ("clear", "snow", "rain", "fog")
OBJECTS = ("boat", "house", "tree", "car", "person")
SKY_OBJECTS = ("sun", "moon")
PHOTO_POSITIONS = ("left", "centre", "right")

SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "centre")
TEXTURES = ("plain", "striped", "dotted", "checkered")
KINDS = ("photo", "shapes")

# Where each object can be (boats float, so only on water) and the colours it comes in (trees: leaves, autumn too).
OBJECT_PLACES: dict[str, tuple[str, ...]] = {
    "boat": ("beach", "lake"),
    "house": ("beach", "forest", "city", "desert", "mountains", "lake", "field"),
    "tree": ("beach", "forest", "city", "mountains", "lake", "field"),
    "car": ("beach", "city", "desert", "mountains", "field"),
    "person": PLACES,
}
OBJECT_COLOURS: dict[str, tuple[str, ...]] = {
    "boat": tuple(COLOURS),
    "house": tuple(COLOURS),
    "tree": ("green", "orange", "yellow", "red"),
    "car": tuple(COLOURS),
    "person": tuple(COLOURS),
}

PLACE_PHRASES = {
    "beach": "on a beach",
    "forest": "in a forest",
    "city": "in a city",
    "desert": "in a desert",
    "mountains": "in the mountains",
    "lake": "on a lake",
    "field": "in a field",
}
PLACE_NAMES = {place: "mountains" if place == "mountains" else f"a {place}" for place in PLACES}
TIME_PHRASES = {"day": "by day", "sunset": "at sunset", "night": "at night"}
WEATHER_PHRASES = {"clear": "", "snow": "in the snow", "rain": "in the rain", "fog": "in the fog"}
_POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "centre": "in the centre",
}

# Combinations that the bundled model is never trained on (tools/train_tiny.py draws only scenes for which
# `is_held_out` is false), so that tests can score it on scenes it cannot have memorised. Fixed here, not drawn
# from a seed: each place, time and object is held out somewhere and seen everywhere else.
HELD_OUT_PLACE_TIME_OBJECT = frozenset(
    {
        ("lake", "night", "boat"),
        ("beach", "sunset", "person"),
        ("forest", "night", "house"),
        ("city", "sunset", "car"),
        ("desert", "night", "car"),
        ("mountains", "day", "house"),
        ("field", "sunset", "tree"),
        ("city", "night", "person"),
        ("forest", "day", "person"),
        ("mountains", "night", "tree"),
        ("field", "day", "car"),
        ("desert", "sunset", "house"),
        ("beach", "day", "house"),
        ("lake", "day", "tree"),
    }
)
HELD_OUT_PLACE_WEATHER = frozenset({("desert", "rain"), ("lake", "snow"), ("city", "fog")})
HELD_OUT_SHAPE_COLOUR_BACKGROUND = frozenset(
    {
        ("circle", "red", "blue"),
        ("circle", "white", "green"),
        ("square", "yellow", "purple"),
        ("square", "black", "white"),
        ("triangle", "green", "orange"),
        ("triangle", "blue", "yellow"),
        ("star", "orange", "black"),
        ("star", "purple", "red"),
        ("cross", "red", "white"),
        ("cross", "green", "blue"),
    }
)
SPLITS = ("all", "seen", "unseen")


# --- scenes ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thing:
    """One object in a photo scene. The sun and the moon have no colour and stand in the sky."""

    object: str
    colour: str | None
    position: str


@dataclass(frozen=True)
class PhotoScene:
    """What one photo-like image shows; `caption(scene)` says it in words."""

    place: str
    time: str
    weather: str
    things: tuple[Thing, ...]  # foreground objects left to right, then the sun or moon if any

    kind = "photo"


@dataclass(frozen=True)
class ShapeScene:
    """One coloured shape over a textured background."""

    shape: str
    colour: str
    size: str
    position: str
    background: str
    texture: str

    kind = "shapes"


Scene = PhotoScene | ShapeScene


def random_photo_scene(rng: random.Random) -> PhotoScene:
    """Draw a photo scene: any place, time and weather; none, one or two objects; the sun or moon now and then."""
    place = rng.choice(PLACES)
    time = rng.choice(TIMES)
    weather = rng.choices(WEATHERS, weights=(2, 1, 1, 1))[0]
    count = rng.choices((0, 1, 2), weights=(1, 5, 4))[0]
    allowed = [name for name in OBJECTS if place in OBJECT_PLACES[name]]
    positions = sorted(rng.sample(PHOTO_POSITIONS, count), key=PHOTO_POSITIONS.index)
    things = []
    for position in positions:
        name = rng.choice(allowed)
        things.append(Thing(name, rng.choice(OBJECT_COLOURS[name]), position))
    if rng.random() < 0.3:
        things.append(Thing("moon" if time == "night" else "sun", None, "sky"))
    return PhotoScene(place, time, weather, tuple(things))


def random_shape_scene(rng: random.Random) -> ShapeScene:
    """Draw a shape scene uniformly over all attributes, the shape's colour never equal to the background's."""
    colour = rng.choice(list(COLOURS))
    background = rng.choice([name for name in COLOURS if name != colour])
    return ShapeScene(
        shape=rng.choice(SHAPES),
        colour=colour,
        size=rng.choice(SIZES),
        position=rng.choice(POSITIONS),
        background=background,
        texture=rng.choice(TEXTURES),
    )


def random_scene(rng: random.Random, split: str = "all", photo_share: float = 0.8) -> Scene:
    """Draw a photo scene (with probability `photo_share`) or a shape scene.

    `split` "seen" draws only scenes outside the held-out combinations (what the model is trained on), "unseen"
    only scenes with at least one of them, "all" anything.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    draw = random_photo_scene if rng.random() < photo_share else random_shape_scene
    while True:
        scene = draw(rng)
        if split == "all" or is_held_out(scene) == (split == "unseen"):
            return scene


def is_held_out(scene: Scene) -> bool:
    """Whether the scene holds a combination that the bundled model was never trained on."""
    if isinstance(scene, ShapeScene):
        return (scene.shape, scene.colour, scene.background) in HELD_OUT_SHAPE_COLOUR_BACKGROUND
    if (scene.place, scene.weather) in HELD_OUT_PLACE_WEATHER:
        return True
    return any((scene.place, scene.time, t.object) in HELD_OUT_PLACE_TIME_OBJECT for t in scene.things)


def with_conditions(scene: PhotoScene, time: str | None = None, weather: str | None = None) -> PhotoScene:
    """The same scene at another time of day or in other weather; the sun turns into the moon at night."""
    time = time or scene.time
    weather = weather or scene.weather
    if time not in TIMES or weather not in WEATHERS:
        raise ValueError(f"unknown time or weather {time!r}/{weather!r}; expected {TIMES} and {WEATHERS}")
    sky = "moon" if time == "night" else "sun"
    things = tuple(replace(t, object=sky) if t.object in SKY_OBJECTS else t for t in scene.things)
    return replace(scene, time=time, weather=weather, things=things)


def parse_variant(text: str) -> dict[str, str]:
    """ "night" -> {"time": "night"}, "snow" -> {"weather": "snow"}, "night/snow" -> both."""
    conditions: dict[str, str] = {}
    for word in text.strip().lower().split("/"):
        key = "time" if word in TIMES else "weather" if word in WEATHERS else None
        if key is None or key in conditions:
            raise ValueError(f"bad variant {text!r}: give a time {TIMES}, a weather {WEATHERS}, or time/weather")
        conditions[key] = word
    return conditions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _thing_phrase(thing: Thing) -> str:
    return f"{_article(thing.colour)} {thing.colour} {thing.object} {_POSITION_PHRASES[thing.position]}"


def caption(scene: Scene) -> str:
    """Describe a scene in plain words, e.g. "a red boat on the left on a lake at sunset in the fog"."""
    if isinstance(scene, ShapeScene):
        return (
            f"a {scene.size} {scene.colour} {scene.shape} {_POSITION_PHRASES[scene.position]}"
            f" over a {scene.texture} {scene.background} background"
        )
    ground = [_thing_phrase(t) for t in scene.things if t.object not in SKY_OBJECTS]
    sky = [t.object for t in scene.things if t.object in SKY_OBJECTS]
    words = [" and ".join(ground) if ground else PLACE_NAMES[scene.place]]
    if ground:
        words.append(PLACE_PHRASES[scene.place])
    words.append(TIME_PHRASES[scene.time])
    if WEATHER_PHRASES[scene.weather]:
        words.append(WEATHER_PHRASES[scene.weather])
    if sky:
        words.append(f"with the {sky[0]}")
    return " ".join(words)


def attributes(scene: Scene) -> dict:
    """The scene's attributes as the plain fields of a captions.jsonl record."""
    if isinstance(scene, ShapeScene):
        return {
            "kind": "shapes",
            "place": None,
            "time": None,
            "weather": None,
            "objects": [
                {"object": scene.shape, "colour": scene.colour, "position": scene.position, "size": scene.size}
            ],
            "background": scene.background,
            "texture": scene.texture,
        }
    return {
        "kind": "photo",
        "place": scene.place,
        "time": scene.time,
        "weather": scene.weather,
        "objects": [{"object": t.object, "colour": t.colour, "position": t.position} for t in scene.things],
        "background": None,
        "texture": None,
    }


def scene_from_record(record: dict) -> Scene:
    """The scene a captions.jsonl record describes (the inverse of `attributes`)."""
    if record["kind"] == "shapes":
        obj = record["objects"][0]
        return ShapeScene(
            obj["object"], obj["colour"], obj["size"], obj["position"], record["background"], record["texture"]
        )
    things = tuple(Thing(o["object"], o["colour"], o["position"]) for o in record["objects"])
    return PhotoScene(record["place"], record["time"], record["weather"], things)


# --- queries: the world's words for what a search asks, and whether a record answers it ----------------------

QUERY_FIELDS = ("place", "time", "weather", "object", "colour", "position", "shape", "size", "background", "texture")


def query_text(**wanted: str) -> str:
    """Plain words asking for some attributes, in the order a caption would say them.

    query_text(object="boat", colour="red") -> "a red boat"; query_text(place="forest", weather="snow") ->
    "a forest in the snow"; query_text(time="night") -> "at night"; query_text(shape="circle") -> "a circle".
    """
    unknown = set(wanted) - set(QUERY_FIELDS)
    if unknown:
        raise ValueError(f"unknown query fields {sorted(unknown)}; expected some of {QUERY_FIELDS}")
    shape_words = [wanted[k] for k in ("size", "colour") if k in wanted]
    if "shape" in wanted or "background" in wanted or "texture" in wanted or "size" in wanted:
        words = []
        if shape_words or "shape" in wanted or "position" in wanted:
            words = [*shape_words, wanted.get("shape", "shape")]
            if "position" in wanted:
                words.append(_POSITION_PHRASES[wanted["position"]])
        backdrop = [wanted[k] for k in ("texture", "background") if k in wanted]
        if backdrop:
            words += (["over"] if words else []) + [*backdrop, "background"]
        text = " ".join(words)
        return f"{_article(text)} {text}"
    words = []
    if "object" in wanted or "position" in wanted:
        name = wanted.get("object", "thing")
        if name in SKY_OBJECTS:
            words.append(f"the {name}")
        else:
            noun = " ".join(w for w in (wanted.get("colour"), name) if w)
            words.append(f"{_article(noun)} {noun}")
            if "position" in wanted:
                words.append(_POSITION_PHRASES[wanted["position"]])
    elif "colour" in wanted:
        words.append(f"something {wanted['colour']}")
    if "place" in wanted:
        words.append(PLACE_PHRASES[wanted["place"]] if words else PLACE_NAMES[wanted["place"]])
    if "time" in wanted:
        words.append(TIME_PHRASES[wanted["time"]])
    if wanted.get("weather", "clear") != "clear":
        words.append(WEATHER_PHRASES[wanted["weather"]])
    elif "weather" in wanted:
        words.append("on a clear day" if not words else "under a clear sky")
    return " ".join(words)


def record_matches(record: dict, **wanted: str) -> bool:
    """Whether a captions.jsonl record (or `attributes(scene)`) shows everything `wanted` asks for.

    Place, time, weather, background and texture are scene fields; object, colour, position, shape and size
    must all hold for one and the same object (a red boat, not a red house beside a white boat).
    """
    for key in ("place", "time", "weather", "background", "texture"):
        if key in wanted and record.get(key) != wanted[key]:
            return False
    if "shape" in wanted:
        wanted = {**wanted, "object": wanted["shape"]}
    per_object = {k: v for k, v in wanted.items() if k in ("object", "colour", "position", "size")}
    return not per_object or any(all(obj.get(k) == v for k, v in per_object.items()) for obj in record["objects"])


# --- rendering -------------------------------------------------------------------------------------------------


def render(scene: Scene, size: tuple[int, int] = (256, 256), rng: random.Random | None = None) -> Image.Image:
    """Draw a scene as an RGB image of `size` (width, height).

    `rng` jitters colours, placement and pixel noise, so two renders of one scene are alike but not identical;
    without it the jitter is derived from the scene, and the result is repeatable. Everything the caption names
    lies inside the central square of the image, so a centre crop (as CLIP preprocessing does) keeps it and keeps
    "left" and "right" true. A photo scene's layout draws come first from `rng`, so the same rng state renders
    `with_conditions` variants of one scene with the same layout.
    """
    if rng is None:
        rng = random.Random(repr(scene))
    if isinstance(scene, ShapeScene):
        return _render_shapes(scene, size, rng)
    return _render_photo(scene, size, rng)


def _jitter_colour(rgb: Sequence[float], rng: random.Random, amount: float = 12) -> tuple[float, float, float]:
    return tuple(min(255.0, max(0.0, c + rng.uniform(-amount, amount))) for c in rgb)


_GRAIN_SIDE = 256
_grain: list[np.ndarray] = []  # standard normal noise, made on first use (nothing heavy at import)


def _add_noise(image: Image.Image | np.ndarray, rng: random.Random) -> Image.Image:
    """Sensor-like grain, the same on all three channels: a randomly shifted window on one noise tile (drawing
    fresh normals for every pixel of a 640 px image cost more than drawing the scene)."""
    if not _grain:
        _grain.append((np.random.default_rng(0).normal(0, 1, (_GRAIN_SIDE, _GRAIN_SIDE)) * 16).astype(np.int16))
    pixels = np.asarray(image, dtype=np.int16) if isinstance(image, Image.Image) else image.astype(np.int16)
    height, width = pixels.shape[:2]
    rows = (np.arange(height) * rng.choice((1, -1)) + rng.randrange(_GRAIN_SIDE)) % _GRAIN_SIDE
    cols = (np.arange(width) * rng.choice((1, -1)) + rng.randrange(_GRAIN_SIDE)) % _GRAIN_SIDE
    strength = rng.randint(2, 6)  # the grain's standard deviation, in levels
    noise = (_grain[0][rows[:, None], cols[None, :]] * strength) >> 4
    return Image.fromarray(np.clip(pixels + noise[..., None], 0, 255).astype(np.uint8), "RGB")


class _Frame:
    """Maps scene units (0..1 across the image's central square) to pixels, for drawing with PIL."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.side = min(width, height)
        self.ox, self.oy = (width - self.side) / 2, (height - self.side) / 2
        # The scene units that the whole image spans (beyond 0..1 on its long side).
        self.u0, self.u1 = -self.ox / self.side, (width - self.ox) / self.side
        self.v0, self.v1 = -self.oy / self.side, (height - self.oy) / self.side

    def p(self, u: float, v: float) -> tuple[float, float]:
        return self.ox + u * self.side, self.oy + v * self.side

    def box(self, u0: float, v0: float, u1: float, v1: float) -> tuple[float, float, float, float]:
        return (*self.p(u0, v0), *self.p(u1, v1))

    def poly(self, points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [self.p(u, v) for u, v in points]

    def px(self, length: float) -> int:
        return max(1, round(length * self.side))

    def rows(self) -> np.ndarray:
        """Scene v of each pixel row, shape (height, 1)."""
        return ((np.arange(self.height, dtype=np.float32) + 0.5 - self.oy) / self.side)[:, None]


# Sky colours from top to horizon, by time of day, clear or overcast (rain and snow).
_SKIES = {
    ("day", False): ((70, 140, 225), (175, 208, 240)),
    ("sunset", False): ((60, 50, 125), (250, 140, 60)),
    ("night", False): ((6, 9, 30), (28, 38, 80)),
    ("day", True): ((138, 143, 153), (188, 192, 198)),
    ("sunset", True): ((115, 92, 108), (200, 140, 112)),
    ("night", True): ((24, 26, 34), (50, 52, 62)),
}
# Light on the ground and its objects (RGB multipliers); the sky, lit windows and lamps glow by themselves.
_LIGHT = {"day": (1.0, 1.0, 1.0), "sunset": (1.0, 0.76, 0.6), "night": (0.42, 0.45, 0.64)}
_FOG = {"day": (205, 207, 212), "sunset": (210, 180, 165), "night": (72, 76, 92)}
# Horizon and where objects stand (their base, in scene units), per place; boats float on the water line.
_HORIZON = {"beach": 0.5, "forest": 0.6, "city": 0.66, "desert": 0.55, "mountains": 0.6, "lake": 0.46, "field": 0.52}
_GROUND_LINE = {
    "beach": 0.88,
    "forest": 0.9,
    "city": 0.9,
    "desert": 0.88,
    "mountains": 0.9,
    "lake": 0.93,
    "field": 0.88,
}
_WATER_LINE = {"beach": 0.64, "lake": 0.74}
_X = {"left": 0.2, "centre": 0.5, "right": 0.8}
# Large enough to be made out at the model's 96 px: an object spans 40-50 px of it.
_HEIGHTS = {"boat": 0.42, "house": 0.46, "tree": 0.52, "car": 0.3, "person": 0.48}


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def _shade(rgb: Sequence[float], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, round(c * factor))) for c in rgb)


def _render_photo(scene: PhotoScene, size: tuple[int, int], rng: random.Random) -> Image.Image:
    width, height = size
    frame = _Frame(width, height)
    layout = random.Random(rng.getrandbits(64))
    # Conditions draw from their own stream (stars, snowflakes, lit windows), so variants keep the same layout.
    conditions = random.Random(f"{rng.getrandbits(64)}:{scene.time}:{scene.weather}")
    overcast = scene.weather in ("rain", "snow")
    light = tuple(c * {"rain": 0.8, "snow": 0.92}.get(scene.weather, 1.0) for c in _LIGHT[scene.time])
    horizon = _HORIZON[scene.place]

    # Sky: a vertical gradient, stars on clear nights, the sun or the moon. Layers are composited by PIL in C:
    # the demo renders hundreds of 640 px scenes and training tens of thousands.
    top, bottom = _SKIES[(scene.time, overcast)]
    t = np.clip((frame.rows() - frame.v0) / max(horizon - frame.v0, 1e-3), 0, 1)
    column = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    image = Image.fromarray(column.astype(np.uint8)[:, None, :], "RGB").resize(size, Image.Resampling.NEAREST)
    image = image.convert("RGBA")
    glow = Image.new("RGBA", size, (0, 0, 0, 0))
    glow_draw = ImageDraw.Draw(glow)
    if scene.time == "night" and scene.weather == "clear":
        for _ in range(conditions.randint(25, 45)):
            u, v = conditions.uniform(frame.u0, frame.u1), conditions.uniform(frame.v0, horizon - 0.1)
            r = max(0.5, frame.side * 0.004)
            x, y = frame.p(u, v)
            glow_draw.ellipse((x - r, y - r, x + r, y + r), fill=(235, 235, 255, conditions.randint(150, 255)))
    for thing in scene.things:
        if thing.object in SKY_OBJECTS:
            _draw_sky_object(glow_draw, frame, thing, scene, layout)
    image.alpha_composite(glow)

    # The place (lit), snow on its ground, its lit windows; then the objects (lit) and their lamps.
    ground = Image.new("RGBA", size, (0, 0, 0, 0))
    lamps = Image.new("RGBA", size, (0, 0, 0, 0))
    _draw_place(ImageDraw.Draw(ground), ImageDraw.Draw(lamps), frame, scene, layout, conditions)
    if scene.weather == "snow":
        # Snow lies on flat ground: whiten the place layer below the horizon.
        snow = Image.new("RGBA", size, (242, 244, 248, 255))
        snow.putalpha(ground.getchannel("A"))
        ground = Image.composite(
            snow, ground, _row_mask(frame, lambda v: np.clip((v - horizon + 0.04) / 0.08, 0, 1) * 0.85)
        )
    image.alpha_composite(_lit(ground, light))
    image.alpha_composite(lamps)
    objects = Image.new("RGBA", size, (0, 0, 0, 0))
    lamps = Image.new("RGBA", size, (0, 0, 0, 0))
    draw, lamp_draw = ImageDraw.Draw(objects), ImageDraw.Draw(lamps)
    for thing in scene.things:
        if thing.object not in SKY_OBJECTS:
            _draw_object(draw, lamp_draw, frame, thing, scene, layout)
    image.alpha_composite(_lit(objects, light))
    image.alpha_composite(lamps)
    image = image.convert("RGB")

    # Weather over everything: fog thickest far away, rain streaks, falling snow.
    if scene.weather == "fog":
        fog = Image.new("RGB", size, _FOG[scene.time])
        image = Image.composite(
            fog, image, _row_mask(frame, lambda v: 0.62 - 0.3 * np.clip((v - horizon) / 0.45, 0, 1))
        )
    elif scene.weather == "rain":
        image = Image.blend(image, image.convert("L").convert("RGB"), 0.3)
        streaks = Image.new("L", size, 0)
        streak_draw = ImageDraw.Draw(streaks)
        slant = conditions.uniform(0.2, 0.45)
        for _ in range(conditions.randint(70, 110)):
            u, v = conditions.uniform(frame.u0, frame.u1), conditions.uniform(frame.v0, frame.v1)
            length = conditions.uniform(0.05, 0.09)
            streak_draw.line(
                frame.poly([(u, v), (u - slant * length, v + length)]),
                fill=conditions.randint(100, 165),
                width=frame.px(0.006),
            )
        image = Image.composite(Image.new("RGB", size, _shade((215, 220, 230), light[0])), image, streaks)
    elif scene.weather == "snow":
        flakes = Image.new("L", size, 0)
        flake_draw = ImageDraw.Draw(flakes)
        for _ in range(conditions.randint(70, 120)):
            u, v = conditions.uniform(frame.u0, frame.u1), conditions.uniform(frame.v0, frame.v1)
            r = conditions.uniform(0.005, 0.011) * frame.side
            x, y = frame.p(u, v)
            flake_draw.ellipse((x - r, y - r, x + r, y + r), fill=230)
        image = Image.composite(Image.new("RGB", size, (248, 248, 252)), image, flakes)
    return _add_noise(image, layout)


def _row_mask(frame: _Frame, amount) -> Image.Image:
    """An "L" mask whose value on each row is `amount(v)` (0..1) of that row's scene v."""
    column = (np.clip(amount(frame.rows()), 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(column, "L").resize((frame.width, frame.height), Image.Resampling.NEAREST)


def _lit(layer: Image.Image, light: tuple[float, ...]) -> Image.Image:
    """The layer's colours under a light (RGB multipliers), alpha unchanged."""
    if all(c == 1.0 for c in light):
        return layer
    return layer.point(_light_table(light))


@functools.lru_cache(maxsize=32)
def _light_table(light: tuple[float, ...]) -> list[int]:
    return [min(255, round(i * c)) for c in light for i in range(256)] + list(range(256))


def _draw_sky_object(
    draw: ImageDraw.ImageDraw, frame: _Frame, thing: Thing, scene: PhotoScene, rng: random.Random
) -> None:
    u = rng.choice((0.2, 0.8)) + rng.uniform(-0.06, 0.06)
    v = rng.uniform(0.1, 0.17)
    if thing.object == "sun":
        core = (255, 236, 120) if scene.time == "day" else (255, 120, 40)
        r = 0.075
        halo = (*core, 90 if scene.weather == "clear" else 60)
        draw.ellipse(frame.box(u - r * 1.45, v - r * 1.45, u + r * 1.45, v + r * 1.45), fill=halo)
        draw.ellipse(frame.box(u - r, v - r, u + r, v + r), fill=(*core, 255 if scene.weather == "clear" else 200))
    else:
        r = 0.065
        draw.ellipse(frame.box(u - r * 1.4, v - r * 1.4, u + r * 1.4, v + r * 1.4), fill=(200, 210, 240, 40))
        draw.ellipse(frame.box(u - r, v - r, u + r, v + r), fill=(236, 236, 218, 255))
        for du, dv, cr in ((-0.02, -0.015, 0.014), (0.018, 0.012, 0.011), (-0.008, 0.025, 0.008)):
            draw.ellipse(frame.box(u + du - cr, v + dv - cr, u + du + cr, v + dv + cr), fill=(200, 200, 185, 255))


def _draw_place(
    draw: ImageDraw.ImageDraw,
    lamps: ImageDraw.ImageDraw,
    frame: _Frame,
    scene: PhotoScene,
    rng: random.Random,
    conditions: random.Random,
) -> None:
    """The ground and the far background of a place, in its own colours (lit later)."""
    horizon = _HORIZON[scene.place]
    left, right, bottom = frame.u0 - 0.01, frame.u1 + 0.01, frame.v1 + 0.01
    night = scene.time == "night"
    j = lambda rgb, amount=10: tuple(round(c) for c in _jitter_colour(rgb, rng, amount))  # noqa: E731

    if scene.place == "beach":
        sea, sand = j((30, 105, 165)), j((226, 206, 150))
        draw.rectangle(frame.box(left, horizon, right, bottom), fill=sea)
        for k in range(6):
            v = horizon + 0.02 + k * 0.025 + rng.uniform(-0.006, 0.006)
            draw.line(frame.poly([(left, v), (right, v)]), fill=_mix(sea, (230, 240, 250), 0.35), width=frame.px(0.006))
        shore = [(left, 0.7 + rng.uniform(-0.02, 0.02))]
        shore += [(u, 0.69 + 0.015 * math.sin(u * 9 + rng.uniform(0, 6))) for u in np.linspace(0, 1, 8)]
        shore += [(right, 0.7), (right, bottom), (left, bottom)]
        draw.polygon(frame.poly(shore), fill=sand)
        draw.line(frame.poly(shore[:-2]), fill=(245, 245, 240), width=frame.px(0.01))
    elif scene.place == "lake":
        hills, water, bank = j((45, 95, 55)), j((45, 95, 140)), j((80, 140, 65))
        for _ in range(5):
            u, r = rng.uniform(left, right), rng.uniform(0.15, 0.3)
            draw.ellipse(
                frame.box(u - r, horizon - r * 0.45, u + r, horizon + r * 0.45),
                fill=_shade(hills, rng.uniform(0.8, 1.1)),
            )
        draw.rectangle(frame.box(left, horizon, right, bottom), fill=water)
        for k in range(5):
            v = horizon + 0.04 + k * 0.05
            u = rng.uniform(0, 0.8)
            draw.line(
                frame.poly([(u, v), (u + rng.uniform(0.1, 0.25), v)]),
                fill=_mix(water, (220, 235, 245), 0.3),
                width=frame.px(0.006),
            )
        draw.polygon(
            frame.poly([(left, 0.84), (0.3, 0.82), (0.7, 0.845), (right, 0.83), (right, bottom), (left, bottom)]),
            fill=bank,
        )
    elif scene.place == "forest":
        floor = j((60, 95, 40))
        draw.rectangle(frame.box(left, horizon - 0.02, right, bottom), fill=floor)
        for row in range(3):
            base = horizon + row * 0.05
            for u in np.arange(left - 0.05, right + 0.05, 0.09):
                u += rng.uniform(-0.03, 0.03)
                h, w = rng.uniform(0.25, 0.4) * (1 + row * 0.1), rng.uniform(0.06, 0.08)
                green = _shade((22, 72, 36), rng.uniform(0.75, 1.25) * (1 - row * 0.12))
                draw.rectangle(frame.box(u - 0.01, base - 0.05, u + 0.01, base), fill=(60, 40, 25))
                draw.polygon(frame.poly([(u, base - h), (u - w, base - 0.03), (u + w, base - 0.03)]), fill=green)
    elif scene.place == "city":
        draw.rectangle(frame.box(left, horizon, right, bottom), fill=j((88, 88, 92)))
        draw.rectangle(frame.box(left, horizon, right, horizon + 0.05), fill=j((150, 148, 145)))
        for u in np.arange(0.06, 1, 0.2):
            v = (horizon + 0.05 + bottom) / 2 + 0.05
            draw.line(frame.poly([(u, v), (u + 0.09, v)]), fill=(225, 225, 215), width=frame.px(0.008))
        u = left
        while u < right:
            w, h = rng.uniform(0.09, 0.16), rng.uniform(0.22, 0.45)
            grey = rng.uniform(95, 165)
            wall = (round(grey), round(grey * rng.uniform(0.95, 1.02)), round(grey * rng.uniform(0.98, 1.1)))
            draw.rectangle(frame.box(u, horizon - h, u + w, horizon), fill=wall)
            for wy in np.arange(horizon - h + 0.03, horizon - 0.03, 0.05):
                for wx in np.arange(u + 0.02, u + w - 0.025, 0.035):
                    lit = night and conditions.random() < 0.45
                    target = lamps if lit else draw
                    colour = (255, 215, 110, 255) if lit else _mix(wall, (200, 215, 235), 0.45)
                    target.rectangle(frame.box(wx, wy, wx + 0.016, wy + 0.022), fill=colour)
            u += w + rng.uniform(0.0, 0.02)
    elif scene.place == "desert":
        sand = j((218, 165, 95), 12)
        phase, wave = rng.uniform(0, 6.3), rng.uniform(5, 8)
        us = np.linspace(left, right, 24)
        top = [(u, horizon - 0.04 * math.sin(u * wave + phase)) for u in us]
        draw.polygon(frame.poly(top + [(right, bottom), (left, bottom)]), fill=sand)
        for k in range(2):
            v = horizon + 0.12 + 0.12 * k
            ridge = [(u, v - 0.03 * math.sin(u * (wave - 2) + phase + k)) for u in us]
            draw.polygon(frame.poly(ridge + [(right, v + 0.04), (left, v + 0.04)]), fill=_shade(sand, 0.86))
    elif scene.place == "mountains":
        rock, meadow = j((108, 108, 124)), j((95, 135, 72))
        for _ in range(4):
            u, h, w = rng.uniform(-0.1, 1.1), rng.uniform(0.26, 0.4), rng.uniform(0.22, 0.32)
            base, peak = horizon + 0.02, horizon - h
            shade = _shade(rock, rng.uniform(0.8, 1.15))
            draw.polygon(frame.poly([(u, peak), (u - w, base), (u + w, base)]), fill=shade)
            cap = 0.3
            draw.polygon(
                frame.poly(
                    [
                        (u, peak),
                        (u - w * cap, peak + h * cap),
                        (u - w * cap * 0.3, peak + h * cap * 0.8),
                        (u + w * cap * 0.2, peak + h * cap * 0.95),
                        (u + w * cap, peak + h * cap),
                    ]
                ),
                fill=(238, 240, 245),
            )
        draw.polygon(
            frame.poly(
                [
                    (left, horizon + 0.02),
                    (0.4, horizon - 0.01),
                    (right, horizon + 0.03),
                    (right, bottom),
                    (left, bottom),
                ]
            ),
            fill=meadow,
        )
    elif scene.place == "field":
        crop = j(rng.choice(((185, 175, 70), (125, 165, 60))))
        draw.rectangle(frame.box(left, horizon, right, bottom), fill=crop)
        draw.rectangle(frame.box(left, horizon - 0.015, right, horizon + 0.005), fill=(50, 90, 45))
        vanish = rng.uniform(0.3, 0.7)
        for k in range(-8, 9):
            draw.line(
                frame.poly([(vanish, horizon), (vanish + k * 0.22, bottom)]),
                fill=_shade(crop, 0.78),
                width=frame.px(0.008),
            )
    else:
        raise ValueError(f"unknown place {scene.place!r}; expected one of {PLACES}")


def _draw_object(
    draw: ImageDraw.ImageDraw,
    lamps: ImageDraw.ImageDraw,
    frame: _Frame,
    thing: Thing,
    scene: PhotoScene,
    rng: random.Random,
) -> None:
    """A foreground object standing on the ground (a boat: floating), coloured as its caption says."""
    colour = tuple(round(c) for c in _jitter_colour(COLOURS[thing.colour], rng))
    x = _X[thing.position] + rng.uniform(-0.035, 0.035)
    h = _HEIGHTS[thing.object] * rng.uniform(0.92, 1.08)
    base = (_WATER_LINE if thing.object == "boat" else _GROUND_LINE)[scene.place] + rng.uniform(-0.015, 0.015)
    night = scene.time == "night"
    dark = (40, 34, 30)
    if thing.object == "boat":
        w = 0.38
        deck = base - 0.34 * h
        draw.polygon(
            frame.poly([(x - w / 2, deck), (x + w / 2, deck), (x + w * 0.36, base), (x - w * 0.36, base)]), fill=colour
        )
        draw.line(frame.poly([(x - 0.01, deck), (x - 0.01, base - h)]), fill=dark, width=frame.px(0.012))
        sail = _mix(colour, (250, 250, 250), 0.25)
        draw.polygon(frame.poly([(x, base - h * 0.96), (x, deck - 0.02), (x + w * 0.42, deck - 0.02)]), fill=sail)
        draw.polygon(
            frame.poly([(x - 0.02, base - h * 0.85), (x - 0.02, deck - 0.02), (x - w * 0.3, deck - 0.02)]), fill=sail
        )
    elif thing.object == "house":
        w = 0.34
        wall_top = base - 0.6 * h
        draw.rectangle(frame.box(x - w / 2, wall_top, x + w / 2, base), fill=colour)
        roof = (95, 55, 45) if thing.colour != "red" else (70, 50, 45)
        draw.polygon(frame.poly([(x - w / 2 - 0.03, wall_top), (x + w / 2 + 0.03, wall_top), (x, base - h)]), fill=roof)
        draw.rectangle(frame.box(x - 0.03, base - 0.13, x + 0.03, base), fill=dark)
        for wx in (x - w * 0.33, x + w * 0.33 - 0.06):
            box = frame.box(wx, wall_top + 0.04, wx + 0.06, wall_top + 0.1)
            if night:
                lamps.rectangle(box, fill=(255, 210, 100, 255))
            else:
                draw.rectangle(box, fill=(190, 215, 235))
    elif thing.object == "tree":
        draw.rectangle(frame.box(x - 0.025, base - 0.45 * h, x + 0.025, base), fill=(95, 62, 35))
        r = 0.3 * h
        cy = base - h + r
        draw.ellipse(frame.box(x - r * 1.1, cy - r, x + r * 1.1, cy + r), fill=_shade(colour, 0.85))
        draw.ellipse(frame.box(x - r * 0.9, cy - r * 0.95, x + r * 0.75, cy + r * 0.6), fill=colour)
    elif thing.object == "car":
        w = 0.4
        body_top = base - 0.58 * h
        draw.rectangle(frame.box(x - w / 2, body_top, x + w / 2, base - 0.18 * h), fill=colour)
        draw.polygon(
            frame.poly(
                [(x - w * 0.3, body_top), (x + w * 0.3, body_top), (x + w * 0.2, base - h), (x - w * 0.22, base - h)]
            ),
            fill=colour,
        )
        glass = (150, 175, 195)
        draw.polygon(
            frame.poly(
                [
                    (x - w * 0.22, body_top - 0.01),
                    (x - 0.01, body_top - 0.01),
                    (x - 0.01, base - h + 0.025),
                    (x - w * 0.17, base - h + 0.025),
                ]
            ),
            fill=glass,
        )
        draw.polygon(
            frame.poly(
                [
                    (x + 0.01, body_top - 0.01),
                    (x + w * 0.22, body_top - 0.01),
                    (x + w * 0.15, base - h + 0.025),
                    (x + 0.01, base - h + 0.025),
                ]
            ),
            fill=glass,
        )
        r = 0.2 * h
        for wx in (x - w * 0.3, x + w * 0.3):
            draw.ellipse(frame.box(wx - r, base - 2 * r, wx + r, base), fill=(22, 22, 24))
        if night:
            lamps.ellipse(
                frame.box(x + w / 2 - 0.03, body_top + 0.01, x + w / 2 + 0.005, body_top + 0.04),
                fill=(255, 240, 170, 255),
            )
    elif thing.object == "person":
        legs = (45, 45, 65)
        hip = base - 0.45 * h
        a, b = 0.1 * h, 0.14 * h  # half the width at the hips and of the stride
        draw.polygon(frame.poly([(x - a, hip), (x - 0.01, hip), (x - 0.05 * h, base), (x - b, base)]), fill=legs)
        draw.polygon(frame.poly([(x + 0.01, hip), (x + a, hip), (x + b, base), (x + 0.05 * h, base)]), fill=legs)
        shoulder = base - 0.8 * h
        c = 0.13 * h  # half the width of the shoulders
        draw.rectangle(frame.box(x - c, shoulder, x + c, hip + 0.01), fill=colour)
        for side in (-1, 1):
            draw.polygon(
                frame.poly(
                    [
                        (x + side * c, shoulder),
                        (x + side * (c + 0.07 * h), hip - 0.03),
                        (x + side * (c + 0.03 * h), hip),
                        (x + side * c, shoulder + 0.1 * h),
                    ]
                ),
                fill=colour,
            )
        r = 0.1 * h
        draw.ellipse(frame.box(x - r, shoulder - 2 * r - 0.005, x + r, shoulder - 0.005), fill=(228, 188, 150))
    else:
        raise ValueError(f"unknown object {thing.object!r}; expected one of {OBJECTS}")


# --- shape scenes ----------------------------------------------------------------------------------------------

# Shape centre as a fraction of the central square of the image (x, y).
_SHAPE_CENTRES = {
    "left": (0.3, 0.5),
    "right": (0.7, 0.5),
    "top": (0.5, 0.3),
    "bottom": (0.5, 0.7),
    "centre": (0.5, 0.5),
}
# Shape radius as a fraction of the image's shorter side: a small shape still spans about 30 of the model's
# 96 pixels, enough to tell a star from a circle.
_SIZE_RADII = {"small": (0.15, 0.17), "large": (0.25, 0.28)}
_SUPERSAMPLE = 2  # the shape is drawn at 2x and scaled down, which anti-aliases its edges


def _render_shapes(scene: ShapeScene, size: tuple[int, int], rng: random.Random) -> Image.Image:
    width, height = size
    side = min(width, height)
    fg = _jitter_colour(COLOURS[scene.colour], rng)
    bg = _jitter_colour(COLOURS[scene.background], rng)
    pixels = _background(scene.texture, bg, width, height, rng)
    fx, fy = _SHAPE_CENTRES[scene.position]
    cx = (width - side) / 2 + (fx + rng.uniform(-0.03, 0.03)) * side
    cy = (height - side) / 2 + (fy + rng.uniform(-0.03, 0.03)) * side
    radius = rng.uniform(*_SIZE_RADII[scene.size]) * side
    alpha = _shape_mask(scene.shape, cx, cy, radius, rng.uniform(-15, 15), width, height)
    pixels = pixels * (1 - alpha[..., None]) + np.asarray(fg, dtype=np.float32) * alpha[..., None]
    return _add_noise(pixels, rng)


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
    # Periods are fractions of the image, so the texture survives downscaling to the model's input.
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


def _shape_mask(shape: str, cx: float, cy: float, radius: float, degrees: float, width: int, height: int) -> np.ndarray:
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
        points = [(1.15 * r * math.sin(t), -1.15 * r * math.cos(t)) for t in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
    elif shape == "star":
        points = []
        for k in range(10):
            rad = 1.1 * r if k % 2 == 0 else 0.45 * r
            t = k * math.pi / 5
            points.append((rad * math.sin(t), -rad * math.cos(t)))
    elif shape == "cross":
        a, b = r, 0.34 * r
        arm = [(-b, -a), (b, -a), (b, -b)]  # the top arm, then the same a quarter turn on, three times
        points = [(x * c - y * s, x * s + y * c) for c, s in ((1, 0), (0, 1), (-1, 0), (0, -1)) for x, y in arm]
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]


# --- libraries -------------------------------------------------------------------------------------------------


def generate_library(
    out_dir: str | Path,
    count: int,
    seed: int,
    *,
    variants: Sequence[str] = (),
    split: str = "all",
    photo_share: float = 0.8,
) -> list[dict]:
    """Write `count` scene images and a captions.jsonl into `out_dir`; the same arguments give the same files.

    Sizes vary from 160 to 640 px a side, square, landscape and portrait; most files are JPEG, some PNG.
    `variants` ("night", "snow", "day/rain", ...) also renders every photo scene at those times or weathers, same
    layout, as `scene-00012-night.jpg` beside `scene-00012.jpg` (a variant equal to the scene itself is skipped).
    `split` draws from all scenes, only those seen in training or only held-out ones (see `random_scene`).
    Returns the records written to captions.jsonl: {"file", "caption", "group" (the base scene's name, shared by
    its variants), "variant" (None or e.g. "night"), "held_out", "kind", "place", "time", "weather",
    "objects": [{"object", "colour", "position"(, "size")}], "background", "texture"}.
    """
    rngs = [random.Random(seed * 1_000_003 + index) for index in range(count)]
    scenes = [random_scene(rng, split, photo_share) for rng in rngs]
    return _write(Path(out_dir), scenes, rngs, variants)


def write_scenes(out_dir: str | Path, scenes: Sequence[Scene], seed: int, variants: Sequence[str] = ()) -> list[dict]:
    """Write the given scenes (and their `variants`) as `generate_library` writes drawn ones."""
    rngs = [random.Random(f"scenes:{seed}:{index}") for index in range(len(scenes))]
    return _write(Path(out_dir), list(scenes), rngs, variants)


def _write(out: Path, scenes: list[Scene], rngs: list[random.Random], variants: Sequence[str]) -> list[dict]:
    wanted = [(text, parse_variant(text)) for text in variants]
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for index, (scene, rng) in enumerate(zip(scenes, rngs)):
        size = _library_image_size(rng)
        suffix = ".jpg" if rng.random() < 0.8 else ".png"
        quality = rng.randint(70, 95)
        render_seed = rng.getrandbits(64)
        group = f"scene-{index:05d}"
        renders = [(None, scene)]
        if isinstance(scene, PhotoScene):
            for text, conditions in wanted:
                variant = with_conditions(scene, **conditions)
                if all(variant != other for _, other in renders):
                    renders.append((text.replace("/", "-"), variant))
        for variant_name, shown in renders:
            image = render(shown, size, random.Random(render_seed))
            name = group + (f"-{variant_name}" if variant_name else "") + suffix
            if suffix == ".jpg":
                image.save(out / name, "JPEG", quality=quality)
            else:
                image.save(out / name, "PNG")
            records.append(
                {
                    "file": name,
                    "caption": caption(shown),
                    "group": group,
                    "variant": variant_name,
                    "held_out": is_held_out(shown),
                    **attributes(shown),
                }
            )
    with open(out / "captions.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    return records


def _library_image_size(rng: random.Random) -> tuple[int, int]:
    short = rng.randint(160, 480)
    long = min(640, round(short * rng.choice((1.0, 4 / 3, 3 / 2, 16 / 9))))
    return (long, short) if rng.random() < 0.55 else (short, long)


def main(argv: list[str] | None = None) -> None:
    """Write a library of synthetic captioned images."""
    parser = argparse.ArgumentParser(
        prog="python -m clipsearch.world.synthetic",
        description="Write COUNT synthetic scene images and captions.jsonl into OUT_DIR.",
    )
    parser.add_argument("out_dir", help="folder to write (created if missing)")
    parser.add_argument("--count", type=int, default=200, help="number of scenes (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    parser.add_argument(
        "--variants",
        default="",
        help="also render each photo scene at these times or weathers, e.g. night,snow,day/rain",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="all scenes, only those seen in training, or only held-out ones (default all)",
    )
    parser.add_argument("--photo-share", type=float, default=0.8, help="share of photo scenes (default 0.8)")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v.strip()]
    try:
        records = generate_library(
            args.out_dir, args.count, args.seed, variants=variants, split=args.split, photo_share=args.photo_share
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {len(records)} images and captions.jsonl to {args.out_dir} (seed {args.seed})")


if __name__ == "__main__":
    main()
