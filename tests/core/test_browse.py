"""``Library.browse``: the library page by page, without a query (by date taken or by name) or ranked by one,
in a folder and a date range; every file reachable, none twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from clipsearch import Library, ModelSpec, QueryError, SearchFilter
from clipsearch.testing import HashEmbedder

SPEC = ModelSpec("hash-test", "none")
BASE_TIME = 1_600_000_000


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """23 small photos in ``a/`` (14) and ``b/`` (9), one a day apart (``photo-00`` oldest)."""
    base = tmp_path_factory.mktemp("browse")
    for n in range(23):
        folder = base / "photos" / ("a" if n % 7 < 4 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"photo-{n:02d}.png"
        Image.new("RGB", (24, 16), (n * 11 % 256, n * 37 % 256, n * 71 % 256)).save(path)
        os.utime(path, (BASE_TIME + n * 86400, BASE_TIME + n * 86400))
    library = Library.open(base / "index", model=SPEC, create=True)
    library.use_embedder(HashEmbedder(SPEC))
    library.index([base / "photos"])
    yield library
    library.close()


def names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def every_page(library: Library, **options) -> tuple[list[str], list[int]]:
    """All pages from the first, following ``next_offset``: (names in order, each page's size)."""
    found, sizes, offset = [], [], 0
    while offset is not None:
        page = library.browse(offset=offset, **options)
        assert page.offset == offset
        found += names(page.hits)
        sizes.append(len(page.hits))
        offset = page.next_offset
    return found, sizes


def test_pages_by_date_reach_every_photo_once_newest_first(library):
    found, sizes = every_page(library, order="newest", limit=5)
    assert found == [f"photo-{n:02d}.png" for n in range(22, -1, -1)]
    assert sizes == [5, 5, 5, 5, 3]
    assert library.browse(limit=5).total == 23
    assert every_page(library, order="oldest", limit=10)[0] == found[::-1]


def test_pages_by_name_follow_the_folders_then_the_file_names(library):
    found, _ = every_page(library, order="name", limit=4)
    paths = [h.path for h in library.browse(order="name", limit=100).hits]
    assert paths == sorted(paths) and len(found) == 23
    assert found[:14] == sorted(f"photo-{n:02d}.png" for n in range(23) if n % 7 < 4)  # a/ before b/


def test_a_folder_and_a_date_range_narrow_the_pages_and_their_total(library):
    root = Path(library.roots()[0])
    in_b = library.browse(SearchFilter(str(root / "b")), limit=3)
    assert in_b.total == 9 and names(in_b.hits) == ["photo-20.png", "photo-19.png", "photo-18.png"]
    days = SearchFilter(since=BASE_TIME + 5 * 86400, until=BASE_TIME + 9 * 86400)
    assert every_page(library, where=days, order="oldest", limit=2)[0] == [f"photo-{n:02d}.png" for n in range(5, 10)]
    assert library.browse(SearchFilter(str(root / "b"), since=BASE_TIME + 14 * 86400)).total == 3


def test_pages_by_score_continue_the_search_ranking(library):
    ranking = library.search("a query", top_k=23, min_score=-1)
    page = library.browse(order="score", query="a query", offset=5, limit=5)
    assert [h.id for h in page.hits] == [h.id for h in ranking[5:10]]
    assert [h.score for h in page.hits] == [h.score for h in ranking[5:10]]
    assert page.next_offset == 10 and page.total == 23
    vector = library.encode_query("a query")
    assert [h.id for h in library.browse(order="score", query=vector, limit=23).hits] == [h.id for h in ranking]


def test_a_minimum_score_ends_the_pages_where_the_scores_fall_below_it(library):
    ranking = library.search("a query", top_k=23, min_score=-1)
    cut = ranking[7].score
    found, offset = [], 0
    while offset is not None:
        page = library.browse(order="score", query="a query", offset=offset, limit=3, min_score=cut)
        found += [h.id for h in page.hits]
        offset = page.next_offset
    assert found == [h.id for h in ranking[:8]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"order": "random"}, "unknown order"),
        ({"order": "score"}, "needs a query"),
        ({"query": "red"}, "order='score'"),
        ({"limit": 0}, "1 to 1000"),
        ({"limit": 5000}, "1 to 1000"),
        ({"offset": -1}, "offset 0 or more"),
        ({"where": SearchFilter("/etc")}, "not inside the indexed folders"),
    ],
)
def test_bad_browse_requests_are_refused_with_a_reason(library, options, message):
    with pytest.raises(QueryError, match=message):
        library.browse(**options)


def test_dates_as_people_type_them_make_whole_days(library):
    day = SearchFilter.dated(since="2024-05-31", until="2024-05-31")
    assert day.until - day.since == pytest.approx(86399.999)
    assert SearchFilter.dated("  ", "", None) == SearchFilter()
    with pytest.raises(QueryError, match="not a date like"):
        SearchFilter.dated(since="yesterday-ish")
    with pytest.raises(QueryError, match="after the 'until' date"):
        SearchFilter.dated(since="2024-06-02", until="2024-06-01")
