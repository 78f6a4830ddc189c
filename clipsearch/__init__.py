"""clipsearch: local-first image search with CLIP. Find photos by words, by example image, or both.

The public API::

    from clipsearch import Library, ModelSpec
    lib = Library.open("my-index", model=ModelSpec.parse("clipsearch-tiny"), create=True)
    report = lib.index(["~/Pictures"])
    hits = lib.search(["beach", "+", "sunset", "-", "people"], top_k=10)

Nothing heavy is imported here: torch and open_clip load when a model is first needed.
"""

from clipsearch.errors import (
    ClipsearchError,
    ImageError,
    IndexLockedError,
    IndexStoreError,
    ModelError,
    ModelMismatchError,
    QueryError,
)
from clipsearch.explore.evaluate import Evaluation
from clipsearch.explore.results import DuplicateGroup, MapPoint, Outlier, PhotoTags, Theme
from clipsearch.imaging.decode import IMAGE_EXTENSIONS
from clipsearch.ingest.run import IndexOptions, IndexReport
from clipsearch.library import BrowsePage, Library, LibraryStatus, SearchFilter, SearchHit, default_index_dir
from clipsearch.media.service import Media
from clipsearch.model.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_MODEL, ModelSpec
from clipsearch.model.protocol import EmbeddingModel
from clipsearch.search.query import Term, parse_query
from clipsearch.store.catalog import FileRow

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "IMAGE_EXTENSIONS",
    "BrowsePage",
    "ClipsearchError",
    "DuplicateGroup",
    "EmbeddingModel",
    "Evaluation",
    "FileRow",
    "Media",
    "ImageError",
    "IndexLockedError",
    "IndexOptions",
    "IndexReport",
    "IndexStoreError",
    "Library",
    "LibraryStatus",
    "MapPoint",
    "ModelError",
    "ModelMismatchError",
    "ModelSpec",
    "Outlier",
    "PhotoTags",
    "QueryError",
    "SearchFilter",
    "SearchHit",
    "TINY_MODEL",
    "Term",
    "Theme",
    "default_index_dir",
    "parse_query",
]
