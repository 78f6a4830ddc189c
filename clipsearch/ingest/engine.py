"""The embedding step of an index run: files in, batches of vectors (and skip reasons) out.

An engine is anything with ``batches(files, get_model, options)``; planning and committing do not care how
it runs. ``LocalEngine`` decodes in worker processes on this machine and runs the model in this process; a
distributed engine (Ray) implements the same method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from clipsearch.ingest.workers import Prepared, WorkerOptions, prepare_all
from clipsearch.model.protocol import EmbeddingModel
from clipsearch.store.catalog import Embedded, FileStat


@dataclass
class Batch:
    """Files the engine finished: embedded ones with their vectors, and skipped ones with a reason."""

    embedded: list[Embedded] = field(default_factory=list)
    skipped: list[tuple[FileStat, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.embedded) + len(self.skipped)


class EmbeddingEngine(Protocol):
    """Turns files into batches of vectors. ``get_model`` is called only if some file needs the model."""

    def batches(
        self, files: list[FileStat], get_model: Callable[[], EmbeddingModel], options: WorkerOptions
    ) -> Iterator[Batch]: ...


class LocalEngine:
    """Decode in worker processes on this machine, encode in this process, ``options.batch_size`` at a time."""

    def batches(
        self, files: list[FileStat], get_model: Callable[[], EmbeddingModel], options: WorkerOptions
    ) -> Iterator[Batch]:
        if not files:
            return
        model = get_model()
        pending: list[Prepared] = []
        prepared_files = prepare_all(files, model.pixel_spec, options)
        try:
            for prepared in prepared_files:
                pending.append(prepared)
                if len(pending) >= options.batch_size:
                    yield encode_batch(model, pending)
                    pending = []
            if pending:
                yield encode_batch(model, pending)
        finally:
            prepared_files.close()  # stop the workers now, not whenever the generator is collected


def encode_batch(model: EmbeddingModel, prepared: list[Prepared]) -> Batch:
    """Encode the decoded files of ``prepared``; the others become skips with their reason."""
    good = [p for p in prepared if p.error is None]
    batch = Batch(skipped=[(p.stat, p.error) for p in prepared if p.error is not None])
    if good:
        if model.pixel_spec is not None:
            vectors = model.encode_pixels(np.stack([p.pixels for p in good]))
        else:
            from PIL import Image

            vectors = model.encode_images([Image.fromarray(p.pixels) for p in good])
        batch.embedded = [Embedded(p.stat, p.digest, p.size[0], p.size[1], v, p.taken_ns)
                          for p, v in zip(good, vectors)]
    return batch
