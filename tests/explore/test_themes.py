"""Themes: every photo in exactly one, named by a label most of its members' captions use, the same every time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clipsearch import ClipsearchError
from tests.explore.conftest import caption_words


@pytest.fixture(scope="module")
def scene_themes(planted):
    words = caption_words(planted.captions)
    return words, planted.library.themes(labels=words)


def test_every_photo_is_in_exactly_one_theme(planted, scene_themes):
    _, themes = scene_themes
    members = [i for t in themes for i in t.ids]
    indexed = [int(i) for chunk, _ in planted.library.iter_vectors() for i in chunk]
    assert sorted(members) == sorted(indexed) and len(set(members)) == len(members)
    assert all(t.size == len(t.paths) == len(t.ids) for t in themes)


def test_theme_names_agree_with_the_captions_of_at_least_70_percent_of_the_photos(planted, scene_themes):
    """Scored over the generated scenes: a photo agrees when its caption holds its theme's name as a word."""
    words, themes = scene_themes
    agree = total = 0
    for theme in themes:
        assert theme.name in words
        names = [Path(p).name for p in theme.paths if Path(p).name in planted.captions]
        agree += sum(re.search(rf"\b{re.escape(theme.name)}\b", planted.captions[n]) is not None for n in names)
        total += len(names)
    print(f"theme names agree with {agree / total:.2f} of the scenes' captions: {[(t.name, t.size) for t in themes]}")
    assert agree / total >= 0.70, [(t.name, t.size) for t in themes]


def test_the_representative_is_a_member_and_the_most_central_one(planted, scene_themes):
    import numpy as np

    _, themes = scene_themes
    chunks = list(planted.library.iter_vectors())
    ids = np.concatenate([c[0] for c in chunks])
    vectors = np.concatenate([c[1] for c in chunks])
    row = {int(i): n for n, i in enumerate(ids)}
    for theme in themes:
        assert theme.representative_id in theme.ids
        assert theme.representative == theme.paths[theme.ids.index(theme.representative_id)]
        block = vectors[[row[i] for i in theme.ids]]
        mean_similarity = (block @ block.T).mean(axis=1)
        assert theme.ids[int(np.argmax(mean_similarity))] == theme.representative_id


def test_themes_are_the_same_for_the_same_index(planted, scene_themes, own_copy):
    words, themes = scene_themes
    again = own_copy().themes(labels=words)  # another folder: nothing cached, computed afresh
    assert [(t.name, t.ids) for t in again] == [(t.name, t.ids) for t in themes]


def test_a_given_count_of_themes_is_made(planted):
    themes = planted.library.themes(count=5, labels=["red", "blue"])
    assert len(themes) == 5 and {t.name for t in themes} <= {"red", "blue"}


@pytest.mark.parametrize("count", [0, -3, 10_000])
def test_an_impossible_count_is_refused_with_a_clear_message(planted, count):
    with pytest.raises(ClipsearchError, match="themes"):
        planted.library.themes(count=count, labels=["red"])


def test_the_default_vocabulary_is_an_editable_text_file_shipped_with_the_package():
    from clipsearch.explore.labels import DEFAULT_LABELS_FILE, default_labels

    labels = default_labels()
    assert DEFAULT_LABELS_FILE.suffix == ".txt" and len(labels) >= 100
    assert "beach" in labels and not any(label.startswith("#") for label in labels)
