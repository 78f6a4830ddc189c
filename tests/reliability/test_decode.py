"""The safe decoder on its own: what each awkward kind of picture turns into, and how fast refusals are."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clipsearch.errors import ImageError
from clipsearch.imaging.decode import BACKGROUND, DecodeOptions, PixelSpec, decode_image, load_pixels, open_image
from tests.reliability.hostile import animated, encoded, exif_jpeg, malformed_exif_jpeg, picture


def decode(data: bytes, **kwargs) -> Image.Image:
    return open_image(io.BytesIO(data), **kwargs)


def test_16_bit_greyscale_keeps_its_brightness_instead_of_saturating_white():
    ramp = np.tile(np.linspace(0, 65535, 256), (4, 1)).astype(np.uint16)
    pixels = np.asarray(decode(encoded(Image.fromarray(ramp), "PNG")))
    assert pixels[0, 0].tolist() == [0, 0, 0]
    assert pixels[0, -1].tolist() == [255, 255, 255]
    assert 120 <= pixels[0, 128, 0] <= 135  # mid-grey stays mid-grey
    dark = np.full((8, 8), 8000, np.uint16)  # a dark 16-bit picture stays dark (8000/257 ~ 31)
    assert np.asarray(decode(encoded(Image.fromarray(dark), "PNG")))[0, 0, 0] == 31


@pytest.mark.parametrize("mode", ["P", "LA", "RGBA"])
def test_transparent_pixels_are_composited_on_the_fixed_background(mode):
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 255))
    image.paste((0, 0, 255, 0), (0, 0, 5, 10))  # left half fully transparent blue
    if mode == "P":
        source = image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        blue = source.getpixel((0, 0))
        data = encoded(source, "PNG", transparency=blue)
    else:
        data = encoded(image.convert(mode), "PNG")
    pixels = np.asarray(decode(data))
    assert tuple(pixels[5, 1]) == BACKGROUND
    assert tuple(pixels[5, 8]) != BACKGROUND


def test_cmyk_jpeg_decodes_to_plausible_rgb():
    red = Image.new("RGB", (32, 32), (220, 30, 30)).convert("CMYK")
    pixels = np.asarray(decode(encoded(red, "JPEG", quality=95))).astype(int)
    r, g, b = pixels[16, 16]
    assert r > 150 and g < 90 and b < 90


ROTATIONS = {  # EXIF orientation -> how a 60x30 landscape picture looks upright
    1: (60, 30), 2: (60, 30), 3: (60, 30), 4: (60, 30), 5: (30, 60), 6: (30, 60), 7: (30, 60), 8: (30, 60),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(orientation):
    image, size = decode_image(io.BytesIO(exif_jpeg(7, orientation)))
    assert image.size == ROTATIONS[orientation] == size
    reference = np.asarray(decode(exif_jpeg(7, 1))).astype(int)
    expected = np.asarray(Image.fromarray(reference.astype(np.uint8)).transpose(_transpose(orientation))) \
        if orientation > 1 else reference
    assert np.abs(np.asarray(image).astype(int) - expected).mean() < 8


def _transpose(orientation: int):
    T = Image.Transpose
    return {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE, 6: T.ROTATE_270,
            7: T.TRANSVERSE, 8: T.ROTATE_90}[orientation]


def test_invalid_and_malformed_exif_cost_nothing_but_the_rotation():
    assert decode(exif_jpeg(7, 77)).size == (60, 30)
    assert decode(malformed_exif_jpeg(3)).size == (64, 48)


def test_animation_with_thousands_of_frames_decodes_its_first_frame_without_walking_the_rest(monkeypatch):
    data = animated("GIF", 3000)
    from PIL import GifImagePlugin

    seeks = []
    real_seek = GifImagePlugin.GifImageFile._seek
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek",
                        lambda self, frame, *a, **k: (seeks.append(frame), real_seek(self, frame, *a, **k))[1])
    image = decode(data)
    first = np.asarray(picture(0, (32, 32)).convert("P", palette=Image.Palette.ADAPTIVE).convert("RGB")).astype(int)
    assert np.abs(np.asarray(image).astype(int) - first).mean() < 12
    assert max(seeks, default=0) <= 1, f"decoding walked to frame {max(seeks)}"
    Image.open(io.BytesIO(data)).n_frames  # noqa: B018  (the walk we avoid does seek through every frame)
    assert max(seeks) >= 2999


def test_multipage_tiff_gives_its_first_page():
    pages = [Image.new("RGB", (16, 16), c) for c in [(200, 0, 0), (0, 200, 0), (0, 0, 200)]]
    data = encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert tuple(np.asarray(decode(data))[8, 8]) == (200, 0, 0)


@pytest.mark.parametrize("bomb", ["palette", "header"])
def test_decompression_bombs_are_refused_by_their_header_without_decoding(bomb, bomb_bytes, monkeypatch):
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match="too many pixels"):
        decode(bomb_bytes[bomb])


def test_pixel_limit_is_the_callers_not_pillows_global():
    image = encoded(Image.new("L", (100, 100)), "PNG")
    with pytest.raises(ImageError, match="too many pixels"):
        decode(image, options=DecodeOptions(max_pixels=9_999))
    assert decode(image, options=DecodeOptions(max_pixels=10_000)).size == (100, 100)


@pytest.mark.parametrize("size", [(1, 1), (20_000, 1), (1, 20_000), (5000, 3)])
def test_tiny_and_extreme_aspect_ratios_give_model_ready_pixels(size):
    pixels = load_pixels(io.BytesIO(encoded(picture(1, size), "PNG")), PixelSpec(224))
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8


def test_heic_is_decoded_through_pillow_heif():
    pixels = np.asarray(decode(encoded(Image.new("RGB", (64, 48), (30, 160, 40)), "HEIF"))).astype(int)
    assert pixels.shape == (48, 64, 3)
    assert np.abs(pixels[24, 32] - [30, 160, 40]).max() < 25


@pytest.mark.parametrize("data", [
    b"", b"GIF89a", b"\x89PNG\r\n\x1a\n", b"%!PS-Adobe-3.0 EPSF-3.0\n", b"8BPS\x00\x01" + bytes(30),
    b"<svg xmlns='http://www.w3.org/2000/svg'/>",
])
def test_non_images_and_other_formats_raise_image_error(data):
    with pytest.raises(ImageError):
        decode(data)
