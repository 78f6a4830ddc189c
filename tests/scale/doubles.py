"""Test doubles the Ray tests pickle to their actors (so they live in an importable module)."""

from __future__ import annotations

import os
from pathlib import Path

from clipsearch import ModelSpec
from clipsearch.testing import HashEmbedder

SPEC = ModelSpec("hash-test", "none")


class PidReportingEmbedder(HashEmbedder):
    """The HashEmbedder, leaving a file named after the process that encodes each batch in ``folder`` (so a test
    can find and kill a Ray worker), ``slow`` seconds a batch."""

    def __init__(self, folder: str, slow: float = 0.0):
        super().__init__(SPEC, slow=slow)
        self.folder = folder

    def encode_pixels(self, pixels):
        Path(self.folder, str(os.getpid())).touch()
        return super().encode_pixels(pixels)
