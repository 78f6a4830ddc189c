"""A photo's date is when it was taken: EXIF ``DateTimeOriginal``, read at index time, else the file's modification
time. Browsing, the search filters of the API and the CLI all use it."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import ExifTags, Image

from clipsearch import Library, SearchFilter
from clipsearch.cli import main
from clipsearch.imaging.taken import date_taken

CAMERA = dt.datetime(2019, 3, 4, 10, 0, 0)  # local time, as a camera without a zone writes it
ZONED = dt.datetime(2019, 3, 6, 12, 0, 0, tzinfo=dt.timezone.utc)  # a camera that wrote OffsetTimeOriginal
PLAIN_MTIME = dt.datetime(2020, 1, 1, 12, 0, 0).timestamp()
ZEROS_MTIME = dt.datetime(2021, 6, 1, 12, 0, 0).timestamp()


def photo(path: Path, colour, taken: str | None = None, offset: str | None = None) -> Path:
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    if offset is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.OffsetTimeOriginal] = offset
    Image.new("RGB", (64, 48), colour).save(path, exif=exif)
    return path


@pytest.fixture
def dated(tmp_path, make_library):
    """Four photos: EXIF local time, EXIF with a zone, none (an old mtime), and a camera's unset clock."""
    photos = tmp_path / "photos"
    photos.mkdir()
    photo(photos / "camera.jpg", (200, 30, 30), CAMERA.strftime("%Y:%m:%d %H:%M:%S"))
    photo(photos / "zoned.jpg", (30, 200, 30), "2019:03:06 14:00:00", "+02:00")
    photo(photos / "plain.png", (30, 30, 200))
    photo(photos / "zeros.jpg", (200, 200, 30), "0000:00:00 00:00:00")
    os.utime(photos / "plain.png", (PLAIN_MTIME, PLAIN_MTIME))
    os.utime(photos / "zeros.jpg", (ZEROS_MTIME, ZEROS_MTIME))
    library = make_library()  # the bundled model: the CLI below loads the index's model itself
    library.index([photos])
    yield photos, library
    library.close()


def taken_of(library: Library) -> dict[str, float]:
    return {Path(h.path).name: h.taken for h in library.browse(limit=100).hits}


def test_the_exif_date_is_read_at_index_time_and_the_mtime_stands_in_without_one(dated):
    _, library = dated
    assert taken_of(library) == {
        "camera.jpg": CAMERA.timestamp(),
        "zoned.jpg": ZONED.timestamp(),
        "plain.png": PLAIN_MTIME,
        "zeros.jpg": ZEROS_MTIME,
    }


def test_browsing_by_date_orders_by_the_date_taken_not_the_file_date(dated):
    _, library = dated
    newest = [Path(h.path).name for h in library.browse(order="newest").hits]
    assert newest == ["zeros.jpg", "plain.png", "zoned.jpg", "camera.jpg"]
    assert [Path(h.path).name for h in library.browse(order="oldest").hits] == newest[::-1]


def test_date_filters_of_search_browse_and_the_cli_use_the_date_taken(dated):
    _, library = dated
    day = SearchFilter.dated(since="2019-03-04", until="2019-03-04")
    assert [Path(h.path).name for h in library.search("anything", top_k=10, where=day)] == ["camera.jpg"]
    march = SearchFilter.dated(since="2019-03-01", until="2019-03-31")
    assert {Path(h.path).name for h in library.browse(march).hits} == {"camera.jpg", "zoned.jpg"}
    cli = CliRunner().invoke(main, ["search", "anything", "--index", str(library.directory), "--since",
                                    "2019-03-01", "--until", "2019-03-31", "--json"])
    assert cli.exit_code == 0, cli.output
    found = json.loads(cli.stdout)
    assert {Path(h["path"]).name for h in found} == {"camera.jpg", "zoned.jpg"}
    assert {h["taken"] for h in found} == {CAMERA.timestamp(), ZONED.timestamp()}


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_date_that_is_none_is_a_usage_error_before_anything_loads(dated, option):
    _, library = dated
    cli = CliRunner().invoke(main, ["search", "x", "--index", str(library.directory), option, "last tuesday"])
    assert cli.exit_code == 2
    assert f"Invalid value for '{option}'" in cli.output and "not a date like 2024-05-31" in cli.output


def test_a_touched_file_keeps_its_exif_date_and_one_without_follows_its_mtime(dated):
    photos, library = dated
    later = dt.datetime(2023, 7, 1, 8, 0, 0).timestamp()
    for name in ("camera.jpg", "plain.png"):
        os.utime(photos / name, (later, later))
    report = library.index()
    assert (report.indexed, report.unchanged) == (0, 4)  # same bytes: nothing re-embedded
    taken = taken_of(library)
    assert taken["camera.jpg"] == CAMERA.timestamp() and taken["plain.png"] == later


def test_a_rewritten_photo_takes_its_new_exif_date(dated):
    photos, library = dated
    photo(photos / "camera.jpg", (10, 10, 10), "2024:12:24 18:00:00")
    library.index()
    assert taken_of(library)["camera.jpg"] == dt.datetime(2024, 12, 24, 18, 0, 0).timestamp()


@pytest.mark.parametrize("stamp", ["", "2019:13:45 10:00:00", "garbage", "1700:01:01 00:00:00", "2019-03-04 10:00:00"])
def test_an_exif_date_that_is_no_date_gives_none(tmp_path, stamp):
    path = photo(tmp_path / "odd.jpg", (1, 2, 3), stamp)
    assert date_taken(path.read_bytes()) is None


def test_a_file_that_is_no_image_has_no_date():
    assert date_taken(b"<html>not a picture</html>") is None
    assert date_taken(b"") is None
