"""Filters return exactly what they name — a sub-folder, a day's end — in the Python API, the CLI and the web
app alike; and a re-index from the web app keeps searches answering with whole batches."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading

import pytest
from click.testing import CliRunner

from clipsearch import Library, ModelSpec, SearchFilter
from clipsearch.cli import main
from clipsearch.testing import HashEmbedder
from tests.ui.conftest import launch_app

# Two files a second either side of midnight between 31 May and 1 June 2024, local time.
BEFORE_MIDNIGHT = dt.datetime(2024, 5, 31, 23, 59, 59).timestamp()
AFTER_MIDNIGHT = dt.datetime(2024, 6, 1, 0, 0, 1).timestamp()


@pytest.fixture(scope="module")
def nested(tmp_path_factory, scenes, tiny_spec, tiny_embedder):
    """24 scenes in three folders (``a/``, ``a/deep/``, ``b/``), indexed with the tiny model, served."""
    folder, records = scenes
    root = tmp_path_factory.mktemp("nested") / "photos"
    layout = {}
    for i, record in enumerate(records[:24]):
        sub = ("a", "a/deep", "b")[i % 3]
        (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / record["file"], root / sub / record["file"])
        layout[record["file"]] = sub
    os.utime(root / "b" / records[2]["file"], (BEFORE_MIDNIGHT, BEFORE_MIDNIGHT))
    os.utime(root / "b" / records[5]["file"], (AFTER_MIDNIGHT, AFTER_MIDNIGHT))
    library = Library.open(tmp_path_factory.mktemp("nested-index"), model=tiny_spec, create=True)
    library.use_embedder(tiny_embedder)
    library.index([root])
    app = launch_app(library, tmp_path_factory.mktemp("nested-thumbs"), min_score=-1.0)
    from gradio_client import Client

    client = Client(app.local_url, verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))
    yield root, layout, library, client, records
    app.close()


def names_under(layout: dict, *subs: str) -> set[str]:
    return {name for name, sub in layout.items() if sub in subs}


def test_a_sub_folder_filter_returns_exactly_its_files_in_the_api_the_cli_and_the_web_app(nested):
    root, layout, library, client, _ = nested
    expected = names_under(layout, "a", "a/deep")  # a folder includes its sub-folders
    api = {os.path.basename(h.path) for h in library.search("a shape", top_k=100, where=SearchFilter(str(root / "a")))}
    assert api == expected
    deep = library.search("a shape", top_k=100, where=SearchFilter(str(root / "a" / "deep")))
    assert {os.path.basename(h.path) for h in deep} == names_under(layout, "a/deep")
    cli = CliRunner().invoke(main, ["search", "a shape", "--index", str(library.directory), "--top", "100",
                                    "--folder", str(root / "a"), "--json"])
    assert cli.exit_code == 0, cli.output
    assert {os.path.basename(h["path"]) for h in json.loads(cli.stdout)} == expected
    web = client.predict("a shape", 100, -1, str(root / "a"), api_name="/search")
    assert {h["name"] for h in web} == expected
    browsed = client.predict(str(root / "a"), "", "", "name", "", 0, 100, api_name="/browse")
    assert {h["name"] for h in browsed["results"]} == expected and browsed["total"] == len(expected)
    any_photo = library.search("a shape", top_k=1)[0].id
    like = client.predict(any_photo, 100, -1, str(root / "b"), api_name="/more_like")
    assert {h["name"] for h in like} == names_under(layout, "b")
    assert len(expected) == 16 and len(layout) == 24  # the filter really removed something


def test_a_date_range_ends_at_the_end_of_its_last_day(nested):
    _, _, _, client, records = nested
    before, after = records[2]["file"], records[5]["file"]

    def found(since: str, until: str) -> set[str]:
        return {h["name"] for h in client.predict("a shape", 100, -1, "", since, until, api_name="/search")}

    assert found("2024-05-31", "2024-05-31") == {before}  # 23:59:59 is still 31 May
    assert found("2024-06-01", "2024-06-01") == {after}
    assert found("2024-05-31", "2024-06-01") == {before, after}
    assert found("2024-05-30", "2024-05-30") == set()


def test_a_web_re_index_keeps_searches_answering_with_whole_batches(tmp_path, scenes):
    """The web app's re-index (SearchService.reindex) runs while its searches go on; each search sees the
    batches committed before it, never a half batch, and every result has an app-made thumbnail."""
    from ui.service import AppSettings, SearchService

    folder, records = scenes
    photos = tmp_path / "photos"
    photos.mkdir()
    for record in records[:8]:
        shutil.copy2(folder / record["file"], photos / record["file"])
    spec = ModelSpec("hash-test", "none")

    class Stepped(HashEmbedder):
        def __init__(self):
            super().__init__(spec)
            self.waiting, self.go = threading.Semaphore(0), threading.Semaphore(0)

        def encode_pixels(self, pixels):
            self.waiting.release()
            assert self.go.acquire(timeout=60)
            return super().encode_pixels(pixels)

    library = Library.open(tmp_path / "index", model=spec, create=True)
    library.use_embedder(HashEmbedder(spec))
    library.index([photos])
    for record in records[8:72]:  # two batches of the default 32
        shutil.copy2(folder / record["file"], photos / record["file"])
    embedder = Stepped()
    library.use_embedder(embedder)
    service = SearchService(library, AppSettings(thumbs_dir=str(tmp_path / "thumbs"), min_score=-1.0))
    reindex = threading.Thread(target=service.reindex)
    reindex.start()
    counts = []
    for _ in range(2):
        assert embedder.waiting.acquire(timeout=60)
        outcome = service.search("anything", top_k=200)
        assert all(os.path.isfile(r.thumbnail) for r in outcome.results)
        counts.append(len(outcome.results))
        embedder.go.release()
    reindex.join(60)
    assert not reindex.is_alive()
    assert counts == [8, 40]
    assert len(service.search("anything", top_k=200).results) == 72
