"""What the web app says when there is nothing to show, or an upload cannot be used: why, and what to try."""

from __future__ import annotations

import pytest
from PIL import Image

from clipsearch import Library, ModelSpec
from clipsearch.testing import HashEmbedder
from ui.service import AppSettings, SearchService, UploadError

SPEC = ModelSpec("hash-test", "none")


@pytest.fixture
def service(tmp_path):
    photos = tmp_path / "photos"
    (photos / "empty").mkdir(parents=True)
    for n in range(5):
        Image.new("RGB", (20, 20), (n * 40, 90, 200)).save(photos / f"p{n}.png")
    library = Library.open(tmp_path / "index", model=SPEC, create=True)
    library.use_embedder(HashEmbedder(SPEC))
    library.index([photos])
    yield SearchService(library, AppSettings(thumbs_dir=str(tmp_path / "thumbs"), min_score=-1.0)), photos
    library.close()


def test_a_folder_without_photos_says_so_and_what_to_try(service):
    app, photos = service
    for outcome in (app.search("anything", folder=str(photos / "empty")), app.browse(folder=str(photos / "empty"))):
        assert not outcome.results
        assert f"No photo is in `{photos / 'empty'}`" in outcome.summary
        assert "clear the folder filter" in outcome.summary


def test_dates_without_photos_say_so_and_what_to_try(service):
    app, _ = service
    outcome = app.search("anything", since="2200-01-01")
    assert "No photo is taken from 2200-01-01: widen the dates" in outcome.summary
    assert "taken 1990-01-01 to 1990-12-31" in app.browse(since="1990-01-01", until="1990-12-31").summary


def test_a_minimum_score_above_every_match_names_the_best_score(service):
    app, _ = service
    best = app.search("anything", top_k=1).results[0].score
    outcome = app.search("anything", min_score=min(best + 0.01, 1.0))
    assert not outcome.results
    assert f"the best match scores {best:.2f}" in outcome.summary and "Lower the *Minimum score*" in outcome.summary


def test_an_empty_library_says_how_to_fill_it(tmp_path):
    library = Library.open(tmp_path / "index", model=SPEC, create=True)
    library.use_embedder(HashEmbedder(SPEC))
    app = SearchService(library, AppSettings(thumbs_dir=str(tmp_path / "thumbs")))
    assert "The library is empty: index a folder" in app.browse().summary
    assert "The library is empty" in app.search("anything").summary


def test_an_image_that_cannot_be_used_is_named_apart_from_the_words(service, tmp_path):
    app, _ = service
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(UploadError, match="cannot use broken.png as a query image"):
        app.search("some words", str(broken))
    assert app.search("some words").results  # the words alone still search


def test_pages_continue_until_the_last_and_then_refuse(service):
    app, _ = service
    first = app.browse(page_size=2)
    assert len(first.results) == 2 and "**2 of 5 photos**" in first.summary and "Load more" in first.summary
    second = app.next_page(first.listing, 2)
    third = app.next_page(second.listing, 4)
    assert "**5 of 5 photos**" in third.summary and third.listing.next_offset is None
    assert len({r.id for r in first.results + second.results + third.results}) == 5
    with pytest.raises(Exception, match="nothing more to load"):
        app.next_page(third.listing, 5)
