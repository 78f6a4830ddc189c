"""Real-browser journeys (Playwright driving Debian's Chromium) through the app over the held-out scenes, and
browsing a library of more photos than one page holds.

Set CLIPSEARCH_SCREENSHOT=docs/screenshot.png to also save the journey's screenshots there (the search view,
and beside it ``screenshot-preview.png`` with a preview open; tools/screenshot.py does, for the README);
otherwise they go under tmp_path only. Both are of the viewport: what a person sees.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from clipsearch import Library, ModelSpec
from clipsearch.testing import HashEmbedder
from tests.ui.conftest import launch_app

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


VIEWPORT = {"width": 1400, "height": 1050}
PHONE = {"width": 390, "height": 844}


def open_page(browser, app, viewport=VIEWPORT):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(app.local_url)
    page.locator("#query textarea, #query input").first.wait_for()
    return context, page


@pytest.fixture
def page(browser, scenes_app):
    """A fresh page of the app for each test: no test depends on what another left on screen."""
    context, page = open_page(browser, scenes_app)
    yield page
    context.close()


@pytest.fixture
def phone(browser, scenes_app):
    """A fresh page on a phone-sized screen (390 x 844 CSS pixels)."""
    context, page = open_page(browser, scenes_app, PHONE)
    yield page
    context.close()


def search(page, words: str) -> str:
    box = page.locator("#query textarea, #query input").first
    box.fill(words)
    box.press("Enter")
    return wait_for_summary(page, f"for {words}")


def gallery_names(page) -> list[str]:
    labels = page.locator("#results .caption-label").all_inner_texts()
    return [label.split("·", 1)[1].strip() for label in labels]


def tiles(page):
    return page.locator("#results button.thumbnail-item")


def focused(page) -> str:
    """What has the keyboard focus: a thumbnail's label ("Thumbnail 3 of 24"), else the element's id."""
    return page.evaluate("() => document.activeElement.getAttribute('aria-label') || document.activeElement.id")


def in_viewport(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= size["height"] \
        and box["x"] + box["width"] <= size["width"]


def previewed(page) -> str:
    """The file name the open preview shows (its details' first line)."""
    return page.locator("#details").inner_text().splitlines()[0].strip()


def wait_for_preview_of(page, name: str) -> None:
    page.wait_for_function("n => (document.querySelector('#details')?.innerText || '').startsWith(n)", arg=name)


def wait_for_summary(page, text: str) -> str:
    page.wait_for_function(
        "t => (document.querySelector('#summary')?.innerText || '').includes(t)", arg=text)
    page.wait_for_function(  # every thumbnail decoded, not merely listed
        "() => { const imgs = [...document.querySelectorAll('#results img')];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }")
    return page.locator("#summary").inner_text()


def test_typed_words_show_the_right_thumbnails(page, scenes):
    record = scenes[1][7]
    box = page.locator("#query textarea, #query input").first
    box.fill(record["caption"])
    box.press("Enter")
    summary = wait_for_summary(page, f"for {record['caption']}")
    assert "24 results" in summary
    names = gallery_names(page)
    assert len(names) == 24
    assert record["file"] in names[:5]
    src = page.locator("#results img").first.get_attribute("src")
    assert "/gradio_api/file=" in src and src.endswith(".webp")  # an app-made thumbnail, never the original


def test_an_uploaded_image_finds_its_scene(page, scenes, tmp_path):
    folder, records = scenes
    record = records[30]
    upload = tmp_path / "holiday-snap.jpg"
    Image.open(folder / record["file"]).convert("RGB").save(upload, quality=80)
    page.locator("#query textarea, #query input").first.fill("")
    page.locator("#query-image input[type=file]").set_input_files(str(upload))
    wait_for_summary(page, "the uploaded image")
    assert gallery_names(page)[0] == record["file"]


def test_clicking_a_result_previews_it_and_more_like_this_searches_from_it(page, scenes, tmp_path):
    search(page, scenes[1][7]["caption"])
    shoot(page, tmp_path, "")  # the search view
    page.locator("#results button.thumbnail-item").nth(1).click()
    details = page.locator("#details")
    details.wait_for()
    page.locator("#preview-image img").wait_for()
    chosen = gallery_names(page)[1]
    assert chosen in details.inner_text() and str(scenes[0].resolve()) in details.inner_text()
    with page.expect_download() as download:
        page.locator("#download").click()
    saved = tmp_path / "download"
    download.value.save_as(saved)
    assert saved.read_bytes() == (scenes[0] / chosen).read_bytes()

    page.locator("#more-like-this").click()
    wait_for_summary(page, f"more like {chosen}")
    assert gallery_names(page)[0] == chosen
    assert page.locator("#preview").count() == 0  # the new results, not the old preview
    tiles(page).first.click()
    page.locator("#preview-image img").wait_for()
    wait_for_preview_of(page, chosen)
    shoot(page, tmp_path, "-preview")  # a preview open over the results


def shoot(page, tmp_path: Path, suffix: str) -> None:
    """A screenshot of the viewport (what a person sees, not a full-page capture), for the README on request."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus ring in the shot
    shot = tmp_path / f"screenshot{suffix}.png"
    page.screenshot(path=str(shot))
    assert Image.open(shot).size == (VIEWPORT["width"], VIEWPORT["height"])
    if os.environ.get("CLIPSEARCH_SCREENSHOT"):
        target = Path(os.environ["CLIPSEARCH_SCREENSHOT"])
        shutil.copy(shot, target.with_name(f"{target.stem}{suffix}{target.suffix}"))


def test_the_preview_opens_in_view_and_left_right_and_escape_work(page, scenes):
    search(page, scenes[1][7]["caption"])
    names = gallery_names(page)
    page.mouse.wheel(0, 600)  # scrolled down, as a person looking at the lower rows is
    page.wait_for_function("() => window.scrollY > 0")
    tiles(page).nth(12).click()
    wait_for_preview_of(page, names[12])
    assert in_viewport(page, "#preview") and in_viewport(page, "#details") and in_viewport(page, "#more-like-this")
    assert focused(page) == "preview-close"  # the keyboard is in the preview
    page.keyboard.press("ArrowRight")
    wait_for_preview_of(page, names[13])
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    wait_for_preview_of(page, names[10])
    assert in_viewport(page, "#preview")
    page.keyboard.press("Escape")
    page.locator("#preview").wait_for(state="detached")
    assert focused(page) == f"Thumbnail 11 of {len(names)}"  # back where the preview came from


def test_the_first_result_is_two_tabs_from_the_search_box_and_arrows_move_in_the_gallery(page, scenes):
    search(page, "a red circle")
    count = len(gallery_names(page))
    page.locator("#query textarea, #query input").first.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert focused(page) == f"Thumbnail 1 of {count}"
    page.keyboard.press("ArrowRight")
    assert focused(page) == f"Thumbnail 2 of {count}"
    page.keyboard.press("ArrowDown")  # one row down: as many thumbnails on as there are columns
    assert focused(page) == f"Thumbnail 7 of {count}"
    page.keyboard.press("Enter")
    wait_for_preview_of(page, gallery_names(page)[6])
    page.keyboard.press("Escape")
    page.locator("#preview").wait_for(state="detached")
    assert focused(page) == f"Thumbnail 7 of {count}"
    page.keyboard.press("Tab")  # one tab stop for the whole gallery: Tab leaves it
    assert focused(page) == "load-more"


def test_a_bad_upload_is_cleared_and_explained_and_words_then_search_as_usual(page, scenes, tmp_path):
    broken = tmp_path / "broken.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), "red").save(buffer, "JPEG")
    broken.write_bytes(buffer.getvalue()[:300])
    heic = tmp_path / "phone.heic"
    heic.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 400)  # a HEIC's header, no picture
    for upload in (broken, heic):
        page.locator("#query-image input[type=file]").set_input_files(str(upload))
        summary = wait_for_summary_text(page, f"cannot use {upload.name}")
        assert "could not be used" in summary and "'HEIF'" not in summary and "Traceback" not in summary
        assert "Drop another image, or search by words" in summary
        page.locator("#query-image img").wait_for(state="detached")  # taken off the page
    record = scenes[1][7]
    search(page, record["caption"])
    assert record["file"] in gallery_names(page)[:5]


def test_an_empty_result_says_why_and_what_to_try(page):
    cut = page.locator("#min-score input[type=number]")
    cut.fill("0.99")
    cut.press("Enter")
    box = page.locator("#query textarea, #query input").first
    box.fill("a red circle")
    box.press("Enter")
    summary = wait_for_summary_text(page, "0 results")
    assert "Nothing scores 0.99 or more: the best match scores 0." in summary
    assert "Lower the Minimum score" in summary
    box.fill("")
    box.press("Enter")
    assert "Type some words or drop an image" in wait_for_summary_text(page, "Type some words")


def test_a_narrow_screen_shows_the_results_before_the_controls(phone):
    search(phone, "a red circle")
    first = tiles(phone).first.bounding_box()
    gallery = phone.locator("#results").bounding_box()
    assert first["y"] + first["height"] <= PHONE["height"] / 2  # the first result in the top half, unscrolled
    for control in ("#query-image", "#sort", "#min-score", "#folder"):
        assert phone.locator(control).bounding_box()["y"] >= gallery["y"] + gallery["height"], control
    tiles(phone).nth(2).click()
    wait_for_preview_of(phone, gallery_names(phone)[2])
    assert in_viewport(phone, "#preview-close") and in_viewport(phone, "#preview-image")


def wait_for_summary_text(page, text: str) -> str:
    page.wait_for_function("t => (document.querySelector('#summary')?.innerText || '').includes(t)", arg=text)
    return page.locator("#summary").inner_text()


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """230 small generated photos (more than a page, more than the old 200 cap), indexed with the HashEmbedder."""
    base = tmp_path_factory.mktemp("many")
    photos = base / "photos"
    photos.mkdir()
    for n in range(230):
        colour = (n * 7 % 256, n * 13 % 256, n * 29 % 256)
        Image.new("RGB", (40, 30), colour).save(photos / f"img-{n:03d}.png")
        os.utime(photos / f"img-{n:03d}.png", (1_600_000_000 + n * 60, 1_600_000_000 + n * 60))
    spec = ModelSpec("hash-test", "none")
    library = Library.open(base / "index", model=spec, create=True)
    library.use_embedder(HashEmbedder(spec))
    library.index([photos])
    app = launch_app(library, base / "thumbs")
    yield library, app
    app.close()
    library.close()


def test_browsing_without_a_query_loads_page_after_page_past_the_first_200(browser, many):
    library, app = many
    context, page = open_page(browser, app)
    try:
        page.locator("#browse-btn").click()
        wait_for_summary_text(page, "100 of 230 photos")  # (thumbnails far down the gallery load lazily)
        expected = [Path(h.path).name for h in library.browse(order="newest", limit=1000).hits]
        assert gallery_names(page) == expected[:100]
        for shown in (200, 230):
            page.locator("#load-more").click()
            wait_for_summary_text(page, f"{shown} of 230 photos")
            page.wait_for_function("n => document.querySelectorAll('#results button.thumbnail-item').length === n",
                                   arg=shown)
        assert gallery_names(page) == expected  # every photo once, newest first, the last ones past 200
        assert page.locator("#load-more").count() == 0 or not page.locator("#load-more").is_visible()
        tiles(page).nth(229).click()
        wait_for_preview_of(page, expected[229])
    finally:
        context.close()


def test_the_library_panel_shows_status_and_reindexes_with_progress(page, scenes):
    page.get_by_text("Library", exact=True).click()
    status = page.locator("#status")
    status.wait_for()
    assert "clipsearch-tiny" in status.inner_text() and str(scenes[0].resolve()) in status.inner_text()
    page.locator("#reindex").click()
    page.wait_for_function(
        "() => (document.querySelector('#reindex-result')?.innerText || '').includes('unchanged')")
    assert f"unchanged {len(scenes[1])}" in page.locator("#reindex-result").inner_text()
