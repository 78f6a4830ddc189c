"""Over plain HTTP against a launched app: nothing outside the app's thumbnails leaves the server, uploads are
bounded, bombs are refused without the memory jumping, and the server keeps answering."""

from __future__ import annotations

import json
import struct
import urllib.parse
import zlib
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.ui.conftest import SECRET, free_port


@pytest.fixture(scope="module")
def api(hostile, tmp_path_factory):
    return Client(hostile.app.local_url, verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))


@pytest.fixture(scope="module")
def http(hostile):
    with httpx.Client(base_url=hostile.app.local_url.rstrip("/"), timeout=30) as session:
        yield session


def file_urls(hostile) -> list[str]:
    secret = str(hostile.outside / "secret.txt")
    targets = [
        secret,
        str(hostile.outside / "secret.jpg"),
        str(hostile.root / "leak.jpg"),
        str(hostile.root / "leak-dir" / "secret.txt"),
        str(hostile.root / "page.html"),
        str(hostile.root / "evil.svg"),
        str(hostile.root / "fake.jpg"),
        str(hostile.library.directory / "catalog.sqlite"),
        "/etc/passwd",
        f"{hostile.app.clipsearch_service.media.folder}/../../outside/secret.txt",
        f"{hostile.app.clipsearch_service.media.folder}/../photos/page.html",
        "../../../../../../../../etc/passwd",
    ]
    encoded = [urllib.parse.quote(t, safe="") for t in targets]
    double = [urllib.parse.quote(e, safe="") for e in encoded]
    dotted = [t.replace("/", "/./").replace("..", "%2e%2e") for t in targets]
    urls = []
    prefixes = ("/gradio_api/file=", "/file=", "/gradio_api/file/", "/static/", "/assets/",
                "/gradio_api/proxy=")
    for prefix in prefixes:
        for target in targets + encoded + double + dotted:
            urls.append(prefix + target)
    urls += ["/static/../../../../etc/passwd", "/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
             "/gradio_api/file=" + secret.replace("/", "\\"), "/gradio_api/file=file://" + secret]
    return urls


def test_file_routes_never_serve_secrets_originals_or_html(hostile, http):
    for url in file_urls(hostile):
        response = http.get(url)
        assert response.status_code in (400, 403, 404), url
        assert SECRET.encode() not in response.content, url
        assert b"root:x:0:0" not in response.content and b"SQLite format" not in response.content, url


def test_original_photos_are_not_reachable_by_path(hostile, http):
    photos = sorted(hostile.root.iterdir())
    photo = next(p for p in photos if p.name.startswith("scene-") and not p.is_symlink())
    for prefix in ("/gradio_api/file=", "/file=", "/gradio_api/file/"):
        assert http.get(prefix + str(photo)).status_code in (403, 404)


def test_thumbnails_are_served_and_carry_no_metadata(hostile, http):
    service = hostile.app.clipsearch_service
    row = hostile.library.file(hostile.exif_id)
    thumb = service.media.thumbnail(row.id)
    assert thumb.parent.parent == service.media.folder
    response = http.get(f"/gradio_api/file={thumb}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    assert SECRET.encode() not in response.content
    image = Image.open(thumb)
    assert not image.getexif() and "exif" not in image.info and "xmp" not in image.info
    assert image.size == (256, 192)  # the 1024x768 photo at the gallery tile size the app promises (README)


def test_results_never_include_symlinks_html_or_rows_outside_the_roots(hostile, api):
    results = api.predict("a shape", 100, -1.0, api_name="/search")
    found = {r["id"] for r in results}
    assert hostile.swapped_id not in found and hostile.redirected_id not in found
    assert not {"leak.jpg", "fake.jpg", "page.html", "evil.svg"} & {r["name"] for r in results}
    assert all(Path(r["file"]).resolve().is_relative_to(hostile.root.resolve()) for r in results)
    assert hostile.exif_id in found


@pytest.mark.parametrize("which", ["swapped_id", "redirected_id", "missing"])
def test_original_download_refuses_what_lies_outside_the_roots(hostile, api, which):
    file_id = 999_999 if which == "missing" else getattr(hostile, which)
    with pytest.raises(AppError, match="outside the indexed folders|no indexed file"):
        api.predict(file_id, api_name="/original")


def test_preview_of_a_redirected_row_is_refused(hostile):
    from clipsearch.errors import ImageError

    with pytest.raises(ImageError, match="outside the indexed folders"):
        hostile.app.clipsearch_service.preview(hostile.redirected_id)


def test_oversized_upload_is_refused(hostile, http):
    big = b"\xff\xd8" + b"\0" * (1_300_000)
    response = http.post("/gradio_api/upload", files={"files": ("big.jpg", big, "image/jpeg")})
    assert response.status_code == 413


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def claimed_size_png(width: int, height: int) -> bytes:
    """A few hundred bytes that claim a huge RGB picture."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + pixels + png_chunk(b"IEND", b"")


def palette_bomb_png(side: int = 12_000) -> bytes:
    """A real, valid 144-megapixel palette PNG of about 150 KB: every row is zeros."""
    header = struct.pack(">IIBBBBB", side, side, 8, 3, 0, 0, 0)
    compressor, row, parts = zlib.compressobj(9), b"\0" * (side + 1), []
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"PLTE", b"\0\0\0\xff\xff\xff")
            + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b""))


def test_decompression_bombs_are_refused_without_the_memory_jumping(hostile, api, tmp_path):
    claimed, palette = tmp_path / "claimed.png", tmp_path / "palette.png"
    claimed.write_bytes(claimed_size_png(20_000, 20_000))
    palette.write_bytes(palette_bomb_png())
    assert palette.stat().st_size < 1_000_000  # under the upload limit: the decoder's guard must stop it
    before = rss_mb()
    for bomb in (claimed, palette):
        with pytest.raises(AppError, match="too many pixels"):
            api.predict(handle_file(str(bomb)), "", api_name="/search_image")
    assert rss_mb() - before < 100  # decoding either would need 400 MB or more


def test_server_keeps_answering_after_bad_requests(hostile, http, api):
    for body in (b"{", b"[]", b'{"data": "x"}', b'{"data": [null, null, null]}'):
        response = http.post("/gradio_api/call/search", content=body,
                             headers={"content-type": "application/json"})
        assert response.status_code < 500 and SECRET.encode() not in response.content
    junk = http.post("/gradio_api/upload", content=b"junk", headers={"content-type": "text/plain"})
    assert junk.status_code == 400
    assert api.predict("a shape", 3, -1.0, api_name="/search")


def test_errors_are_escaped_not_rendered_as_html(hostile, api):
    with pytest.raises(AppError) as caught:
        api.predict("a shape", 3, -1.0, "<img src=x onerror=alert(1)>", api_name="/search")
    assert "<img" not in str(caught.value) and "&lt;img" in str(caught.value)


def test_a_password_guards_the_app_and_its_api(scenes_library, tmp_path):
    from ui.app import AppSettings, launch

    app = launch(scenes_library, port=free_port(), password="s3cret", prevent_thread_lock=True, quiet=True,
                 settings=AppSettings(thumbs_dir=str(tmp_path / "thumbs")))
    try:
        base = app.local_url.rstrip("/")
        assert httpx.get(f"{base}/gradio_api/info").status_code == 401
        assert httpx.post(f"{base}/gradio_api/call/search", json={"data": ["red"]}).status_code == 401
        with httpx.Client(base_url=base) as session:  # the README's curl recipe: log in, keep the cookie
            assert session.post("/login", data={"username": "me", "password": "wrong"}).status_code >= 400
            assert session.post("/login", data={"username": "me", "password": "s3cret"}).status_code == 200
            assert session.get("/gradio_api/info").status_code == 200
        with pytest.raises(Exception):  # noqa: B017  (gradio_client's error type for a refused login varies)
            Client(app.local_url, verbose=False, auth=("anyone", "wrong"))
        assert Client(app.local_url, verbose=False, auth=("anyone", "s3cret")).predict("red circle", 1, -1.0,
                                                                                       api_name="/search")
    finally:
        app.close()


def browse_over_http(http, *data) -> tuple[str, object]:
    """POST the inputs of /browse, then read its result stream: (event, data)."""
    call = http.post("/gradio_api/call/browse", json={"data": list(data)})
    assert call.status_code == 200, call.text
    stream = http.get(f"/gradio_api/call/browse/{call.json()['event_id']}").text
    event = next(line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("event: "))
    payload = next(line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("data: "))
    return event, json.loads(payload)


def test_browse_lists_only_checked_files_by_id_with_thumbnails_the_app_made(hostile, http):
    event, data = browse_over_http(http, "", "", "", "name", "", 0, 100)
    assert event == "complete"
    page = data[0]
    found = {r["id"] for r in page["results"]}
    assert hostile.swapped_id not in found and hostile.redirected_id not in found and hostile.exif_id in found
    assert page["not_shown"] == 2  # the symlink planted after indexing and the row pointing outside
    assert not {"leak.jpg", "fake.jpg", "page.html", "evil.svg"} & {r["name"] for r in page["results"]}
    thumbs = hostile.app.clipsearch_service.media.folder
    for result in page["results"]:
        assert Path(result["file"]).resolve().is_relative_to(hostile.root.resolve())
        url = result["thumbnail"]
        assert Path(urllib.parse.unquote(url.split("=", 1)[1])).resolve().parent.parent == thumbs.resolve()
        response = http.get(url)
        assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
        assert SECRET.encode() not in response.content
    assert SECRET not in json.dumps(page)


@pytest.mark.parametrize(
    "folder",
    ["/etc", "{outside}", "{root}/../outside", "{root}/leak-dir", "../../..", "{root}/leak.jpg"],
)
def test_browse_never_opens_a_folder_outside_the_indexed_ones(hostile, http, folder):
    folder = folder.format(root=hostile.root, outside=hostile.outside)
    event, data = browse_over_http(http, folder, "", "", "newest", "", 0, 10)
    assert event == "error" and SECRET not in json.dumps(data)


@pytest.mark.parametrize(
    "inputs",
    [
        ("", "", "", "score", "/etc/passwd.jpg", 0, 10),  # a path in the words is refused, never read
        ("", "", "", "score", str(Path("/tmp") / "secret.png"), 0, 10),
        ("", "", "", "newest", "", -1, 10),
        ("", "", "", "newest", "", 0, 10**9),
        ("", "", "", "'; DROP TABLE files; --", "", 0, 10),
        ("", "<script>", "", "newest", "", 0, 10),
        (None, None, None, None, None, None, None),
    ],
)
def test_bad_browse_calls_are_refused_and_the_server_keeps_answering(hostile, http, api, inputs):
    event, data = browse_over_http(http, *inputs)
    assert (event == "error") == (inputs[0] is not None)  # all-None means every default: a valid first page
    assert SECRET not in json.dumps(data) and "<script>" not in json.dumps(data)
    assert api.predict("", "", "", "newest", "", 0, 3, api_name="/browse")["results"]
