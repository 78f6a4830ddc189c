"""What the Explore views compute (ui.explore), without a browser: the map's payload and colours, label lists, and
the duplicates export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from clipsearch import QueryError
from ui.explore import DATE_PALETTE, OTHER, PALETTE, ExploreService, _categories, _date_bins, parse_labels


@pytest.fixture(scope="module")
def explore(archive) -> ExploreService:
    return ExploreService(archive.app.clipsearch_service)


def test_labels_are_one_per_line_without_blanks_or_comments():
    assert parse_labels(" beach \n\n# not a label\nbirthday party\n") == ["beach", "birthday party"]
    assert parse_labels("") is None and parse_labels("\n  \n# only a comment") is None
    with pytest.raises(QueryError, match="at most 2000"):
        parse_labels("\n".join(f"w{n}" for n in range(2001)))


def test_the_most_common_groups_get_the_colours_and_the_rest_share_one_grey():
    keys = [f"folder-{n}" for n in range(25) for _ in range(25 - n)]  # folder-0 the largest
    group, legend = _categories(keys)
    assert [item["name"] for item in legend[:3]] == ["folder-0", "folder-1", "folder-2"]
    assert len(legend) == len(PALETTE) and legend[-1] == {"name": "6 others", "colour": OTHER,
                                                          "count": sum(range(1, 7))}
    assert {group[keys.index("folder-24")], group[keys.index("folder-19")]} == {len(PALETTE) - 1}
    assert group[keys.index("folder-0")] == 0


def test_dates_fall_into_eight_bins_of_equal_counts_from_oldest_to_newest():
    day = 86_400
    taken = [1_600_000_000 + day * n for n in range(80)][::-1]  # newest first: the order must not matter
    group, legend = _date_bins(taken)
    assert [item["count"] for item in legend] == [10] * 8 and [i["colour"] for i in legend] == list(DATE_PALETTE)
    assert group[-1] == 0 and group[0] == 7  # the oldest in the first bin, the newest in the last
    assert legend[0]["name"] < legend[-1]["name"]


@pytest.mark.parametrize("colour_by", ["theme", "folder", "date"])
def test_the_map_payload_holds_every_photo_scaled_into_the_unit_square(archive, explore, colour_by):
    data = explore.map_data(colour_by)
    points = archive.library.map()
    assert data["ids"] == [p.id for p in points] and data["by"] == colour_by
    assert min(data["x"]) == 0 or min(data["y"]) == 0
    assert max(max(data["x"]), max(data["y"])) == pytest.approx(1.0)
    assert all(0 <= v <= 1 for v in data["x"] + data["y"])
    assert sum(item["count"] for item in data["legend"]) == len(points)
    assert len(data["group"]) == len(points) and max(data["group"]) < len(data["legend"])
    if colour_by == "theme":
        names = [item["name"] for item in data["legend"]]
        assert all(names[g] == p.theme for g, p in zip(data["group"], points))


def test_the_map_refuses_an_unknown_colouring(explore):
    with pytest.raises(QueryError, match="colour the map by one of theme, folder, date"):
        explore.map_data("mood")


def test_the_duplicates_export_lists_every_member_with_the_keeper_marked(archive, explore):
    groups = explore.duplicates(0.9)
    csv_path, json_path = explore.export_duplicates(groups)
    rows = list(csv.DictReader(Path(csv_path).open(encoding="utf-8")))
    assert [(int(r["group"]), int(r["id"])) for r in rows] == \
        [(n, i) for n, g in enumerate(groups, start=1) for i in g.ids]
    assert [r["path"] for r in rows if r["keep"] == "yes"] == [g.keep for g in groups]
    listing = json.loads(Path(json_path).read_text(encoding="utf-8"))
    assert [(item["keep"], [m["id"] for m in item["members"]]) for item in listing] == \
        [(g.keep, list(g.ids)) for g in groups]
    rows_by_id = archive.library.files([i for g in groups for i in g.ids])
    for item in listing:
        for member in item["members"]:
            row = rows_by_id[member["id"]]
            assert (member["width"], member["height"], member["bytes"]) == (row.width, row.height, row.size)


def test_a_selection_lists_those_photos_in_map_order_and_pages_on(archive, explore):
    ids = [p.id for p in archive.library.map()][::-1]
    service = archive.app.clipsearch_service
    first = explore.service.listed(ids, "all of them", page_size=30)
    assert [r.id for r in first.results] == ids[:30] and first.listing.next_offset == 30
    assert f"30 of {len(ids)} photos" in first.summary
    second = service.next_page(first.listing, 30)
    assert [r.id for r in second.results] == ids[30:60]
    with pytest.raises(QueryError, match="list of photo ids"):
        explore.selection(["/etc/passwd"])
