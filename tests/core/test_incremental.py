"""Index runs bring the catalog up to date: new, changed, moved and deleted files; a second model is refused.

Plumbing tests: they use the deterministic HashEmbedder, which counts how many images it encoded.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from clipsearch import IndexStoreError, Library, ModelMismatchError, ModelSpec
from tests.conftest import HashEmbedder, all_vectors

HASH_SPEC = ModelSpec("hash-test", "none")


def make_photos(folder, count=6):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        pixels = rng.integers(0, 255, size=(48 + i, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo-{i}.jpg", quality=90)
    return folder


@pytest.fixture
def photos(tmp_path):
    return make_photos(tmp_path / "photos")


@pytest.fixture
def library(tmp_path):
    lib = Library.open(tmp_path / "index", model=HASH_SPEC, create=True)
    lib.use_embedder(HashEmbedder(HASH_SPEC))
    yield lib
    lib.close()


def paths_in(library):
    ids, _ = all_vectors(library)
    return sorted(os.path.basename(library.file(int(i)).path) for i in ids)


def test_first_run_indexes_every_image(library, photos):
    report = library.index([photos])
    assert report.indexed == 6 and report.skipped == []
    assert library.status().files == 6
    assert paths_in(library) == [f"photo-{i}.jpg" for i in range(6)]


def test_rerun_skips_unchanged_files(library, photos):
    library.index([photos])
    embedder = library.embedder
    calls = embedder.calls
    report = library.index([photos])
    assert (report.indexed, report.unchanged, report.removed, report.moved) == (0, 6, 0, 0)
    assert embedder.calls == calls


def test_rerun_without_paths_refreshes_known_roots(library, photos):
    library.index([photos])
    make_photos(photos / "new", 2)
    report = library.index()
    assert report.indexed == 2 and report.unchanged == 6


def test_modified_file_is_reembedded(library, photos):
    library.index([photos])
    target = photos / "photo-2.jpg"
    old_id = next(h.id for h in library.search_vector(library.vector_of(3), top_k=6) if h.path == str(target))
    old_vector = library.vector_of(old_id)
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(target)
    calls = library.embedder.calls
    report = library.index([photos])
    assert report.indexed == 1 and report.unchanged == 5
    assert library.embedder.calls == calls + 1
    assert not np.allclose(library.vector_of(old_id), old_vector)


def test_deleted_file_disappears_from_results(library, photos):
    library.index([photos])
    os.remove(photos / "photo-4.jpg")
    report = library.index([photos])
    assert report.removed == 1
    assert "photo-4.jpg" not in paths_in(library)
    hits = library.search("anything", top_k=10)
    assert len(hits) == 5 and all(not h.path.endswith("photo-4.jpg") for h in hits)


def test_moved_file_keeps_its_vector_without_reembedding(library, photos):
    library.index([photos])
    before = {os.path.basename(library.file(int(i)).path): v for i, v in zip(*all_vectors(library))}
    (photos / "sub").mkdir()
    os.rename(photos / "photo-1.jpg", photos / "sub" / "renamed.jpg")
    calls = library.embedder.calls
    report = library.index([photos])
    assert (report.moved, report.indexed, report.removed) == (1, 0, 0)
    assert library.embedder.calls == calls
    after = {os.path.basename(library.file(int(i)).path): v for i, v in zip(*all_vectors(library))}
    np.testing.assert_array_equal(after["renamed.jpg"], before["photo-1.jpg"])


def test_copied_then_deleted_file_is_recognised_by_content(library, photos):
    library.index([photos])
    shutil.copy2(photos / "photo-3.jpg", photos / "copy.jpg")  # new inode: only the content digest matches
    os.remove(photos / "photo-3.jpg")
    calls = library.embedder.calls
    report = library.index([photos])
    assert report.moved == 1 and library.embedder.calls == calls


def test_second_model_on_same_index_is_refused(library, photos, tmp_path):
    library.index([photos])
    library.close()
    with pytest.raises(ModelMismatchError, match="cannot be mixed"):
        Library.open(tmp_path / "index", model=ModelSpec.parse("clipsearch-tiny"))


def test_index_remembers_its_model(library, photos, tmp_path):
    library.index([photos])
    library.close()
    reopened = Library.open(tmp_path / "index")
    assert reopened.model == HASH_SPEC
    reopened.close()


def test_missing_root_keeps_its_files(library, photos, tmp_path):
    library.index([photos])
    shutil.move(photos, tmp_path / "elsewhere")  # the drive is "unplugged"
    report = library.index()
    assert report.missing_roots == [str(photos)] and report.removed == 0
    assert library.status().files == 6


def test_opening_a_missing_index_says_how_to_create_one(tmp_path):
    with pytest.raises(IndexStoreError, match="clipsearch index"):
        Library.open(tmp_path / "nothing-here")


def test_corrupt_file_is_skipped_with_a_reason_and_the_run_goes_on(library, photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "notes.png").write_text("<html>hello</html>")
    report = library.index([photos])
    assert report.indexed == 6
    reasons = dict(report.skipped)
    assert set(os.path.basename(p) for p in reasons) == {"broken.jpg", "notes.png"}
    assert all(reasons.values())
    assert {os.path.basename(p) for p, _ in library.status().skipped} == {"broken.jpg", "notes.png"}


def test_index_file_is_rebuilt_when_missing_or_corrupt(library, photos):
    library.index([photos])
    vectors_file = library.directory / "vectors.faiss"
    assert vectors_file.is_file()
    expected = [h.id for h in library.search("query", top_k=6)]
    for damage in (lambda: vectors_file.unlink(), lambda: vectors_file.write_bytes(b"garbage")):
        damage()
        fresh = Library.open(library.directory)
        fresh.use_embedder(library.embedder)
        assert [h.id for h in fresh.search("query", top_k=6)] == expected
        fresh.close()


def test_date_filters_far_in_the_future_do_not_overflow(library, photos):
    from clipsearch import SearchFilter

    library.index([photos])
    assert len(library.search("x", top_k=10, where=SearchFilter(since=0, until=1e12))) == 6
    assert library.search("x", top_k=10, where=SearchFilter(since=1e12)) == []


def test_rerun_over_an_unchanged_library_never_loads_the_model(tmp_path, photos):
    first = Library.open(tmp_path / "index", model=HASH_SPEC, create=True)
    first.use_embedder(HashEmbedder(HASH_SPEC))
    first.index([photos])
    first.close()
    again = Library.open(tmp_path / "index")  # no embedder handed in: loading "hash-test" would fail
    report = again.index()
    assert report.unchanged == 6 and not again.model_is_loaded
    again.close()


def test_an_index_without_vectors_may_switch_model(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    first = Library.open(tmp_path / "index", model=ModelSpec.parse("ViT-B-32"), create=True)
    first.index([empty])  # nothing to embed: the model is never loaded, only recorded
    first.close()
    switched = Library.open(tmp_path / "index", model=HASH_SPEC)
    assert switched.model == HASH_SPEC
    switched.close()
