"""Fixtures of the web-app tests: the app launched in-process on a free loopback port, and a hostile library.

Everything on disk lives under pytest's tmp folders; thumbnails go to a tmp folder, not into the shared index.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from clipsearch import Library
from tests.conftest import read_captions

SECRET = "TOP-SECRET-MARKER-7f3a"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_app(library: Library, thumbs: Path, **settings):
    from ui.app import AppSettings, launch

    app = launch(library, port=free_port(), prevent_thread_lock=True, quiet=True,
                 settings=AppSettings(thumbs_dir=str(thumbs), **settings))
    return app


@pytest.fixture(scope="session")
def captions(scenes) -> dict[str, str]:
    return read_captions(scenes[0])


@pytest.fixture(scope="session")
def scenes_app(scenes_library, tmp_path_factory):
    """The app over the held-out scenes (tiny model), served on 127.0.0.1 for the whole session."""
    app = launch_app(scenes_library, tmp_path_factory.mktemp("thumbs"), min_score=-1.0)
    yield app
    app.close()


@pytest.fixture(scope="session")
def client(scenes_app, tmp_path_factory):
    from gradio_client import Client

    downloads = str(tmp_path_factory.mktemp("downloads"))
    return Client(scenes_app.local_url, verbose=False, download_files=downloads)


@dataclass
class Hostile:
    """A library salted with things that must never be served, and the ids of its booby-trapped rows."""

    app: object
    library: Library
    root: Path
    outside: Path
    swapped_id: int  # an indexed file replaced by a symlink to a secret after indexing
    redirected_id: int  # a catalog row edited to point outside the roots
    exif_id: int  # a photo carrying EXIF text that thumbnails must drop


@pytest.fixture(scope="session")
def hostile(tmp_path_factory, scenes, tiny_spec, tiny_embedder) -> Hostile:
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "photos", base / "outside"
    root.mkdir()
    outside.mkdir()
    folder, records = scenes
    for record in records[:8]:
        shutil.copy(folder / record["file"], root / record["file"])
    # Secrets outside the library: a text file and an image whose bytes carry the marker.
    (outside / "secret.txt").write_text(SECRET)
    secret_image = Image.open(folder / records[9]["file"]).convert("RGB")
    exif = Image.Exif()
    exif[0x010E] = SECRET  # ImageDescription
    secret_image.save(outside / "secret.jpg", exif=exif.tobytes())
    os.symlink(outside / "secret.jpg", root / "leak.jpg")
    os.symlink(outside, root / "leak-dir")
    (root / "page.html").write_text(f"<html><script>alert('{SECRET}')</script></html>")
    (root / "evil.svg").write_text(f"<svg xmlns='http://www.w3.org/2000/svg'><script>{SECRET}</script></svg>")
    (root / "fake.jpg").write_text(f"<html><script>alert('{SECRET}')</script></html>")
    with_exif = Image.open(folder / records[10]["file"]).convert("RGB").resize((1024, 768))  # larger than a tile
    with_exif.save(root / "exif.jpg", exif=exif.tobytes())

    library = Library.open(base / "index", model=tiny_spec, create=True)
    library.use_embedder(tiny_embedder)
    library.index([root])
    ids = {Path(h.path).name: h.id for h in library.search("a shape", top_k=100, min_score=-1)}
    assert "leak.jpg" not in ids and "fake.jpg" not in ids

    swapped = records[0]["file"]
    (root / swapped).unlink()
    os.symlink(outside / "secret.jpg", root / swapped)
    redirected = records[1]["file"]
    with sqlite3.connect(base / "index" / "catalog.sqlite") as db:
        db.execute("UPDATE files SET path = ? WHERE id = ?", (os.fsencode(str(outside / "secret.jpg")),
                                                             ids[redirected]))
    app = launch_app(library, base / "thumbs", max_upload="1mb", min_score=-1.0)
    yield Hostile(app, library, root, outside, ids[swapped], ids[redirected], ids["exif.jpg"])
    app.close()



@dataclass
class Archive:
    """A small archive for the Explore views: subjects shot several times, planted copies and odd ones out."""

    app: object
    library: Library
    folder: Path
    copies: dict[str, str]  # copy's file name -> original's file name
    odd: list[str]  # file names of the odd ones out

    def ids(self) -> dict[str, int]:
        return {Path(h.path).name: h.id for h in self.library.browse(order="name", limit=1000).hits}


@pytest.fixture(scope="session")
def archive(tmp_path_factory, tiny_spec, tiny_embedder) -> Archive:
    """8 subjects x 8 shots (every photo has similar ones, as the odd-ones-out score assumes), a resized, an
    exact and a recompressed copy, and nine odd ones out (noise, text pages, gradients) as tests/explore plants
    them; indexed with the tiny model and served by the app."""
    import random

    from clipsearch.world.synthetic import random_scene, render
    from tests.explore.conftest import make_copy, make_odd_ones

    base = tmp_path_factory.mktemp("archive")
    folder = base / "photos"
    folder.mkdir()
    rng = random.Random(2024)
    for subject in range(8):
        scene = random_scene(rng)
        for shot in range(8):
            size = (rng.randint(200, 360), rng.randint(200, 360))
            render(scene, size, random.Random(rng.random())).save(folder / f"s{subject:02d}-{shot}.jpg", quality=90)
    copies = {}
    for number, kind in enumerate(("resized", "exact", "recompressed")):
        original = folder / f"s{number:02d}-0.jpg"
        copy = make_copy(original, folder / f"copy-{number}-{kind}", kind, rng)
        copies[copy.name] = original.name
    odd = make_odd_ones(folder)
    library = Library.open(base / "index", model=tiny_spec, create=True)
    library.use_embedder(tiny_embedder)
    assert library.index([folder]).indexed == 64 + len(copies) + len(odd)
    app = launch_app(library, base / "thumbs", min_score=-1.0)
    yield Archive(app, library, folder, copies, odd)
    app.close()


@pytest.fixture(scope="session")
def archive_client(archive, tmp_path_factory):
    from gradio_client import Client

    return Client(archive.app.local_url, verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (never a downloaded browser), one per test module."""
    from playwright.sync_api import sync_playwright

    from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
