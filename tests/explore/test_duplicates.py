"""Near-duplicates: planted copies are found, nothing else is, and each group keeps its best photo."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from clipsearch.explore.duplicates import find_duplicates, order_members, picture_match, picture_signature


@pytest.fixture(scope="module")
def groups(planted):
    return planted.library.duplicates()


def pairs_of(groups) -> set[frozenset[str]]:
    return {frozenset(pair) for g in groups for pair in itertools.combinations([Path(p).name for p in g.paths], 2)}


def test_planted_copies_are_found_with_precision_and_recall_of_at_least_095(planted, groups):
    found = pairs_of(groups)
    expected = {frozenset((copy, original)) for copy, (original, _) in planted.copies.items()}
    hits = len(found & expected)
    print(f"planted copies: recall {hits / len(expected):.3f}, precision {hits / len(found):.3f} over pairs")
    assert hits / len(expected) >= 0.95, sorted(map(sorted, expected - found))
    assert hits / len(found) >= 0.95, sorted(map(sorted, found - expected))


def test_every_kind_of_copy_is_found(planted, groups):
    found = pairs_of(groups)
    missed = [kind for copy, (original, kind) in planted.copies.items() if frozenset((copy, original)) not in found]
    assert missed == []


def test_exact_copies_are_grouped_even_at_the_strictest_threshold(planted):
    found = pairs_of(planted.library.duplicates(threshold=1.0, check_pixels=False))
    exact = {frozenset((copy, original)) for copy, (original, kind) in planted.copies.items() if kind == "exact"}
    assert exact <= found


def test_the_pixel_check_removes_lookalike_scenes_that_the_vectors_propose(planted, groups):
    """With the tiny model, different scenes over the same background reach cosine 0.99: the pixel check is what
    keeps them apart (vectors alone give many more pairs at the default threshold)."""
    confirmed = pairs_of(groups)
    proposed = pairs_of(planted.library.duplicates(check_pixels=False))
    assert confirmed <= proposed and len(proposed) > len(confirmed)


def test_the_keeper_has_the_most_pixels(planted, groups):
    resized = {copy for copy, (_, kind) in planted.copies.items() if kind == "resized"}
    with_resized = [g for g in groups if resized & {Path(p).name for p in g.paths}]
    assert with_resized
    for group in with_resized:
        assert Path(group.keep).name.startswith("scene-")  # the original, twice the size of its copy
        assert group.keep == group.paths[0] and group.keep_id == group.ids[0]


def test_groups_come_most_similar_first_with_their_lowest_similarity(planted, groups):
    sims = [g.similarity for g in groups]
    assert sims == sorted(sims, reverse=True) and all(0 < s <= 1 for s in sims)
    ids, vectors = _all(planted.library)
    row = {int(i): n for n, i in enumerate(ids)}
    for group in groups:
        block = vectors[[row[i] for i in group.ids]]
        assert abs(group.similarity - float((block @ block.T).min())) < 1e-5


def test_keeper_rule_breaks_ties_by_file_size_then_exif_fields():
    facts = {1: (100, 50), 2: (100, 80), 3: (90, 999)}
    assert order_members([1, 2, 3], facts.get, lambda m: 0)[0] == 2  # same pixels: the larger file
    tied = {1: (100, 50), 2: (100, 50)}
    exif = {1: 3, 2: 12}
    assert order_members([1, 2], tied.get, exif.get) == [2, 1]  # same pixels and bytes: more EXIF fields
    assert order_members([1, 2], tied.get, lambda m: 0) == [1, 2]  # then the older id


def test_exif_fields_are_read_only_to_break_a_tie():
    read = []
    order_members([1, 2], {1: (10, 1), 2: (20, 1)}.get, lambda m: read.append(m) or 0)
    assert read == []


def test_transitive_pairs_form_one_group():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([np.cos(0.3), np.sin(0.3), 0.0])
    c = np.array([np.cos(0.6), np.sin(0.6), 0.0])
    far = np.array([0.0, 0.0, 1.0])
    vectors = np.stack([a, b, c, far]).astype(np.float32)
    groups = find_duplicates(np.array([10, 11, 12, 13]), vectors, threshold=0.95)
    assert groups == [[10, 11, 12]]  # a~b and b~c (cos 0.955), a and c only through b (cos 0.825)


def test_the_pixel_check_tells_a_crop_from_a_different_scene(planted):
    from PIL import Image

    copy, (original, _) = next((c, v) for c, v in planted.copies.items() if v[1] == "cropped")
    other = next(name for name in planted.captions if name != original)
    sig = {name: picture_signature(Image.open(planted.folder / name)) for name in (copy, original, other)}
    assert picture_match(sig[copy], sig[original]) >= 0.975 > picture_match(sig[copy], sig[other])


def _all(library):
    chunks = list(library.iter_vectors())
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])
