"""App-made thumbnails: small, metadata-free, cached by id and mtime, and never made from outside the roots.

Plumbing tests with the deterministic HashEmbedder.
"""

from __future__ import annotations

import os

import pytest
from PIL import Image

from clipsearch.errors import ImageError
from clipsearch.media.thumbnails import Thumbnails, open_original
from tests.conftest import HashEmbedder


@pytest.fixture
def indexed(tmp_path, make_library):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (1200, 800), (200, 30, 30)).save(photos / "big.jpg", quality=90)
    Image.new("RGB", (90, 60), (30, 30, 200)).save(photos / "small.png")
    library = make_library(embedder=HashEmbedder(), spec=HashEmbedder().spec)
    library.index([photos])
    rows = {os.path.basename(library.file(i).path): library.file(i) for i in (1, 2)}
    return library, photos, rows, Thumbnails(tmp_path / "thumbs", library.decode_options)


def test_thumbnails_are_small_webp_and_cached_until_the_file_changes(indexed):
    library, photos, rows, thumbs = indexed
    first = thumbs.get(rows["big.jpg"], library.roots())
    assert first.suffix == ".webp" and max(Image.open(first).size) == 256
    assert max(Image.open(thumbs.get(rows["small.png"], library.roots())).size) == 90  # never enlarged
    made = first.stat().st_mtime_ns
    assert thumbs.get(rows["big.jpg"], library.roots()) == first and first.stat().st_mtime_ns == made

    Image.new("RGB", (1200, 800), (30, 200, 30)).save(photos / "big.jpg", quality=90)
    os.utime(photos / "big.jpg", ns=(made + 10**9, made + 10**9))
    library.index()
    changed = library.file(rows["big.jpg"].id)
    second = thumbs.get(changed, library.roots())
    assert second != first and not first.exists()
    assert Image.open(second).convert("RGB").getpixel((10, 10))[1] > 150


def test_originals_outside_the_roots_or_behind_symlinks_are_refused(indexed, tmp_path):
    library, photos, rows, thumbs = indexed
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (64, 64)).save(outside)
    (photos / "big.jpg").unlink()
    os.symlink(outside, photos / "big.jpg")
    with pytest.raises(ImageError, match="outside the indexed folders"):
        thumbs.get(rows["big.jpg"], library.roots())
    with pytest.raises(ImageError, match="outside the indexed folders"):
        open_original(rows["small.png"], [str(tmp_path / "elsewhere")])
