"""What a server shows of a library's files: app-made thumbnails and previews, checked originals, folders.

Every original is read through ``thumbnails.open_original``, which checks the catalog row again now (an
indexed image inside an indexed root, reached without a symlink). Nothing here takes a path from a request:
files are named by catalog id.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from clipsearch.errors import ImageError, QueryError
from clipsearch.imaging.decode import ALLOWED_FORMATS, DecodeOptions
from clipsearch.media.thumbnails import Thumbnails, open_original
from clipsearch.store.catalog import FileRow


class Media:
    """Thumbnails, previews and checked copies of one library's files. Safe to share between threads."""

    def __init__(
        self,
        lookup: Callable[[int], FileRow | None],
        roots: Callable[[], list[str]],
        folder: str | os.PathLike,
        decode_options: DecodeOptions = DecodeOptions(),
    ):
        self._lookup = lookup
        self._roots = roots
        self.thumbnails = Thumbnails(folder, decode_options)
        self._copies: dict[tuple[int, int], str] = {}

    @property
    def folder(self) -> Path:
        """The one folder of app-made images: the only one a web server needs to serve from."""
        return self.thumbnails.folder

    def row(self, file_id) -> FileRow:
        """The catalog row of an indexed file, or ``QueryError``."""
        try:
            number = int(file_id)
        except (TypeError, ValueError):
            raise QueryError(f"not a file id: {file_id!r}") from None
        row = self._lookup(number)
        if row is None or row.status != "ok":
            raise QueryError(f"no indexed file with id {number}")
        return row

    def thumbnail(self, file: int | FileRow, size: int | None = None) -> Path:
        """An app-made, metadata-free image of an indexed file, ``size`` px on its longest side (cached)."""
        row = file if isinstance(file, FileRow) else self.row(file)
        return self.thumbnails.get(row, self._roots(), size)

    def preview(self, file_id) -> Path:
        """A larger app-made image for a detail view."""
        return self.thumbnail(file_id, self.thumbnails.options.preview_size)

    def original_copy(self, file_id, into: str | os.PathLike) -> Path:
        """A checked copy of the original file in a fresh sub-folder of ``into``, for a download.

        Its content must be an allowed image format (an HTML page renamed ``.jpg`` is refused); copies are
        reused while the file is unchanged.
        """
        row = self.row(file_id)
        key = (row.id, row.mtime_ns)
        cached = self._copies.get(key)
        if cached and os.path.isfile(cached):
            return Path(cached)
        with open_original(row, self._roots()) as handle:
            try:
                with Image.open(handle) as probe:
                    kind = probe.format
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
                kind = None
            if kind not in ALLOWED_FORMATS:
                raise ImageError(f"file {row.id} is not an image this app serves")
            handle.seek(0)
            folder = Path(into) / secrets.token_hex(8)
            folder.mkdir(parents=True)
            target = folder / safe_name(row.path)
            with open(target, "xb") as out:
                shutil.copyfileobj(handle, out, 1 << 20)
        self._copies[key] = str(target)
        return target

    def folders(self, depth: int = 2, limit: int = 200) -> list[str]:
        """The roots and their sub-folders (a few levels), for a folder filter."""
        choices: list[str] = []
        for root in self._roots():
            stack = [(root, 0)]
            while stack and len(choices) < limit:
                folder, level = stack.pop(0)
                choices.append(folder)
                if level >= depth:
                    continue
                try:
                    with os.scandir(folder) as entries:
                        subdirs = sorted(e.path for e in entries
                                         if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
                except OSError:
                    continue
                stack.extend((d, level + 1) for d in subdirs)
        return choices


def safe_name(path: str) -> str:
    """A download's file name: the original's, with anything but letters, digits, ``.-_`` and spaces replaced."""
    stem, ext = os.path.splitext(os.path.basename(path))
    stem = re.sub(r"[^\w.\- ]+", "_", stem).strip(". ") or "photo"
    return f"{stem[:100]}{ext.lower()}"
