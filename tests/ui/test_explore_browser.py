"""Real-browser journeys through the Explore views (Playwright driving Debian's Chromium) over a small archive
with planted copies and odd ones out (tests/ui/conftest.py: ``archive``). Each test opens a fresh page.

With CLIPSEARCH_SCREENSHOT=docs/screenshot.png the map, themes and duplicates journeys also save their viewport
(``screenshot-map.png``, ``screenshot-themes.png``, ``screenshot-duplicates.png``); tools/screenshot.py does.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.ui.test_browser import (
    gallery_names,
    open_page,
    search,
    shoot,
    tiles,
    wait_for_preview_of,
    wait_for_summary_text,
)

pytestmark = pytest.mark.browser
MAP = "#explore-map [data-points]"


@pytest.fixture
def page(browser, archive):
    context, page = open_page(browser, archive.app)
    yield page
    context.close()


def shoot_view(page, tmp_path, suffix: str) -> None:
    page.mouse.move(2, 2)  # no hover style on the control last clicked
    shoot(page, tmp_path, suffix)


def choose_view(page, label: str) -> None:
    page.locator("#view").get_by_text(label, exact=True).click()


def open_map(page, archive) -> dict[int, tuple[float, float]]:
    """Switch to the map, wait until every photo is drawn, and return each photo's point in viewport pixels."""
    choose_view(page, "Map")
    count = archive.library.status().files
    page.wait_for_function("n => document.querySelector('#explore-map [data-points]')?.dataset.points == n",
                           arg=str(count))
    page.locator(MAP).scroll_into_view_if_needed()
    return points_on_screen(page)


def points_on_screen(page) -> dict[int, tuple[float, float]]:
    found = page.evaluate("""() => { const m = document.querySelector('#explore-map [data-points]').clipsearchMap;
        return Array.from(m.state.ids, id => [id, m.screenOf(id)]); }""")
    return {int(i): (p["x"], p["y"]) for i, p in found}


def drag(page, path: list[tuple[float, float]]) -> None:
    page.mouse.move(*path[0])
    page.mouse.down()
    for x, y in path[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def names_of(archive, ids) -> list[str]:
    rows = archive.library.files(list(ids))
    return [Path(rows[i].path).name for i in ids]


def test_the_map_draws_every_photo_and_a_box_selection_fills_the_gallery(page, archive, tmp_path):
    search(page, "a yellow triangle")  # its hits ringed on the map (in the screenshot)
    points = open_map(page, archive)
    assert len(points) == archive.library.status().files
    painted = page.evaluate("""points => { const c = document.querySelector('#explore-map .map-points');
        const r = c.getBoundingClientRect(), ctx = c.getContext('2d'), k = c.width / r.width;
        return points.map(([x, y]) => ctx.getImageData(Math.round((x - r.left) * k), Math.round((y - r.top) * k),
                                                       1, 1).data[3]); }""", list(points.values()))
    assert all(alpha > 0 for alpha in painted)  # every photo's point is drawn where the map says it is
    legend = page.locator("#explore-map .map-key").all_inner_texts()
    assert {t.name for t in archive.library.themes()} == {text.rsplit(" (", 1)[0].strip() for text in legend}
    shoot_view(page, tmp_path, "-map")
    xs, ys = sorted(p[0] for p in points.values()), sorted(p[1] for p in points.values())
    left, right = xs[len(xs) // 4] - 1, xs[3 * len(xs) // 4] + 1  # the middle half across, the whole height
    top, bottom = ys[0] - 5, ys[-1] + 5
    inside = [i for i, (x, y) in points.items() if left <= x <= right and top <= y <= bottom]
    drag(page, [(left, top), ((left + right) / 2, (top + bottom) / 2), (right, bottom)])
    wait_for_summary_text(page, f"{len(inside)} selected on the map")
    assert sorted(gallery_names(page)) == sorted(names_of(archive, inside))
    assert 0 < len(inside) < len(points)


def test_a_lasso_selects_the_photos_inside_its_outline(page, archive):
    points = open_map(page, archive)
    page.locator("#explore-map [data-mode=lasso]").click()
    xs, ys = [p[0] for p in points.values()], [p[1] for p in points.values()]
    left, right, top, bottom = min(xs) - 5, max(xs) + 5, min(ys) - 5, max(ys) + 5
    triangle = [(left, top), (right, top), (left, bottom)]  # the upper-left half, cut along the diagonal
    outline = [*triangle, triangle[0]]
    inside = [i for i, (x, y) in points.items() if (x - left) / (right - left) + (y - top) / (bottom - top) < 1]
    drag(page, outline)
    summary = wait_for_summary_text(page, "selected on the map")
    near_edge = [i for i, (x, y) in points.items()
                 if abs((x - left) / (right - left) + (y - top) / (bottom - top) - 1) < 0.02]
    chosen = set(names_of(archive, [i for i in inside if i not in near_edge]))
    shown = set(gallery_names(page))
    assert chosen <= shown and shown <= set(names_of(archive, inside + near_edge)), summary
    assert 0 < len(shown) < len(points)


def test_clicking_a_point_opens_its_preview_and_search_puts_the_map_away(page, archive):
    points = open_map(page, archive)
    target = archive.ids()[archive.odd[0]]
    page.mouse.click(*points[target])
    wait_for_preview_of(page, archive.odd[0])
    page.keyboard.press("Escape")
    page.locator("#preview").wait_for(state="detached")
    choose_view(page, "Search")  # back to searching: the map is put away
    page.locator("#explore-map-panel").wait_for(state="hidden")


def test_hovering_a_point_shows_its_thumbnail_and_zooming_in_draws_thumbnails(page, archive):
    points = open_map(page, archive)
    target = archive.ids()[archive.odd[3]]
    page.mouse.move(*points[target])
    tip = page.locator("#explore-map .map-tip img")
    page.wait_for_function("() => (document.querySelector('#explore-map .map-tip img')?.src || '')"
                           ".includes('/gradio_api/file=')")
    assert not page.locator("#explore-map .map-tip").is_hidden() and tip.evaluate("i => i.naturalWidth") > 0
    zoom = "() => document.querySelector('#explore-map [data-points]').clipsearchMap.state.zoom"
    page.locator("#explore-map .map-overlay").focus()
    page.keyboard.press("+")
    assert page.evaluate(zoom) == pytest.approx(1.5)  # the keyboard zooms too
    page.keyboard.press("0")
    assert page.evaluate(zoom) == 1
    page.mouse.move(*points[target])
    for _ in range(12):
        page.mouse.wheel(0, -200)
    page.wait_for_function("() => { const m = document.querySelector('#explore-map [data-points]');"
                           " return Number(m.dataset.visible) <= 60 && m.clipsearchMap.state.images.size > 0; }")


def test_the_search_s_hits_are_ringed_on_the_map_and_colours_follow_the_choice(page, archive):
    search(page, "a red circle")
    shown = len(gallery_names(page))
    open_map(page, archive)
    page.wait_for_function("n => (document.querySelector('#explore-map .map-count')?.innerText || '')"
                           ".includes(`${n} in the gallery`)", arg=shown)
    page.locator("#colour-by").get_by_text("date taken", exact=True).click()
    page.wait_for_function("() => [...document.querySelectorAll('#explore-map .map-key')]"
                           ".some(k => /\\d{4}-\\d\\d-\\d\\d/.test(k.innerText))")
    page.locator("#colour-by").get_by_text("folder", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#explore-map .map-key').length === 1")
    assert "photos" in page.locator("#explore-map .map-key").inner_text()


def test_a_theme_card_opens_its_photos(page, archive, tmp_path):
    choose_view(page, "Themes")
    themes = archive.library.themes()
    cards = page.locator("#theme-cards button.thumbnail-item")
    cards.first.wait_for()
    assert cards.count() == len(themes)
    captions = page.locator("#theme-cards .caption-label").all_inner_texts()
    assert captions == [f"{t.name} · {t.size} photo{'s' if t.size != 1 else ''}" for t in themes]
    shoot_view(page, tmp_path, "-themes")
    chosen = themes[1]
    cards.nth(1).click()
    wait_for_summary_text(page, f"the theme “{chosen.name}”")
    expected = names_of(archive, [chosen.representative_id, *(i for i in chosen.ids if i != chosen.representative_id)])
    assert gallery_names(page) == expected[:100]
    tiles(page).first.click()
    wait_for_preview_of(page, expected[0])


def test_themes_are_named_from_the_user_s_own_labels(page, archive):
    choose_view(page, "Themes")
    page.locator("#theme-cards button.thumbnail-item").first.wait_for()
    page.get_by_text("Your own labels").click()
    labels = ["noise", "page of text", "colour gradient", "shapes on a background"]
    page.locator("#theme-labels textarea").fill("\n".join(labels))
    page.locator("#name-themes").click()
    expected = [f"{t.name} · {t.size} photo{'s' if t.size != 1 else ''}" for t in archive.library.themes(labels=labels)]
    page.wait_for_function("e => JSON.stringify([...document.querySelectorAll('#theme-cards .caption-label')]"
                           ".map(c => c.innerText)) === JSON.stringify(e)", arg=expected)


def test_a_duplicate_group_shows_its_keeper_and_the_list_exports(page, archive, tmp_path):
    before = sorted(p.name for p in archive.folder.iterdir())
    choose_view(page, "Duplicates")
    groups = archive.library.duplicates()
    page.wait_for_function("n => document.querySelectorAll('#dup-groups .dup-group').length === n", arg=len(groups))
    ids = archive.ids()
    resized = next(name for name in archive.copies if "resized" in name)
    original = archive.copies[resized]
    number = next(n for n, g in enumerate(groups) if ids[resized] in g.ids)
    group = page.locator("#dup-groups .dup-group").nth(number)
    members = group.locator("figure")
    assert members.count() == len(groups[number].ids)
    keeper = group.locator("figure.dup-keeper")
    assert keeper.count() == 1 and "✓ keep" in keeper.inner_text() and original in keeper.inner_text()
    assert members.first.get_attribute("data-id") == str(ids[original])  # the keeper first: the most pixels
    assert " × " in keeper.inner_text() and "KB" in keeper.inner_text()
    assert "px" in group.locator("figure:not(.dup-keeper)").first.inner_text()
    shoot_view(page, tmp_path, "-duplicates")

    with page.expect_download() as download:
        page.locator("#dup-csv").click()
    saved = tmp_path / "duplicates.csv"
    download.value.save_as(saved)
    rows = list(csv.DictReader(saved.open(encoding="utf-8")))
    assert {(r["path"], r["keep"]) for r in rows if r["keep"] == "yes"} == \
        {(g.keep, "yes") for g in groups}
    assert len(rows) == sum(len(g.ids) for g in groups)

    group.locator("button.dup-show").click()
    wait_for_summary_text(page, f"duplicate group {number + 1}")
    assert gallery_names(page)[0] == original
    assert sorted(p.name for p in archive.folder.iterdir()) == before  # nothing deleted or moved


def test_the_similarity_threshold_changes_the_groups(page, archive):
    choose_view(page, "Duplicates")
    loose, strict = archive.library.duplicates(threshold=0.9), archive.library.duplicates(threshold=1.0)
    assert len(strict) < len(loose)
    page.wait_for_function("n => document.querySelectorAll('#dup-groups .dup-group').length === n", arg=len(loose))
    box = page.locator("#dup-threshold input[type=number]")
    box.fill("1")
    box.press("Enter")
    page.wait_for_function("n => document.querySelectorAll('#dup-groups .dup-group').length === n", arg=len(strict))


def test_the_outliers_view_lists_the_planted_odd_ones_out_first(page, archive):
    choose_view(page, "Odd ones out")
    wait_for_summary_text(page, "the odd ones out")
    names = gallery_names(page)
    expected = [Path(o.path).name for o in archive.library.outliers(top=48)]
    assert names == expected
    assert set(names[:len(archive.odd)]) == set(archive.odd)  # all nine planted ones, before any photo
    scores = [float(label.split("·", 1)[0]) for label in page.locator("#results .caption-label").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)


def test_the_explore_views_load_nothing_from_outside_the_app(browser, archive):
    """Offline: every request the page makes, through all four views, goes to the app itself (no CDN, no fonts
    from elsewhere)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1050})
    requested = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(archive.app.local_url)
        open_map(page, archive)
        for view, ready in (("Themes", "#theme-cards button.thumbnail-item"), ("Duplicates", "#dup-groups img"),
                            ("Odd ones out", "#results img")):
            choose_view(page, view)
            page.locator(ready).first.wait_for()
        page.wait_for_timeout(1000)  # (Gradio keeps a stream open: the network is never idle)
        own = archive.app.local_url.rstrip("/")
        outside = [url for url in requested if not url.startswith((own + "/", "data:", "blob:"))]
        assert outside == [] and len(requested) > 10
    finally:
        context.close()
