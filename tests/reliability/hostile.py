"""A hostile photo library: every kind of file that has taken an indexer down somewhere, plus the good files
that must survive next to them. Also the decode-worker hooks the tests hand to ``IndexOptions.prepare``
(top-level functions, so spawn workers can import them).
"""

from __future__ import annotations

import io
import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image

from clipsearch.ingest.workers import prepare_file

NON_UTF8_NAME = b"bad-\xff\xfe-name.jpg"
pillow_heif.register_heif_opener()  # to write the HEIC sample; clipsearch.imaging.decode registers it for reading


@dataclass
class Expected:
    """What an index run over the hostile library must produce (paths relative to the root, as bytes)."""

    root: Path
    good: set[bytes] = field(default_factory=set)
    skipped: dict[bytes, str] = field(default_factory=dict)  # relative path -> substring of the reason

    def path(self, rel: bytes) -> str:
        return os.fsdecode(os.path.join(os.fsencode(self.root), rel))


def picture(seed: int, size=(64, 48), mode="RGB") -> Image.Image:
    """A small picture with a seed-dependent colour pattern (distinct pixels, so distinct vectors)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, w)[None, :, None] * rng.integers(-120, 120, 3)
    pixels = np.clip(base + ramp + np.zeros((h, 1, 1)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def palette_bomb_png(side: int = 12_000) -> bytes:
    """A palette PNG of side x side (144 MP for 12,000) that is about 140 KB on disk."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 3, 0, 0, 0))
    palette = png_chunk(b"PLTE", bytes([0, 0, 0, 255, 255, 255]))
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + header + palette + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def header_bomb_png(side: int = 65_000) -> bytes:
    """A PNG whose header claims side x side pixels, with almost no data behind it."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b"")


def exif_jpeg(seed: int, orientation) -> bytes:
    """A JPEG carrying an EXIF orientation tag (1..8, or an invalid value)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(picture(seed, (60, 30)), "JPEG", exif=exif.tobytes())


def malformed_exif_jpeg(seed: int) -> bytes:
    """A JPEG whose APP1 segment says 'Exif' but holds garbage."""
    data = encoded(picture(seed), "JPEG")
    app1 = b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0garbage-not-an-ifd"
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    return data[:2] + segment + data[2:]


def animated(fmt: str, frames: int) -> bytes:
    images = [picture(i, (32, 32)) for i in range(min(frames, 8))]
    sequence = [images[i % len(images)] for i in range(frames)]
    return encoded(sequence[0], fmt, save_all=True, append_images=sequence[1:], duration=20, loop=0)


def make_hostile_library(root: Path, bombs: dict[str, bytes] | None = None) -> Expected:
    """Fill ``root`` with good and hostile files; return what an index run must make of them."""
    root.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(root))
    expected = Expected(root)
    seed = iter(range(1000, 2000))

    def good(rel: str | bytes, data: bytes) -> None:
        write(rel, data)
        expected.good.add(os.fsencode(rel))

    def bad(rel: str | bytes, data: bytes | None, reason: str) -> None:
        if data is not None:
            write(rel, data)
        expected.skipped[os.fsencode(rel)] = reason

    def write(rel: str | bytes, data: bytes) -> None:
        path = os.path.join(os.fsencode(root), os.fsencode(rel))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)

    # Good files of every format, mode and shape.
    good("plain.jpg", encoded(picture(next(seed)), "JPEG"))
    good("plain.png", encoded(picture(next(seed)), "PNG"))
    good("UPPER.JPG", encoded(picture(next(seed)), "JPEG"))
    good("Mixed.JpEg", encoded(picture(next(seed)), "JPEG"))
    good("sub/dir/deep.webp", encoded(picture(next(seed)), "WEBP"))
    good("bitmap.bmp", encoded(picture(next(seed)), "BMP"))
    good("cmyk.jpg", encoded(picture(next(seed), mode="CMYK"), "JPEG"))
    gradient = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    good("gray16.png", encoded(Image.fromarray(gradient), "PNG"))
    palette = picture(next(seed)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    good("palette-transparent.png", encoded(palette, "PNG", transparency=0))
    good("gray-alpha.png", encoded(picture(next(seed), mode="LA"), "PNG"))
    good("rgba.png", encoded(picture(next(seed), mode="RGBA"), "PNG"))
    good("rgba.webp", encoded(picture(next(seed), mode="RGBA"), "WEBP", lossless=True))
    good("animated.gif", animated("GIF", 400))
    good("animated.webp", animated("WEBP", 60))
    pages = [picture(next(seed)) for _ in range(3)]
    good("multipage.tif", encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    for orientation in range(1, 9):
        good(f"exif/orientation-{orientation}.jpg", exif_jpeg(next(seed), orientation))
    good("exif/orientation-invalid.jpg", exif_jpeg(next(seed), 77))
    good("exif/malformed.jpg", malformed_exif_jpeg(next(seed)))
    good("shapes/one-pixel.png", encoded(picture(next(seed), (1, 1)), "PNG"))
    good("shapes/wide-3000x1.png", encoded(picture(next(seed), (3000, 1)), "PNG"))
    good("shapes/tall-1x3000.png", encoded(picture(next(seed), (1, 3000)), "PNG"))
    good("names/with space.jpg", encoded(picture(next(seed)), "JPEG"))
    good("names/emoji \U0001f4f7.jpg", encoded(picture(next(seed)), "JPEG"))
    good("names/new\nline.jpg", encoded(picture(next(seed)), "JPEG"))
    good("names/-leading-dash.jpg", encoded(picture(next(seed)), "JPEG"))
    good(b"names/" + NON_UTF8_NAME, encoded(picture(next(seed)), "JPEG"))
    good("photo.heic", encoded(picture(next(seed)), "HEIF"))

    # Broken, lying and dangerous files: each must be skipped with its reason.
    valid_jpeg = encoded(picture(next(seed), (256, 256)), "JPEG")
    valid_png = encoded(picture(next(seed), (256, 256)), "PNG")
    bad("broken/corrupt.jpg", valid_jpeg[:20] + os.urandom(3000), "image")
    bad("broken/truncated.jpg", valid_jpeg[: len(valid_jpeg) // 2], "truncated")
    bad("broken/truncated.png", valid_png[: len(valid_png) // 2], "truncated")
    bad("broken/zero-bytes.jpg", b"", "empty file")
    bad("broken/text.jpg", b"just some text, not a picture\n", "not a readable image")
    page = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
    bad("broken/page.jpg", page, "not a readable image")
    bad("broken/drawing.jpg", b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', "not a readable image")
    bad("broken/postscript.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a readable image")
    bombs = bombs or {}
    bad("bombs/palette-144mp.png", bombs.get("palette") or palette_bomb_png(), "too many pixels")
    bad("bombs/header-65000.png", bombs.get("header") or header_bomb_png(), "too many pixels")
    special = os.path.join(root, "special")
    os.makedirs(special, exist_ok=True)
    os.mkfifo(os.path.join(special, "fifo.jpg"))
    expected.skipped[b"special/fifo.jpg"] = "not a regular file"
    server = socket.socket(socket.AF_UNIX)
    server.bind(os.path.join(special, "socket.png"))
    server.close()
    expected.skipped[b"special/socket.png"] = "not a regular file"
    if os.geteuid() == 0:  # only root may make device nodes; as anyone else the rest of the library still serves
        os.mknod(os.path.join(special, "device.jpg"), 0o600 | 0o020000, os.makedev(1, 3))  # a char device
        expected.skipped[b"special/device.jpg"] = "not a regular file"

    # Symlinks: inside (no duplicate), outside (never followed), broken, and a folder loop.
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.jpg").write_bytes(encoded(picture(next(seed)), "JPEG"))
    os.symlink(root / "plain.jpg", root / "link-to-plain.jpg")
    os.symlink(root / "sub", root / "link-to-sub")
    os.symlink(outside / "secret.jpg", root / "link-outside.jpg")
    expected.skipped[b"link-outside.jpg"] = "outside the indexed folder"
    os.symlink(outside, root / "link-outside-dir")
    expected.skipped[b"link-outside-dir"] = "outside the indexed folder"
    os.symlink(root / "does-not-exist.jpg", root / "broken-link.jpg")
    expected.skipped[b"broken-link.jpg"] = "broken symlink"
    os.symlink(root / "sub", root / "sub" / "dir" / "loop")

    # Hidden files and system junk: never looked at, never listed.
    write(".hidden/secret.jpg", encoded(picture(next(seed)), "JPEG"))
    write("._plain.jpg", b"\x00\x05\x16\x07AppleDouble")
    write(".DS_Store", b"\x00\x00\x00\x01Bud1")
    write("Thumbs.db", b"\xd0\xcf\x11\xe0")
    write("@eaDir/plain.jpg/SYNOPHOTO_THUMB_XL.jpg", encoded(picture(next(seed)), "JPEG"))
    write("#recycle/old.jpg", encoded(picture(next(seed)), "JPEG"))
    write("notes.txt", b"not an image name")
    return expected


# -- decode-worker hooks (IndexOptions.prepare) -----------------------------------------------------------------
def crash_on_marked(stat, spec, options):
    """Kill the worker process outright (like a segfault in a native decoder) on files named *crash*."""
    if "crash" in os.path.basename(stat.path):
        os._exit(139)
    return prepare_file(stat, spec, options)


def hang_on_marked(stat, spec, options):
    """Hang forever (like a decoder stuck in a loop) on files named *hang*."""
    if "hang" in os.path.basename(stat.path):
        while True:
            time.sleep(1)
    return prepare_file(stat, spec, options)


def mutate_on_marked(stat, spec, options):
    """Delete files named *vanish* and rewrite files named *change* between the scan and the read."""
    name = os.path.basename(stat.path)
    if "vanish" in name:
        os.unlink(stat.path)
    elif "change" in name:
        with open(stat.path, "wb") as handle:
            handle.write(encoded(picture(4242, (40, 40)), "PNG"))
    return prepare_file(stat, spec, options)
