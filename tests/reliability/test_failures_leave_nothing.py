"""Failures that leave nothing behind: retrying passing skips, reasons a person understands, failed first runs.

Plumbing only: the deterministic HashEmbedder stands in for the model.
"""

from __future__ import annotations

import errno
import io
import os
import sys

import pytest
from PIL import Image

from clipsearch import ClipsearchError, IndexOptions, Library, ModelError, ModelSpec
from clipsearch.imaging import decode
from clipsearch.ingest import workers
from tests.reliability.conftest import HASH_SPEC, catalog_paths
from tests.reliability.hostile import crash_on_marked, encoded, hang_on_marked, picture


def outcome(library) -> dict[str, tuple[str, str | None]]:
    return {os.path.basename(os.fsdecode(p)): v for p, v in catalog_paths(library).items()}


def test_retry_skipped_embeds_again_only_files_skipped_for_a_timeout_a_crash_or_a_read_error(
        hash_library, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(["good-1.png", "good-2.png", "crash.png"]):
        (photos / name).write_bytes(encoded(picture(i), "PNG"))
    (photos / "broken.jpg").write_bytes(b"just some text, not a picture\n")
    library = hash_library()
    embedder = library.embedder
    library.index([photos], IndexOptions(workers=1, prepare=crash_on_marked))  # the decoder dies on crash.png
    (photos / "hang.png").write_bytes(encoded(picture(7), "PNG"))
    library.index([photos], IndexOptions(workers=1, file_timeout=1.5, prepare=hang_on_marked))
    (photos / "unreadable.png").write_bytes(encoded(picture(8), "PNG"))
    real_read = workers.read_regular_file

    def flaky_disk(file_stat, max_bytes):
        if file_stat.path.endswith("unreadable.png"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_read(file_stat, max_bytes)

    with monkeypatch.context() as patch:
        patch.setattr(workers, "read_regular_file", flaky_disk)
        library.index([photos], IndexOptions(workers=0))
    rows = outcome(library)
    assert rows["crash.png"] == ("skipped", "the image decoder crashed on this file")
    assert rows["hang.png"][0] == "skipped" and "longer than 1.5 s" in rows["hang.png"][1]
    assert rows["unreadable.png"] == ("skipped", "could not be read: input/output error")
    assert rows["broken.jpg"] == ("skipped", "not a readable image: it is a text file")

    calls = embedder.calls
    plain = library.index([photos], IndexOptions(workers=1))  # an ordinary rerun leaves skips alone
    assert plain.indexed == 0 and embedder.calls == calls and outcome(library) == rows

    report = library.index([photos], IndexOptions(workers=1, retry_skipped=True))
    assert report.indexed == 3 and embedder.calls == calls + 3  # the good files were not touched again
    rows = outcome(library)
    assert {n for n, (status, _) in rows.items() if status == "ok"} == {
        "good-1.png", "good-2.png", "crash.png", "hang.png", "unreadable.png"}
    assert rows["broken.jpg"] == ("skipped", "not a readable image: it is a text file")
    assert library.index([photos], IndexOptions(workers=1, retry_skipped=True)).indexed == 0


def heic_bytes() -> bytes:
    return encoded(picture(3), "HEIF")  # tests.reliability.hostile registered pillow-heif (the heic extra)


def test_undecodable_files_get_reasons_a_person_understands_even_without_heic_support(
        hash_library, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "photo.heic").write_bytes(heic_bytes())
    (photos / "notes.jpg").write_bytes(b"shopping list: bread, milk\n")
    (photos / "page.png").write_bytes(b"<!DOCTYPE html><html><body>hi</body></html>")
    (photos / "drawing.webp").write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"/>')
    (photos / "noise.gif").write_bytes(bytes(range(256)) * 4)
    # A Pillow without pillow-heif: Pillow has no HEIF opener until pillow-heif registers one.
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    monkeypatch.delitem(Image.OPEN, "HEIF", raising=False)
    monkeypatch.setattr(decode, "_open_formats_cache", None)
    library = hash_library()
    report = library.index([photos], IndexOptions(workers=0))  # in this process, where the patch holds
    reasons = {os.path.basename(p): r for p, r in report.skipped}
    assert reasons == {
        "photo.heic": "not a readable image: a HEIC/HEIF photo, which needs pillow-heif: "
                      "pip install 'clipsearch[heic]'",
        "notes.jpg": "not a readable image: it is a text file",
        "page.png": "not a readable image: it is an HTML page",
        "drawing.webp": "not a readable image: it is an SVG drawing",
        "noise.gif": "not a readable image: unknown or damaged format",
    }
    assert [r for _, r in library.status().skipped] == [reasons[n] for n in sorted(reasons)]


def test_with_heic_support_a_heic_photo_is_indexed_and_a_damaged_one_is_named(hash_library, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    data = heic_bytes()
    (photos / "photo.heic").write_bytes(data)
    (photos / "damaged.heic").write_bytes(data[:40])
    report = hash_library().index([photos], IndexOptions(workers=0))
    assert report.indexed == 1
    (path, reason), = report.skipped
    assert path.endswith("damaged.heic") and "HEIF" not in reason.replace("HEIC/HEIF", "")


@pytest.mark.parametrize("error", [KeyError("HEIF"), IndexError("tuple index out of range"), TypeError("x")])
def test_decoder_internals_never_reach_the_reason(error, monkeypatch):
    def broken(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(decode.Image, "open", broken)
    with pytest.raises(decode.ImageError) as caught:
        decode.open_image(io.BytesIO(b"whatever"))
    assert str(caught.value) == "corrupt or truncated image (the decoder could not make sense of it)"


def test_a_first_run_that_fails_leaves_no_catalog_and_no_index_folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(encoded(picture(1), "PNG"))
    (photos / "broken.jpg").write_bytes(b"text")  # a skip is recorded before the model is needed
    unloadable = ModelSpec.parse("ViT-B-32", None, str(tmp_path / "missing-weights.safetensors"))
    library = Library.open(tmp_path / "index", model=unloadable, create=True)
    with pytest.raises(ModelError):
        library.index([photos], IndexOptions(workers=0))
    assert not (tmp_path / "index").exists()

    library = Library.open(tmp_path / "index", model=HASH_SPEC, create=True)
    with pytest.raises(ClipsearchError, match="not a folder"):
        library.index([tmp_path / "nowhere"])
    assert not (tmp_path / "index").exists()


def test_a_failed_run_after_a_first_good_one_keeps_the_index(hash_library, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(encoded(picture(1), "PNG"))
    library = hash_library()
    library.index([photos], IndexOptions(workers=0))
    with pytest.raises(ClipsearchError, match="not a folder"):
        library.index([tmp_path / "nowhere"])
    assert outcome(library)["a.png"][0] == "ok" and library.status().files == 1
