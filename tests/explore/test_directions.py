"""Directions and analogies: `#123` names an indexed photo in a query, with the weights and signs of any term."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from clipsearch import QueryError, Term, parse_query
from clipsearch.cli import main
from clipsearch.search.query import combine


@pytest.mark.parametrize(("query", "expected"), [
    ("#123 - day + night", [Term("file", "123"), Term("text", "day", -1.0), Term("text", "night")]),
    (["#12", "-", "#34", "+", "#56"], [Term("file", "12"), Term("file", "34", -1.0), Term("file", "56")]),
    ("2:#7 - 0.5:red", [Term("file", "7", 2.0), Term("text", "red", -0.5)]),
    ('"#12"', [Term("text", "#12")]),  # quoted: the words themselves
    ("#12a", [Term("text", "#12a")]),
])
def test_hash_and_digits_name_an_indexed_photo(query, expected):
    assert parse_query(query) == expected


def test_ids_are_read_where_paths_are_not_allowed():
    assert parse_query("#5 + snow", allow_paths=False) == [Term("file", "5"), Term("text", "snow")]


def test_an_analogy_between_photos_combines_their_stored_vectors(planted):
    ids = [int(i) for i in next(planted.library.iter_vectors())[0][:3]]
    a, b, c = (planted.library.vector_of(i) for i in ids)
    vector = planted.library.encode_query(f"#{ids[0]} - #{ids[1]} + 0.5:#{ids[2]}")
    assert np.allclose(vector, combine([a, b, c], [1.0, -1.0, 0.5]), atol=1e-6)


def test_a_photo_moved_by_words_uses_the_same_signs_as_words(planted):
    file_id = int(next(planted.library.iter_vectors())[0][0])
    vector = planted.library.encode_query(f"#{file_id} - red + blue")
    texts = planted.library.encode_texts(["red", "blue"])
    assert np.allclose(vector, combine([planted.library.vector_of(file_id), *texts], [1, -1, 1]), atol=1e-6)


def test_more_like_by_id_finds_the_photo_itself_first(planted):
    file_id = int(next(planted.library.iter_vectors())[0][5])
    assert planted.library.search(f"#{file_id}", top_k=1)[0].id == file_id


@pytest.mark.parametrize("query", ["#999999", "#99999999999999999999999"])
def test_an_unknown_id_is_a_clear_query_error(planted, query):
    with pytest.raises(QueryError, match="no indexed"):
        planted.library.search(query)


def test_search_prints_the_ids_it_shows_and_accepts_them_back(planted):
    runner = CliRunner()
    index = str(planted.library.directory)
    first = runner.invoke(main, ["search", "a red circle", "--index", index, "--top", "2"])
    assert first.exit_code == 0, first.output
    shown = first.output.splitlines()[0].split()[1]
    assert shown.startswith("#")
    again = runner.invoke(main, ["search", shown, "+", "0.3:night", "--index", index, "--top", "1", "--json"])
    assert again.exit_code == 0, again.output
    assert f"#{json.loads(again.stdout)[0]['id']}" == shown
