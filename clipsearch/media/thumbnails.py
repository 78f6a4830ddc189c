"""Thumbnails the app makes itself: small, metadata-free copies of indexed photos in a folder it owns.

The web app serves only these files (their folder is the one entry in Gradio's ``allowed_paths``), never the
originals, so a results page never re-reads a 12-megapixel JPEG and never leaks EXIF (GPS, camera serials).

    thumbs = Thumbnails(library.directory / "thumbs", library.decode_options)
    path = thumbs.get(library.file(42), library.roots())      # made on first view, then cached

Layout: ``<folder>/<size>/<id>-<mtime_ns>.webp``; a changed file gets a new name and the stale one is
removed. Every read of an original goes through ``open_original``: the catalog row must point at a regular
file inside an indexed root (checked again now, not only at index time), reached without following a symlink.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from clipsearch.errors import ImageError
from clipsearch.imaging.decode import IMAGE_EXTENSIONS, DecodeOptions, decode_image
from clipsearch.paths import is_within
from clipsearch.store.catalog import FileRow

THUMBS_DIR = "thumbs"


@dataclass(frozen=True)
class ThumbnailOptions:
    """Sizes (longest side, px) and encoding of app-made images."""

    size: int = 256  # gallery tiles
    preview_size: int = 1024  # the larger view after a click
    quality: int = 80
    format: str = "WEBP"
    suffix: str = ".webp"


def open_original(row: FileRow, roots: list[str]) -> BinaryIO:
    """Open an indexed file for reading, refusing anything that is not a plain image file inside ``roots``.

    The path is resolved now and must still lie inside an indexed root (a symlink planted after indexing, or
    a catalog row edited to point elsewhere, is refused); the file is then opened with ``O_NOFOLLOW`` so it
    cannot be swapped for a symlink between the check and the read.
    """
    if row.status != "ok":
        raise ImageError(f"file {row.id} is not indexed ({row.reason or row.status})")
    path = row.path
    if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS:
        raise ImageError(f"file {row.id} is not an image file")
    real = os.path.realpath(path)
    if real != os.path.abspath(path) or not any(is_within(real, os.path.realpath(r)) for r in roots):
        raise ImageError(f"file {row.id} lies outside the indexed folders")
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ImageError(f"file {row.id} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError(f"file {row.id} is not a regular file")
    return os.fdopen(fd, "rb")


class Thumbnails:
    """Makes and caches thumbnails of catalog rows under one folder. Safe to share between threads."""

    def __init__(
        self,
        folder: str | os.PathLike,
        decode_options: DecodeOptions = DecodeOptions(),
        options: ThumbnailOptions = ThumbnailOptions(),
    ):
        self.folder = Path(folder).resolve()
        self.decode_options = decode_options
        self.options = options

    def path_for(self, row: FileRow, size: int | None = None) -> Path:
        size = size or self.options.size
        return self.folder / str(size) / f"{row.id}-{row.mtime_ns}{self.options.suffix}"

    def get(self, row: FileRow, roots: list[str], size: int | None = None) -> Path:
        """The thumbnail of ``row`` at ``size`` px: cached while the file is unchanged, else made now."""
        path = self.path_for(row, size)
        if path.is_file():
            return path
        return self.make(row, roots, size)

    def make(self, row: FileRow, roots: list[str], size: int | None = None) -> Path:
        """Decode the original under the indexing guards, shrink it, and write a metadata-free copy."""
        size = size or self.options.size
        path = self.path_for(row, size)
        with open_original(row, roots) as handle:
            if os.fstat(handle.fileno()).st_size > self.decode_options.max_bytes:
                raise ImageError(f"file {row.id} is larger than {self.decode_options.max_bytes:,} bytes")
            image, _ = decode_image(handle, self.decode_options, min_side=size)
        image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        # A fresh image carries no EXIF, XMP, ICC or text chunks: none of the original's metadata survives.
        clean = Image.frombytes("RGB", image.size, image.tobytes())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=self.options.suffix)
        try:
            with os.fdopen(fd, "wb") as out:
                clean.save(out, self.options.format, quality=self.options.quality, method=4)
            os.replace(staging, path)  # concurrent makers of one thumbnail never expose a half-written file
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(staging)
            raise
        self._remove_stale(row, path)
        return path

    def _remove_stale(self, row: FileRow, keep: Path) -> None:
        for old in keep.parent.glob(f"{row.id}-*{self.options.suffix}"):
            if old != keep:
                with contextlib.suppress(OSError):
                    old.unlink()

