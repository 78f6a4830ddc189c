"""Path containment, shared by every step that must keep to the indexed folders."""

from __future__ import annotations

import os


def is_within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies under it (both absolute and normalised)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
