"""The Explore endpoints ``/map``, ``/themes``, ``/duplicates`` and ``/outliers`` through gradio_client answer what
the library answers for the same index: catalog ids, with thumbnails the app made."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gradio_client.exceptions import AppError


def test_the_map_endpoint_gives_the_library_s_points(archive, archive_client):
    answer = archive_client.predict("", api_name="/map")
    points = archive.library.map()
    assert [p["id"] for p in answer] == [p.id for p in points]
    assert [(p["x"], p["y"], p["theme"]) for p in answer] == [(round(p.x, 4), round(p.y, 4), p.theme) for p in points]
    assert [p["name"] for p in answer] == [Path(p.path).name for p in points]


def test_the_map_endpoint_names_themes_from_the_labels_given(archive, archive_client):
    answer = archive_client.predict("noise\npage of text\ngradient\nshapes", api_name="/map")
    expected = archive.library.map(labels=["noise", "page of text", "gradient", "shapes"])
    assert [(p["id"], p["theme"]) for p in answer] == [(p.id, p.theme) for p in expected]
    assert {p["theme"] for p in answer} <= {"noise", "page of text", "gradient", "shapes"}


def test_the_themes_endpoint_gives_the_library_s_themes_with_representative_thumbnails(archive, archive_client):
    answer = archive_client.predict("", api_name="/themes")
    themes = archive.library.themes()
    assert [(t["name"], t["size"], t["ids"], t["representative_id"]) for t in answer] == \
        [(t.name, t.size, list(t.ids), t.representative_id) for t in themes]
    assert_app_thumbnails(archive, [t["thumbnail"] for t in answer])


def test_the_themes_endpoint_takes_a_label_list_one_per_line(archive, archive_client):
    labels = ["noise", "page of text", "gradient", "shapes"]
    answer = archive_client.predict("\n".join(labels) + "\n\n# a comment\n", api_name="/themes")
    expected = archive.library.themes(labels=labels)
    assert [(t["name"], t["ids"]) for t in answer] == [(t.name, list(t.ids)) for t in expected]


@pytest.mark.parametrize("threshold", [0.9, 0.97])
def test_the_duplicates_endpoint_gives_the_library_s_groups_keeper_first(archive, archive_client, threshold):
    answer = archive_client.predict(threshold, api_name="/duplicates")
    groups = archive.library.duplicates(threshold=threshold)
    assert [(g["ids"], g["keep_id"], g["similarity"]) for g in answer] == \
        [(list(g.ids), g.keep_id, round(g.similarity, 6)) for g in groups]
    for group in answer:
        assert [m["id"] for m in group["members"]] == group["ids"]
        assert [m["keep"] for m in group["members"]] == [True] + [False] * (len(group["ids"]) - 1)
        assert all(m["width"] and m["height"] and m["bytes"] > 0 for m in group["members"])
        assert_app_thumbnails(archive, [m["thumbnail"] for m in group["members"]])


def test_the_planted_copies_come_back_as_duplicate_groups(archive, archive_client):
    names = {m["id"]: m["name"] for g in archive_client.predict(0.9, api_name="/duplicates") for m in g["members"]}
    groups = [{names[i] for i in g["ids"]} for g in archive_client.predict(0.9, api_name="/duplicates")]
    for copy, original in archive.copies.items():
        assert any({copy, original} <= group for group in groups), copy


def test_the_outliers_endpoint_gives_the_library_s_odd_ones_out_most_unusual_first(archive, archive_client):
    answer = archive_client.predict(12, api_name="/outliers")
    found = archive.library.outliers(top=12)
    assert [(o["id"], o["score"]) for o in answer] == [(o.id, round(o.score, 6)) for o in found]
    assert set(archive.odd) <= {o["name"] for o in archive_client.predict(2 * len(archive.odd), api_name="/outliers")}
    assert_app_thumbnails(archive, [o["thumbnail"] for o in answer])


@pytest.mark.parametrize(
    ("endpoint", "inputs", "message"),
    [
        ("/duplicates", (1.5,), "cosine similarity in"),
        ("/duplicates", (0,), "cosine similarity in"),
        ("/outliers", (0,), "between 1 and 1000"),
        ("/outliers", (5000,), "between 1 and 1000"),
        ("/themes", ("\n".join(f"label {n}" for n in range(2001)),), "at most 2000 labels"),
    ],
)
def test_bad_explore_requests_get_one_clear_line(archive_client, endpoint, inputs, message):
    with pytest.raises(AppError, match=message):
        archive_client.predict(*inputs, api_name=endpoint)


def assert_app_thumbnails(archive, urls: list[str]) -> None:
    thumbs = archive.app.clipsearch_service.media.folder
    for url in urls:
        assert url.startswith("/gradio_api/file=") and Path(url.split("=", 1)[1]).parent.parent == thumbs
    response = httpx.get(archive.app.local_url.rstrip("/") + urls[0], timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
