"""Real-browser journeys (Playwright driving Debian's Chromium) through the app over the held-out scenes.

Set CLIPSEARCH_SCREENSHOT=docs/screenshot.png to also save the journey's screenshot there (tools/screenshot.py
does, for the README); otherwise it goes under tmp_path only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, scenes_app):
    """A fresh page of the app for each test: no test depends on what another left on screen."""
    context = browser.new_context(viewport={"width": 1400, "height": 1050})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(scenes_app.local_url)
    page.locator("#query textarea, #query input").first.wait_for()
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
    page.locator("#results button.thumbnail-item").first.click()
    page.locator("#preview-image img").wait_for()

    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot))  # the viewport: what a person sees, not a full-page capture
    assert Image.open(shot).size == (1400, 1050)
    if os.environ.get("CLIPSEARCH_SCREENSHOT"):
        shutil.copy(shot, Path(os.environ["CLIPSEARCH_SCREENSHOT"]))


def test_the_library_panel_shows_status_and_reindexes_with_progress(page, scenes):
    page.get_by_text("Library", exact=True).click()
    status = page.locator("#status")
    status.wait_for()
    assert "clipsearch-tiny" in status.inner_text() and str(scenes[0].resolve()) in status.inner_text()
    page.locator("#reindex").click()
    page.wait_for_function(
        "() => (document.querySelector('#reindex-result')?.innerText || '').includes('unchanged')")
    assert f"unchanged {len(scenes[1])}" in page.locator("#reindex-result").inner_text()
