"""The web app's Library panel and ``/status`` mark an indexed folder that is missing on disk (an unplugged drive),
as ``clipsearch status`` does, and keep its photos; the folders that are there are not marked."""

from __future__ import annotations

import pytest
from PIL import Image

from clipsearch import Library, ModelSpec
from clipsearch.testing import HashEmbedder
from ui.service import MISSING_MARK, SearchService


@pytest.fixture
def two_folders(tmp_path):
    folders = {}
    for name in ("home", "drive"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for n in range(3):
            Image.new("RGB", (32, 24), (40 * n, 90, 200)).save(folders[name] / f"{name}-{n}.png")
    spec = ModelSpec("hash-test", "none")
    library = Library.open(tmp_path / "index", model=spec, create=True)
    library.use_embedder(HashEmbedder(spec))
    library.index(list(folders.values()))
    yield library, folders
    library.close()


def root_lines(markdown: str) -> dict[str, str]:
    return {line.split("`")[1]: line for line in markdown.splitlines() if line.startswith("- `")}


def test_a_missing_folder_is_marked_in_the_library_panel_and_its_photos_kept(two_folders, tmp_path):
    library, folders = two_folders
    service = SearchService(library)
    assert all(MISSING_MARK not in line for line in root_lines(service.status_markdown()).values())
    folders["drive"].rename(tmp_path / "unplugged")
    lines = root_lines(service.status_markdown())
    assert MISSING_MARK in lines[str(folders["drive"].resolve())]
    assert MISSING_MARK not in lines[str(folders["home"].resolve())]
    assert "**6** photos indexed" in service.status_markdown()  # nothing forgotten while it is away
    assert service.status_dict()["missing_roots"] == [str(folders["drive"].resolve())]


def test_an_emptied_folder_counts_as_missing_as_the_indexer_sees_it(two_folders):
    library, folders = two_folders
    for photo in folders["drive"].iterdir():
        photo.unlink()
    assert SearchService(library).status_dict()["missing_roots"] == [str(folders["drive"].resolve())]


def test_the_status_endpoint_lists_missing_folders(two_folders, tmp_path):
    from gradio_client import Client

    from tests.ui.conftest import launch_app

    library, folders = two_folders
    folders["drive"].rename(tmp_path / "unplugged")
    app = launch_app(library, tmp_path / "thumbs")
    try:
        status = Client(app.local_url, verbose=False).predict(api_name="/status")
        assert status["missing_roots"] == [str(folders["drive"].resolve())]
        assert sorted(status["roots"]) == sorted(str(f.resolve()) for f in folders.values())
    finally:
        app.close()
