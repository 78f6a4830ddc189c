"""The Explore routes over plain HTTP against the hostile library (tests/ui/conftest.py): ``/map``, ``/themes``,
``/duplicates``, ``/outliers`` and the map's thumbnail lookup answer with catalog ids and app-made thumbnails only,
leave out the rows booby-trapped after indexing, open no path a request names, and refuse other origins."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import httpx
import pytest

from tests.ui.conftest import SECRET


@pytest.fixture(scope="module")
def http(hostile):
    with httpx.Client(base_url=hostile.app.local_url.rstrip("/"), timeout=60) as session:
        yield session


def call(http, name: str, *data) -> tuple[str, object]:
    """POST the inputs of a named endpoint, then read its result stream: (event, data)."""
    started = http.post(f"/gradio_api/call/{name}", json={"data": list(data)})
    assert started.status_code == 200, started.text
    stream = http.get(f"/gradio_api/call/{name}/{started.json()['event_id']}").text
    event = next(line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("event: "))
    payload = next(line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("data: "))
    return event, json.loads(payload)


def thumbnails_in(answer) -> list[str]:
    found = []

    def walk(value):
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "thumbnail" and inner:
                    found.append(inner)
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(answer)
    return found


def ids_in(answer) -> set[int]:
    text = json.dumps(answer)
    return {int(n) for n in __import__("re").findall(r'"(?:id|keep_id|representative_id)": (\d+)', text)}


@pytest.mark.parametrize(("name", "inputs"), [("map", ("",)), ("themes", ("",)), ("duplicates", (0.9,)),
                                              ("outliers", (50,))])
def test_explore_endpoints_answer_ids_and_app_made_thumbnails_only(hostile, http, name, inputs):
    event, data = call(http, name, *inputs)
    assert event == "complete", data
    answer = data[0]
    assert SECRET not in json.dumps(answer) and "secret.jpg" not in json.dumps(answer)
    listed = ids_in(answer) | {i for theme in (answer if name == "themes" else []) for i in theme["ids"]}
    assert hostile.redirected_id not in listed
    if name in ("duplicates", "outliers"):
        assert hostile.swapped_id not in ids_in(answer)  # no thumbnail can be made of it: never listed
    thumbs = hostile.app.clipsearch_service.media.folder.resolve()
    for url in thumbnails_in(answer):
        path = Path(urllib.parse.unquote(url.split("=", 1)[1])).resolve()
        assert url.startswith("/gradio_api/file=") and path.parent.parent == thumbs
        response = http.get(url)
        assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
        assert SECRET.encode() not in response.content


def test_the_outliers_of_the_hostile_library_leave_out_what_cannot_be_shown(hostile, http):
    event, data = call(http, "outliers", 1000)
    listed = {o["id"] for o in data[0]}
    everything = {o.id for o in hostile.library.outliers()}
    assert listed == everything - {hostile.swapped_id, hostile.redirected_id}


@pytest.mark.parametrize(
    ("name", "inputs"),
    [
        ("duplicates", ("/etc/passwd",)),
        ("duplicates", ("../../outside/secret.txt",)),
        ("outliers", ("{outside}/secret.txt",)),
        ("outliers", (-3,)),
        ("themes", ("\n".join(f"word{n}" for n in range(2001)),)),
    ],
)
def test_bad_explore_calls_are_refused_and_open_nothing(hostile, http, name, inputs):
    inputs = tuple(i.format(outside=hostile.outside) if isinstance(i, str) else i for i in inputs)
    event, data = call(http, name, *inputs)
    assert event == "error" and SECRET not in json.dumps(data)
    assert call(http, "outliers", 3)[0] == "complete"  # and the server keeps answering


def test_labels_are_only_words_and_come_back_as_data(hostile, http):
    labels = [f"{hostile.outside}/secret.txt", "<img src=x onerror=alert(1)>", "a shape"]
    event, data = call(http, "themes", "\n".join(labels))
    assert event == "complete" and {t["name"] for t in data[0]} <= set(labels)
    assert SECRET not in json.dumps(data)


def component_server(hostile, http, ids, headers=None):
    """The map's hover and zoom lookup (a gr.HTML server function), as the page calls it."""
    config = http.get("/config").json()
    component = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "explore-map")
    body = {"data": ids, "component_id": component, "fn_name": "thumbnails", "session_hash": "explore-security"}
    return http.post("/gradio_api/component_server/", json=body, headers=headers or {})


def test_the_map_thumbnail_lookup_gives_app_made_thumbnails_of_checked_rows_only(hostile, http):
    good = next(h.id for h in hostile.library.browse(order="name", limit=100).hits
                if h.id not in (hostile.swapped_id, hostile.redirected_id))
    response = component_server(hostile, http, [good, hostile.swapped_id, hostile.redirected_id, 999_999])
    assert response.status_code == 200, response.text
    found = response.json()
    assert list(found) == [str(good)] and http.get(found[str(good)]).headers["content-type"] == "image/webp"
    for junk in (["/etc/passwd"], [str(hostile.outside / "secret.txt")], "../../etc/passwd", {"a": 1}):
        response = component_server(hostile, http, junk)
        assert response.status_code == 200 and response.json() == {} and SECRET not in response.text


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://192.168.1.20:7860"])
def test_other_origins_cannot_call_the_explore_routes(hostile, http, origin):
    for name in ("map", "themes", "duplicates", "outliers"):
        response = http.post(f"/gradio_api/call/{name}", json={"data": [""]}, headers={"Origin": origin})
        assert response.status_code == 403 and "access-control-allow-origin" not in response.headers, name
    response = component_server(hostile, http, [1], {"Origin": origin})
    assert response.status_code == 403
