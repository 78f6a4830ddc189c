"""Walking photo folders: which image files exist now, and which could not be looked at (with a reason).

Each real file is reported at most once, by its real path; symlinks are followed only while they stay inside
the root, and directory loops are cut. Only regular files are ever reported, so a FIFO or device named
``.jpg`` can never block a reader.
"""

from __future__ import annotations

import os
import stat as stat_module
from dataclasses import dataclass, field

from clipsearch.imaging.decode import IMAGE_EXTENSIONS
from clipsearch.paths import is_within
from clipsearch.store.catalog import FileStat

# Folders that photo tools, NASes and operating systems fill with thumbnails and junk.
JUNK_DIRS = frozenset({
    "@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN", "System Volume Information", "lost+found", "__MACOSX",
})


@dataclass
class ScanResult:
    """Files found under one root, plus what was skipped and which folders could not be read."""

    root: str
    files: list[FileStat] = field(default_factory=list)
    skipped: list[tuple[FileStat, str]] = field(default_factory=list)
    unreadable_dirs: list[str] = field(default_factory=list)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_root(root: str) -> ScanResult:
    """Recursively list the image files under ``root`` (an absolute real path)."""
    result = ScanResult(root)
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            dir_stat = os.stat(directory)
        except OSError:
            result.unreadable_dirs.append(directory)
            continue
        if (dir_stat.st_dev, dir_stat.st_ino) in seen_dirs:
            continue  # a symlink loop or a second link to a folder already walked
        seen_dirs.add((dir_stat.st_dev, dir_stat.st_ino))
        try:
            with os.scandir(directory) as entries:
                entries = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            result.unreadable_dirs.append(directory)
            result.skipped.append((FileStat(directory, 0, 0, 0, 0), f"folder unreadable: {_reason(exc)}"))
            continue
        for entry in entries:
            _visit(entry, root, stack, seen_files, result)
    return result


def _visit(entry: os.DirEntry, root: str, stack: list[str], seen_files: set[str], result: ScanResult) -> None:
    name = entry.name
    if name.startswith("."):
        return  # hidden files and folders, AppleDouble "._x.jpg" and .DS_Store
    try:
        is_link = entry.is_symlink()
        is_dir = entry.is_dir(follow_symlinks=True)
    except OSError as exc:
        if is_image_name(name):
            result.skipped.append((FileStat(entry.path, 0, 0, 0, 0), _reason(exc)))
        return
    if is_dir:
        if name in JUNK_DIRS:
            return
        real = os.path.realpath(entry.path) if is_link else entry.path
        if is_within(real, root):
            stack.append(real)
        else:
            reason = "folder symlink leads outside the indexed folder"
            result.skipped.append((FileStat(entry.path, 0, 0, 0, 0), reason))
        return
    if not is_image_name(name):
        return
    real = os.path.realpath(entry.path) if is_link else entry.path
    if not is_within(real, root):
        # Never followed: indexing (and later serving) must not reach files outside the folder it was given.
        result.skipped.append((FileStat(entry.path, 0, 0, 0, 0), "symlink leads outside the indexed folder"))
        return
    if real in seen_files:
        return
    seen_files.add(real)
    try:
        st = os.stat(real)
    except OSError as exc:
        reason = "broken symlink" if is_link else _reason(exc)
        result.skipped.append((FileStat(entry.path, 0, 0, 0, 0), reason))
        return
    file_stat = FileStat.of(real, st)
    if not stat_module.S_ISREG(st.st_mode):
        result.skipped.append((file_stat, "not a regular file"))
    elif st.st_size == 0:
        result.skipped.append((file_stat, "empty file"))
    else:
        result.files.append(file_stat)


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()
