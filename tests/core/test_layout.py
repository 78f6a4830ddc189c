"""The layout shows the data path and keeps to it: lower steps never import higher ones, the shells use the
public API only, and every model implements one protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import clipsearch
from clipsearch import EmbeddingModel
from clipsearch.testing import HashEmbedder

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "clipsearch"
# Rank of each part of the package: a module may import parts of a lower rank, or its own part.
RANKS = {
    "errors": 0, "paths": 0,
    "imaging": 1, "store": 1, "world": 1,
    "model": 2,
    "ingest": 3, "search": 3, "media": 3, "explore": 3, "testing": 3,
    "library": 4,
    "demo": 5, "cli": 5, "__init__": 5, "__main__": 5,
}
SHELLS = 5


def imports_of(path: Path) -> set[str]:
    """Every ``clipsearch...`` / ``ui...`` module named by an import statement in ``path`` (lazy ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in ("clipsearch", "ui")}


def part_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "clipsearch":
        return "ui" if parts[0] == "ui" else None
    return parts[1] if len(parts) > 1 and parts[1] in RANKS else "__init__" if len(parts) == 1 else None


def test_every_part_of_the_package_has_a_place_in_the_data_path():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert parts <= set(RANKS), f"give these a rank in RANKS: {sorted(parts - set(RANKS))}"


def test_no_module_imports_a_step_above_it_or_a_shell():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        own = relative.parts[0].removesuffix(".py")
        for name in imports_of(path):
            other = part_of(name)
            if other is None or other == own:
                continue
            shell = RANKS[own] == SHELLS  # the shells may call each other (the CLI starts the web app)
            if (other == "ui" and not shell) or (other != "ui" and (RANKS[other] > RANKS[own] or (
                    RANKS[other] == RANKS[own] and not shell))):
                problems.append(f"{relative} imports {name}")
    assert problems == []


def test_the_web_app_imports_only_the_public_api():
    public = set(clipsearch.__all__)
    problems = []
    for path in (REPO / "ui").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("clipsearch"):
                if node.module != "clipsearch" or any(a.name not in public for a in node.names):
                    problems.append(f"{path.name}: from {node.module} import {[a.name for a in node.names]}")
            elif isinstance(node, ast.Import) and any(a.name.startswith("clipsearch.") for a in node.names):
                problems.append(f"{path.name}: import {[a.name for a in node.names]}")
    assert problems == []


def test_the_cli_loads_the_web_app_only_inside_the_serve_commands():
    for path in (PACKAGE / "cli").glob("*.py"):
        top_level = [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name for n in top_level for a in n.names} | {n.module for n in top_level
                                                                if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(str(n).startswith(("ui", "gradio", "torch")) for n in names), path.name


def test_the_real_model_and_the_test_double_implement_the_one_protocol(tiny_embedder):
    assert isinstance(HashEmbedder(), EmbeddingModel)
    assert isinstance(tiny_embedder, EmbeddingModel)
    assert not isinstance(object(), EmbeddingModel)
