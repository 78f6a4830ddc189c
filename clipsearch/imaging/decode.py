"""Safe image decoding: from a file to model-ready pixels.

Imports only Pillow and NumPy, so decode worker processes stay small and start fast.
Every failure becomes an ``ImageError`` with a short reason; nothing here mutates Pillow's global settings.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clipsearch.errors import ImageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
# Formats Pillow may open for us; anything else (e.g. an EPS or PSD renamed .jpg) is refused.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"})
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white, whatever the file's mode
# Pillow plugin ids tried by ``Image.open``: a file is never even offered to the EPS, PSD or other parsers.
OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")
# Longest side kept (in short sides) before resizing: the centre crop never sees more, and a 1 x 10^8 strip
# stays small.
MAX_ASPECT = 4
_open_formats_cache: tuple[str, ...] | None = None
OUT_OF_MEMORY = "not enough memory to decode this image"


@dataclass(frozen=True)
class DecodeOptions:
    """Limits that guard every decode, at index time and for uploads alike."""

    max_pixels: int = 120_000_000  # a 144-megapixel palette PNG "bomb" is refused; 100 MP cameras pass
    max_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class PixelSpec:
    """How a model wants its pixels: open_clip's default 'shortest' resize, centre crop, square output.

    Doing the resize and crop here (with the same Pillow calls torchvision makes) lets worker processes hand
    back small uint8 arrays instead of full-size images.
    """

    size: int
    interpolation: str = "bicubic"  # or "bilinear"

    def resample(self) -> int:
        return Image.Resampling.BILINEAR if self.interpolation == "bilinear" else Image.Resampling.BICUBIC


def open_image(source, options: DecodeOptions = DecodeOptions(), min_side: int | None = None) -> Image.Image:
    """Decode ``source`` (a path or binary file) into an upright RGB image, refusing anything unsafe or broken.

    ``min_side`` lets JPEGs decode at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling) while keeping both sides at
    least that large: CLIP needs only ~224 px, and a 12 MP JPEG decodes about 4x faster this way.
    """
    return decode_image(source, options, min_side)[0]


def decode_image(
    source, options: DecodeOptions = DecodeOptions(), min_side: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """Like ``open_image``, also returning the picture's full upright size (before any reduced decoding)."""
    formats = _open_formats()
    try:
        with warnings.catch_warnings():
            # Our own pixel limit (options.max_pixels) decides; Pillow's 89-megapixel warning and its "corrupt
            # EXIF" chatter would only be noise on the terminal of an index run.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            image = Image.open(source, formats=formats)
            result = _to_rgb(image, options, min_side)
            if result[0] is not image:
                image.close()  # release the file handle; the converted copy holds the pixels
            return result
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"too many pixels (decompression-bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"not a readable image: {what_it_is(_head(source), formats)}") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except FileNotFoundError:
        raise ImageError("file vanished") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow reports truncated/corrupt data through a zoo of exception types; these carry its own words
        # ("image file is truncated", "broken PNG file").
        reason = str(exc).strip()
        raise ImageError(f"corrupt or truncated image: {reason}" if reason else "corrupt or truncated image") from None
    except MemoryError:
        raise ImageError(OUT_OF_MEMORY) from None
    except (IndexError, TypeError, KeyError):
        # ... and these only Pillow's internals (a key, an index): no words a person could use
        raise ImageError("corrupt or truncated image (the decoder could not make sense of it)") from None


# Formats as people call them, for messages (Pillow's ids are internal keys).
FORMAT_NAMES = {"JPEG": "JPEG", "MPO": "JPEG (multi-picture)", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF",
                "BMP": "BMP", "TIFF": "TIFF", "HEIF": "HEIC/HEIF", "AVIF": "AVIF"}
_NOT_PICTURES = (  # first bytes (lower case) of files that often hide behind an image name
    (b"<svg", "an SVG drawing"), (b"<?xml", "an XML document (an SVG drawing?)"), (b"<!doctype html", "an HTML page"),
    (b"<html", "an HTML page"), (b"%pdf", "a PDF document"), (b"%!ps", "a PostScript file"),
    (b"8bps", "a Photoshop document"), (b"pk\x03\x04", "a ZIP archive"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def what_it_is(head: bytes, formats: tuple[str, ...] = OPEN_FORMATS) -> str:
    """Why a file that Pillow could not identify is not a picture we can read, from its first bytes."""
    brand = head[8:12] if head[4:8] == b"ftyp" else b""
    if brand in _HEIF_BRANDS:
        if "HEIF" in formats:
            return "a damaged HEIC/HEIF photo"
        return "a HEIC/HEIF photo, which needs pillow-heif: pip install 'clipsearch[heic]'"
    if brand in (b"avif", b"avis"):
        return "a damaged AVIF image" if "AVIF" in formats else "an AVIF image, which this Pillow cannot decode"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for prefix, kind in _NOT_PICTURES:
        if text.startswith(prefix):
            return f"it is {kind}"
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "it is a text file"
    return "unknown or damaged format"


def _head(source, size: int = 64) -> bytes:
    try:
        if hasattr(source, "seek"):
            source.seek(0)
            return source.read(size)
        with open(source, "rb") as handle:
            return handle.read(size)
    except (OSError, ValueError):
        return b""


def _to_rgb(
    image: Image.Image, options: DecodeOptions, min_side: int | None
) -> tuple[Image.Image, tuple[int, int]]:
    if image.format not in ALLOWED_FORMATS:
        raise ImageError(f"unsupported image format: {image.format_description or 'unknown'}")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError("image has no pixels")
    if width * height > options.max_pixels:
        raise ImageError(
            f"too many pixels ({width}x{height} > {options.max_pixels:,}); raise the limit to index it"
        )
    # An opened animation or multi-page TIFF sits on its first frame. Never ask for ``n_frames``: for GIF and
    # TIFF that walks every frame, and a 10,000-frame GIF would cost seconds per file.
    if min_side and image.format in ("JPEG", "MPO") and image.mode in ("RGB", "L", "CMYK", "YCbCr"):
        image.draft("RGB", (min_side, min_side))
    image.load()
    upright = _apply_orientation(image)
    if upright.size != image.size and upright.size[::-1] == image.size:
        width, height = height, width  # rotated by EXIF: report the size as the viewer sees it
    return _flatten(upright), (width, height)


def _apply_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, ZeroDivisionError, struct.error):
        return image  # a malformed EXIF block must not cost us the picture


def _open_formats() -> tuple[str, ...]:
    """The ids of ``OPEN_FORMATS`` this Pillow can open (HEIC/HEIF through pillow-heif, the ``heic`` extra,
    registered on first use). Asking Pillow for one it lacks would fail every unknown file with ``KeyError``."""
    global _open_formats_cache
    if _open_formats_cache is None:
        try:
            import pillow_heif
        except ImportError:
            pass
        else:
            pillow_heif.register_heif_opener()
        Image.init()
        _open_formats_cache = tuple(f for f in OPEN_FORMATS if f in Image.OPEN)
    return _open_formats_cache


def _flatten(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I;16"):
        # 16-bit greyscale: keep the brightness the file means (65535 is white) instead of clipping to white.
        array = np.asarray(image).astype(np.float64) / 257.0
        return Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        if low >= 0 and high <= 255:
            scaled = array
        elif low >= 0 and high <= 65535 and mode == "I":
            scaled = array / 257.0  # 16-bit data widened to 32 bits by the decoder
        else:
            scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if mode in ("P", "L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")  # a tRNS colour key or transparent palette entry
        mode = "RGBA"
    elif mode == "P":
        image = image.convert("RGB")
        mode = "RGB"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def resize_and_crop(image: Image.Image, spec: PixelSpec) -> np.ndarray:
    """Resize the shorter side to ``spec.size`` and centre-crop a square, as torchvision does; uint8 HxWx3."""
    width, height = image.size
    size = spec.size
    if max(width, height) > MAX_ASPECT * min(width, height):
        # Only the centre square survives the crop: trim the long side first, so a 1 x 100,000,000 strip is
        # never resized to 224 x 22 billion pixels.
        keep = MAX_ASPECT * min(width, height)
        if width > height:
            image = image.crop(((width - keep) // 2, 0, (width - keep) // 2 + keep, height))
        else:
            image = image.crop((0, (height - keep) // 2, width, (height - keep) // 2 + keep))
        width, height = image.size
    # torchvision's Resize(int): the short side becomes `size`, the long side int(size * long / short).
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), spec.resample())
    # torchvision's CenterCrop pads when the image is smaller than the crop; with the resize above it never is,
    # except a 1-pixel rounding on extreme aspect ratios, which padding handles.
    if new_w < size or new_h < size:
        canvas = Image.new("RGB", (max(new_w, size), max(new_h, size)), (0, 0, 0))
        canvas.paste(image, ((canvas.width - new_w) // 2, (canvas.height - new_h) // 2))
        image, new_w, new_h = canvas, canvas.width, canvas.height
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8)


def load_pixels(path: str, spec: PixelSpec, options: DecodeOptions = DecodeOptions()) -> np.ndarray:
    """Decode ``path`` and return model-ready uint8 pixels (size x size x 3)."""
    return resize_and_crop(open_image(path, options, min_side=spec.size), spec)
