"""The offline demo: a generated photo library, indexed with the bundled model, searched a few ways."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clipsearch.ingest.run import IndexReport, Progress
from clipsearch.library import REPO_INDEX_DIR, Library, default_index_dir
from clipsearch.model.models import TINY_MODEL, ModelSpec

DEMO_SEED = 2026
# What the bundled model knows well: colours (in front or behind), sizes, whole descriptions, and arithmetic.
DEMO_QUERIES = ("red", "a blue background", "yellow - small", "a large white shape + 0.5:a green background")


@dataclass
class DemoResult:
    library: Library
    photos: Path
    report: IndexReport
    seconds: float


def default_demo_dir() -> Path:
    if (REPO_INDEX_DIR / "README.md").is_file():
        return REPO_INDEX_DIR / "demo"
    return default_index_dir().parent / "demo"


def run_demo(
    demo_dir: Path | None = None,
    count: int = 300,
    progress: Progress | None = None,
    echo: Callable[[str], None] = lambda line: None,
) -> DemoResult:
    """Generate (once) ``count`` captioned scenes, index them with ``clipsearch-tiny``, and run sample searches."""
    from clipsearch.world.synthetic import generate_library

    started = time.monotonic()
    demo_dir = Path(demo_dir) if demo_dir else default_demo_dir()
    photos = demo_dir / "photos"
    captions_file = photos / "captions.jsonl"
    if not captions_file.is_file() or sum(1 for _ in captions_file.open()) != count:
        echo(f"generating {count} sample photos in {photos} ...")
        generate_library(photos, count, DEMO_SEED)
    captions = {json.loads(line)["file"]: json.loads(line)["caption"] for line in captions_file.open()}
    library = Library.open(demo_dir / "index", model=ModelSpec.parse(TINY_MODEL), create=True)
    echo(f"indexing with the bundled model {TINY_MODEL} into {library.directory} ...")
    report = library.index([photos], progress=progress)
    echo(f"indexed {report.indexed}, unchanged {report.unchanged}, skipped {len(report.skipped)}")
    first = sorted(captions)[0]
    examples = [*DEMO_QUERIES, captions[sorted(captions)[1]], str(photos / first)]
    for query in examples:
        echo(f"\nsearch: {query}" + (f"   (caption: {captions[Path(query).name]})" if query.endswith(
            (".jpg", ".png")) else ""))
        for hit in library.search(query, top_k=3):
            echo(f"  {hit.score:.3f}  {Path(hit.path).name:<14} {captions.get(Path(hit.path).name, '')}")
    seconds = time.monotonic() - started
    echo(f"\ndemo ready in {seconds:.1f}s")
    return DemoResult(library, photos, report, seconds)
