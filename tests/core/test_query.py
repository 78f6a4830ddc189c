"""Query syntax: words, image paths, + and -, weights; bad queries get a clear QueryError."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipsearch import QueryError, Term, parse_query
from clipsearch.search.query import combine


def test_words_with_operators_become_signed_terms():
    assert parse_query(["beach", "+", "sunset", "-", "people"]) == [
        Term("text", "beach", 1.0), Term("text", "sunset", 1.0), Term("text", "people", -1.0)]


def test_one_string_parses_like_separate_tokens():
    assert parse_query("beach + sunset - people") == parse_query(["beach", "+", "sunset", "-", "people"])


def test_unquoted_words_read_as_one_phrase():
    assert parse_query(["red", "car"]) == [Term("text", "red car", 1.0)]


def test_hyphenated_words_are_not_operators():
    assert parse_query("a black-and-white photo") == [Term("text", "a black-and-white photo", 1.0)]


def test_weights_before_a_colon(tmp_path):
    ref = tmp_path / "ref.jpg"
    Image.new("RGB", (8, 8)).save(ref)
    terms = parse_query(['2:"red car"', str(ref), "-", "0.5:people"])
    assert terms == [Term("text", "red car", 2.0), Term("image", str(ref), 1.0), Term("text", "people", -0.5)]


def test_image_path_plus_words(tmp_path):
    ref = tmp_path / "my photo - 1.png"  # a file name may itself hold " - "
    Image.new("RGB", (8, 8)).save(ref)
    assert parse_query([str(ref), "+", "at night"]) == [Term("image", str(ref), 1.0), Term("text", "at night", 1.0)]


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ([], "empty"),
        (["+"], "ends with an operator"),
        (["beach", "-"], "ends with an operator"),
        (["beach", "+", "-", "people"], "two operators"),
        (["-", "people"], "positive term"),
        (["./missing-photo.jpg"], "image not found"),
        (['""'], "empty"),
    ],
)
def test_malformed_queries_are_refused_clearly(tokens, message):
    with pytest.raises(QueryError, match=message):
        parse_query(tokens)


def test_combine_is_a_normalised_weighted_sum():
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 3.0], np.float32)
    np.testing.assert_allclose(combine([a, b], [1.0, 1.0]), np.array([1, 1]) / np.sqrt(2), rtol=1e-6)
    with pytest.raises(QueryError, match="cancel"):
        combine([a, a], [1.0, -1.0])


def test_paths_can_be_refused_for_server_side_queries(tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    assert parse_query(f"{secret} + dog", allow_paths=False) == [
        Term("text", str(secret), 1.0), Term("text", "dog", 1.0)]
