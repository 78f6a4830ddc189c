"""Reading a text file the user named (a labels or captions file): its text, or one clear error line."""

from __future__ import annotations

import os

from clipsearch.errors import ClipsearchError


def read_user_text(path, what: str, *, encoding: str = "utf-8", max_bytes: int | None = None) -> str:
    """The whole of the file, or a ``ClipsearchError`` that names it as ``what`` and says what is wrong."""
    try:
        if max_bytes is not None and os.path.getsize(path) > max_bytes:
            raise ClipsearchError(f"{what} {path} is larger than {max_bytes // 2**20} MB")
        with open(path, encoding=encoding) as handle:
            return handle.read()
    except FileNotFoundError:
        raise ClipsearchError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ClipsearchError(f"{what} is a folder: {path}") from None
    except UnicodeDecodeError:
        raise ClipsearchError(f"{what} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ClipsearchError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
