"""One small hierarchy of errors that a user can act on.

The library raises these; only the outermost shells (CLI, web app) turn them into messages and exit codes.
"""

from __future__ import annotations


class ClipsearchError(Exception):
    """Base class of every error clipsearch raises on purpose."""


class ModelError(ClipsearchError):
    """A model could not be created or its weights could not be loaded."""


class ModelMismatchError(ClipsearchError):
    """An index holds vectors of one model and was asked to use another."""


class IndexStoreError(ClipsearchError):
    """The on-disk index is missing, unreadable, locked, or of an unknown version."""


class IndexLockedError(IndexStoreError):
    """Another process is writing to the same index."""


class QueryError(ClipsearchError):
    """A search query could not be parsed or one of its terms could not be used."""


class ImageError(ClipsearchError):
    """An image could not be decoded safely (corrupt, too large, not an image)."""



__all__ = [
    "ClipsearchError",
    "ModelError",
    "ModelMismatchError",
    "IndexStoreError",
    "IndexLockedError",
    "QueryError",
    "ImageError",
]
