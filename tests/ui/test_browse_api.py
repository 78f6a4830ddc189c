"""The named endpoints ``/browse`` and ``/more_like`` (with words) through gradio_client answer what the library
answers for the same index: catalog ids, in the same order, with app-made thumbnails."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gradio_client.exceptions import AppError

from clipsearch import SearchFilter, Term


def ids(results) -> list[int]:
    return [r["id"] for r in results]


@pytest.mark.parametrize("order", ["newest", "oldest", "name"])
def test_browse_pages_are_the_library_s_pages(client, scenes_library, order):
    for offset in (0, 50, 100):
        answer = client.predict("", "", "", order, "", offset, 50, api_name="/browse")
        page = scenes_library.browse(order=order, offset=offset, limit=50)
        assert ids(answer["results"]) == [h.id for h in page.hits]
        assert (answer["total"], answer["offset"], answer["next_offset"]) == (page.total, offset, page.next_offset)
    assert answer["next_offset"] is None and len(answer["results"]) == 20  # 120 scenes: the third page ends
    assert answer["results"][0]["score"] is None  # listed, not ranked


def test_browse_by_score_is_the_search_ranking_continued(client, scenes_library, scenes):
    caption = scenes[1][3]["caption"]
    answer = client.predict("", "", "", "score", caption, 10, 10, api_name="/browse")
    ranking = scenes_library.search(caption, top_k=20, min_score=-1)
    assert ids(answer["results"]) == [h.id for h in ranking[10:20]]
    assert [r["score"] for r in answer["results"]] == [round(h.score, 4) for h in ranking[10:20]]
    first = client.predict("", "", "", "score", caption, 0, 5, api_name="/browse")["results"]
    assert ids(first) == [h.id for h in ranking[:5]] and scenes[1][3]["file"] in [r["name"] for r in first]


def test_browse_in_a_folder_and_dates_filters_like_the_library(client, scenes_library, scenes):
    folder = str(scenes[0].resolve())
    answer = client.predict(folder, "2000-01-01", "2999-12-31", "oldest", "", 0, 30, api_name="/browse")
    page = scenes_library.browse(SearchFilter.dated(folder, "2000-01-01", "2999-12-31"), "oldest", 0, 30)
    assert ids(answer["results"]) == [h.id for h in page.hits] and answer["total"] == 120
    assert client.predict(folder, "2999-01-01", "", "newest", "", 0, 30, api_name="/browse")["total"] == 0


def test_browse_results_carry_thumbnails_the_app_made(client, scenes_app):
    answer = client.predict("", "", "", "newest", "", 0, 3, api_name="/browse")
    thumbs = scenes_app.clipsearch_service.media.folder
    for result in answer["results"]:
        assert set(result) >= {"id", "name", "taken", "thumbnail"}
        url = result["thumbnail"]
        assert url.startswith("/gradio_api/file=") and Path(url.split("=", 1)[1]).parent.parent == thumbs
        response = httpx.get(scenes_app.local_url.rstrip("/") + url, timeout=30)
        assert response.status_code == 200 and response.headers["content-type"] == "image/webp"


def test_more_like_this_but_with_words_is_the_library_s_id_query(client, scenes_library):
    first = client.predict("a large green square", 1, -1.0, api_name="/search")[0]
    steered = client.predict(first["id"], 10, -1.0, "", "", "", "red", "green", api_name="/more_like")
    terms = [Term("file", str(first["id"])), Term("text", "red"), Term("text", "green", -1.0)]
    assert ids(steered) == [h.id for h in scenes_library.search(terms, top_k=10, min_score=-1.0)]
    plain = client.predict(first["id"], 10, -1.0, api_name="/more_like")
    assert ids(plain)[0] == first["id"] and ids(steered) != ids(plain)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (("", "", "", "score", "", 0, 10), "needs a query"),
        (("", "", "", "newest", "red", 0, 10), "pass order 'score'"),
        (("", "", "", "sideways", "", 0, 10), "unknown order"),
        (("", "", "", "newest", "", -5, 10), "offset must be 0 or more"),
        (("", "", "", "newest", "", 0, 100_000), "limit between 1 and 500"),
        (("", "someday", "", "newest", "", 0, 10), "not a date"),
        (("", "", "", "score", "/etc/passwd.jpg", 0, 10), "upload the example image"),
    ],
)
def test_bad_browse_requests_get_one_clear_line(client, inputs, message):
    with pytest.raises(AppError, match=message):
        client.predict(*inputs, api_name="/browse")
