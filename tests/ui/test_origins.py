"""The web app answers only its own pages: raw HTTP with forged Host and Origin headers against every route.

The app is launched in-process on 127.0.0.1, once open and once with a password, with ``photos.lan`` as an
``--allowed-host``. Sending ``Host: photos.lan`` while connecting to 127.0.0.1 is what a LAN browser sends; it
is also the Host header under which Gradio's own CORS layer echoes any Origin with credentials, so every
cross-origin case is tried under it as well as under a loopback name.
"""

from __future__ import annotations

import http.client
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from clipsearch import Library, ModelSpec
from clipsearch.testing import HashEmbedder
from tests.ui.conftest import free_port
from ui.security import HostPolicy, OriginGuard, check_allowed_host, same_origin, split_host_header

ALLOWED = "photos.lan"
PASSWORD = "s3cret-origins"


@dataclass
class Served:
    app: object
    port: int
    password: str | None
    thumbnail: str  # a thumbnail the app made: what the file route really serves

    @property
    def own_hosts(self) -> list[str]:
        return [f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"{ALLOWED}:{self.port}"]


@pytest.fixture(scope="module")
def origins_library(tmp_path_factory) -> Library:
    from clipsearch.world.synthetic import generate_library

    base = tmp_path_factory.mktemp("origins")
    generate_library(base / "photos", 6, 7)
    spec = ModelSpec("hash-test", "none")
    library = Library.open(base / "index", model=spec, create=True)
    library.use_embedder(HashEmbedder(spec))
    library.index([base / "photos"])
    return library


def serve(library: Library, thumbs: Path, password: str | None):
    from ui.app import AppSettings, launch

    port = free_port()
    app = launch(library, port=port, password=password, prevent_thread_lock=True, quiet=True,
                 allowed_hosts=[ALLOWED], settings=AppSettings(thumbs_dir=str(thumbs), min_score=-1.0))
    thumbnail = app.clipsearch_service.search("a photo", None, 1.0, 3, -1.0, "", "", "").results[0].thumbnail
    return Served(app, port, password, thumbnail)


@pytest.fixture(scope="module")
def open_app(origins_library, tmp_path_factory):
    served = serve(origins_library, tmp_path_factory.mktemp("thumbs"), None)
    yield served
    served.app.close()


@pytest.fixture(scope="module")
def locked_app(origins_library, tmp_path_factory):
    served = serve(origins_library, tmp_path_factory.mktemp("thumbs"), PASSWORD)
    yield served
    served.app.close()


@pytest.fixture(params=["open_app", "locked_app"])
def served(request) -> Served:
    """Each test runs against the app without and with a password."""
    return request.getfixturevalue(request.param)


def request(served: Served, method: str, path: str, headers: dict[str, str] | list[tuple[str, str]],
            body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request to 127.0.0.1 with exactly the headers given (no Host is added)."""
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        items = headers.items() if isinstance(headers, dict) else headers
        for name, value in items:
            connection.putheader(name, value)
        if body or method in ("POST", "PUT"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


def refusal(method: str, headers: dict[str, str], body: bytes) -> bool:
    """Our guard's answer (not a route's): its one-line text, no CORS header at all."""
    return not cors_headers(headers) and headers.get("content-type", "").startswith("text/plain") and (
        method == "HEAD" or body.startswith(b"clipsearch: "))


def every_route(served: Served) -> list[tuple[str, str]]:
    """(method, path) of every route the launched app registers, path parameters filled in."""
    found: list[tuple[str, str]] = []

    def walk(routes) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None) or getattr(route, "app", None)
            if getattr(route, "endpoint", None) is None and hasattr(inner, "routes"):
                walk(inner.routes)
                continue
            path = getattr(route, "path", None)
            if path is None:
                continue
            if "{path_or_url" in path:
                path = path.split("{")[0] + served.thumbnail
            path = re.sub(r"\{[^}]+\}", "x", path)
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                found.append((method, path))

    walk(served.app.server_app.router.routes)
    paths = {p for _, p in found}
    for key in ("/", "/config", "/login", "/gradio_api/info", "/gradio_api/upload", "/gradio_api/queue/join",
                "/gradio_api/call/x", "/assets/x", "/static/x"):
        assert key in paths, f"route {key} not found: the route walk no longer sees the whole app"
    assert any(p.startswith("/gradio_api/file=") for p in paths)
    return found


FOREIGN_HOSTS = ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}",
                 "localhost.evil.example:{port}", f"{ALLOWED}.evil.example:{{port}}", "192.168.77.7:{port}",
                 "[::2]:{port}", "127.0.0.2:{port}"]
FOREIGN_ORIGINS = ["http://evil.example", "null", "http://192.168.1.66:{port}", "http://localhost:3000",
                   f"http://{ALLOWED}:1{{port}}", "https://evil.example", "http://evil.example:{port}",
                   "file://", "http://127.0.0.1:{port}.evil.example"]


def test_a_foreign_host_is_refused_on_every_route_before_it_runs(served):
    routes = every_route(served)
    for template in FOREIGN_HOSTS:
        host = template.format(port=served.port)
        for method, path in routes:
            status, headers, body = request(served, method, path, {"Host": host})
            assert status == 421, (host, method, path, status)
            assert refusal(method, headers, body), (host, path)


@pytest.mark.parametrize("headers", [
    [],  # HTTP/1.1 without a Host header
    [("Host", "127.0.0.1"), ("Host", "evil.example")],
    [("Host", "127.0.0.1:notaport")],
    [("Host", "::1")],  # an IPv6 address must be bracketed
    [("Host", "127.0.0.1:99999")],
    [("Host", "evil.example/@127.0.0.1")],
], ids=["none", "two", "bad-port", "bare-ipv6", "port-range", "path"])
def test_a_missing_duplicated_or_malformed_host_header_is_refused(served, headers):
    status, response_headers, body = request(served, "GET", "/config", headers)
    # (the HTTP parser itself turns away a request with no Host at all)
    assert status == 400 and not cors_headers(response_headers) and b"gradio" not in body.lower()


def test_the_loopback_names_and_the_allowed_host_are_answered(served):
    for host in [*served.own_hosts, f"[::1]:{served.port}", ALLOWED.upper() + f":{served.port}"]:
        status, _, body = request(served, "GET", "/", {"Host": host})
        assert status == 200 and b"<html" in body.lower(), host


def test_requests_from_other_origins_are_refused_on_every_route(served):
    routes = every_route(served)
    for host in served.own_hosts:
        for template in FOREIGN_ORIGINS:
            origin = template.format(port=served.port)
            for method, path in routes:
                status, headers, body = request(served, method, path, {"Host": host, "Origin": origin})
                assert status == 403, (host, origin, method, path, status)
                assert refusal(method, headers, body), (host, origin, path)


def test_preflights_from_other_origins_are_refused(served):
    for host in served.own_hosts:
        for template in FOREIGN_ORIGINS:
            origin = template.format(port=served.port)
            for method, path in every_route(served):
                status, headers, _ = request(served, "OPTIONS", path, {
                    "Host": host, "Origin": origin, "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": "content-type, authorization"})
                assert status == 403 and not cors_headers(headers), (host, origin, path)


def test_cross_site_requests_without_an_origin_are_refused_but_a_link_opens_the_app(served):
    host = f"{ALLOWED}:{served.port}"
    image = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    file_route = "/gradio_api/file=" + served.thumbnail
    for site in ("cross-site", "same-site"):
        assert request(served, "GET", file_route, {"Host": host, **image, "Sec-Fetch-Site": site})[0] == 403
    form = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert request(served, "POST", "/gradio_api/call/search", {"Host": host, **form}, b"{}")[0] == 403
    frame = {**form, "Sec-Fetch-Dest": "iframe"}
    assert request(served, "GET", "/", {"Host": host, **frame})[0] == 403
    status, _, page = request(served, "GET", "/", {"Host": host, **form})  # a link from another site
    assert status == 200 and b"<html" in page.lower()
    own = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    status, _, _ = request(served, "GET", file_route, {"Host": host, **own, **login_cookie(served, host)})
    assert status == 200


def login_cookie(served: Served, host: str) -> dict[str, str]:
    """The session cookie of a login from the app's own page (nothing when the app has no password)."""
    if served.password is None:
        return {}
    body = f"username=me&password={served.password}".encode()
    status, headers, _ = request(served, "POST", "/login", {
        "Host": host, "Origin": f"http://{host}", "Content-Type": "application/x-www-form-urlencoded"}, body)
    assert status == 200, status
    return {"Cookie": headers["set-cookie"].split(";")[0]}


def search_over_http(served: Served, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"data": ["a photo", 3, -1.0, "", "", ""]}).encode()
    status, response_headers, answer = request(
        served, "POST", "/gradio_api/call/search", {**headers, "Content-Type": "application/json"}, body)
    if status != 200:
        return status, response_headers, answer
    event = json.loads(answer)["event_id"]
    return request(served, "GET", f"/gradio_api/call/search/{event}", headers)


def test_the_apps_own_origin_may_search_and_gets_cors_for_itself_only(served):
    for host in served.own_hosts:
        own = f"http://{host}"
        headers = {"Host": host, "Origin": own, "Sec-Fetch-Site": "same-origin", **login_cookie(served, host)}
        status, response_headers, stream = search_over_http(served, headers)
        assert status == 200 and b"event: complete" in stream, (host, stream[:200])
        assert response_headers.get("access-control-allow-origin") == own
        for path in ("/config", "/gradio_api/info", "/gradio_api/file=" + served.thumbnail):
            status, response_headers, _ = request(served, "GET", path, headers)
            assert status == 200, (host, path, status)
            assert cors_headers(response_headers).get("access-control-allow-origin") in (own, None)


def test_state_changing_requests_from_another_origin_do_no_work(served):
    host = f"{ALLOWED}:{served.port}"
    upload_dir = Path(served.app.server_app.uploaded_file_dir)
    before = sorted(upload_dir.rglob("*")) if upload_dir.exists() else []
    with open(served.thumbnail, "rb") as handle:
        picture = handle.read()
    boundary = "clipsearch-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.webp\"\r\n"
            "Content-Type: image/webp\r\n\r\n").encode() + picture + f"\r\n--{boundary}--\r\n".encode()
    for origin in ("http://evil.example", "null", f"http://192.168.1.66:{served.port}"):
        headers = {"Host": host, "Origin": origin, **login_cookie(served, host)}  # even when logged in
        assert search_over_http(served, headers)[0] == 403
        upload = {**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        assert request(served, "POST", "/gradio_api/upload", upload, body)[0] == 403
        join = {**headers, "Content-Type": "application/json"}
        assert request(served, "POST", "/gradio_api/queue/join", join,
                       b'{"data": [], "fn_index": 0, "session_hash": "x"}')[0] == 403
    after = sorted(upload_dir.rglob("*")) if upload_dir.exists() else []
    assert after == before  # no upload landed


def test_a_login_from_another_origin_is_refused(locked_app):
    served = locked_app
    host = f"{ALLOWED}:{served.port}"
    body = f"username=me&password={served.password}".encode()
    status, headers, _ = request(served, "POST", "/login", {
        "Host": host, "Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}, body)
    assert status == 403 and "set-cookie" not in headers


def test_without_a_login_the_password_still_guards_same_origin_requests(locked_app):
    host = f"127.0.0.1:{locked_app.port}"
    assert search_over_http(locked_app, {"Host": host, "Origin": f"http://{host}"})[0] == 401


# -- the rules themselves, for addresses a test cannot listen on ------------------------------------------
def judge(policy: HostPolicy, host: str, server=("192.168.1.5", 7860), **headers):
    scope = {"type": "http", "method": "GET", "server": server,
             "headers": [(b"host", host.encode())] + [(k.replace("_", "-").encode(), v.encode())
                                                      for k, v in headers.items()]}
    refusal = OriginGuard(None, policy).judge(scope, {k.decode(): [v.decode()] for k, v in scope["headers"]})
    return refusal.status if refusal else 200


def test_a_lan_address_answers_to_itself_its_allowed_names_and_loopback_only():
    policy = HostPolicy.for_server("192.168.1.5", ["photos.lan", "NAS.Local."])
    for host in ("192.168.1.5:7860", "photos.lan:7860", "nas.local:7860", "localhost:7860", "127.0.0.1"):
        assert judge(policy, host) == 200, host
    for host in ("192.168.1.6:7860", "evil.example:7860", "photos.lan.evil.example"):
        assert judge(policy, host) == 421, host
    assert judge(policy, "photos.lan:7860", origin="http://photos.lan:7860") == 200
    assert judge(policy, "photos.lan:7860", origin="http://192.168.1.5:7860") == 403


def test_a_wildcard_address_answers_to_the_address_a_connection_arrived_on():
    policy = HostPolicy.for_server("0.0.0.0")
    assert judge(policy, "192.168.1.5:7860", server=("192.168.1.5", 7860)) == 200
    assert judge(policy, "192.168.1.5:7860", server=("::ffff:192.168.1.5", 7860)) == 200
    assert judge(policy, "192.168.1.9:7860", server=("192.168.1.5", 7860)) == 421
    assert judge(policy, "evil.example:7860", server=("192.168.1.5", 7860)) == 421
    assert judge(policy, f"{os.uname().nodename}:7860") == 200


@pytest.mark.parametrize("origin, host, same", [
    ("http://photos.lan:7860", ("photos.lan", 7860), True),
    ("http://PHOTOS.lan:7860", ("photos.lan", 7860), True),
    ("https://photos.example", ("photos.example", None), True),  # behind a TLS proxy that keeps Host
    ("http://photos.lan", ("photos.lan", 80), True),
    ("http://photos.lan:7861", ("photos.lan", 7860), False),
    ("http://[::1]:7860", ("::1", 7860), True),
    ("null", ("photos.lan", 7860), False),
    ("file://", ("photos.lan", 7860), False),
    ("http://photos.lan:7860/path", ("photos.lan", 7860), False),
    ("http://user@photos.lan:7860:1", ("photos.lan", 7860), False),
])
def test_same_origin_means_same_host_and_port(origin, host, same):
    assert same_origin(origin, host) is same


@pytest.mark.parametrize("value", ["http://photos.lan", "photos.lan:7860", "*.lan", "photos.lan/x", "", "a b"])
def test_allowed_host_takes_only_a_bare_name_or_address(value):
    with pytest.raises(ValueError):
        check_allowed_host(value)


def test_host_headers_are_parsed_like_urls():
    assert split_host_header("[::1]:7860") == ("::1", 7860)
    assert split_host_header("Photos.LAN.") == ("photos.lan", None)
    assert split_host_header("photos.lan:0") is None


# -- the same in a real browser: the headers the rules rely on are the ones Chromium sends ---------------
@pytest.mark.browser
def test_in_a_browser_a_page_on_another_origin_can_neither_read_the_app_nor_start_a_search(
        locked_app, tmp_path, monkeypatch):
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS

    service = locked_app.app.clipsearch_service
    searches = []
    real_search = service.search
    monkeypatch.setattr(service, "search", lambda *args: searches.append(args) or real_search(*args))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<html><body>another site</body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    app_url = f"http://127.0.0.1:{locked_app.port}"
    call = (f"fetch('{app_url}/gradio_api/call/search', {{method: 'POST', credentials: 'include', "
            "headers: {'Content-Type': 'application/json'}, "
            "body: JSON.stringify({data: ['a photo', 3, -1, '', '', '']})})")
    search = (f"async () => {{ const {{event_id}} = await (await {call}).json();"
              f" return (await (await fetch('{app_url}/gradio_api/call/search/' + event_id,"
              " {credentials: 'include'})).text()).includes('event: complete'); }")
    no_cors = f"async () => (await {call.replace('credentials', 'mode: ' + repr('no-cors') + ', credentials')}).status"
    thumbnail = f"{app_url}/gradio_api/file={locked_app.thumbnail}"
    image = ("() => new Promise(done => { const i = new Image(); i.onload = () => done('loaded');"
             f" i.onerror = () => done('refused'); i.src = '{thumbnail}'; }})")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context()
            own = context.new_page()
            own.set_default_timeout(20_000)
            own.goto(app_url)
            own.get_by_label("username").fill("me")
            own.get_by_label("password").fill(PASSWORD)
            own.get_by_role("button", name="Login").click()
            own.locator("#query textarea").wait_for()
            assert own.evaluate(search) is True and len(searches) == 1  # the app's own page may search

            foreign = context.new_page()  # same browser, same cookies, another origin
            foreign.goto(f"http://127.0.0.1:{other.server_address[1]}/")
            read = (f"async () => {{ try {{ await fetch('{app_url}/config', {{credentials: 'include'}});"
                    " return 'read'; } catch (e) { return 'refused'; } }")
            assert foreign.evaluate(read) == "refused"
            assert foreign.evaluate(no_cors) == 0  # an opaque answer: the browser hides it, the server refused
            assert foreign.evaluate(image) == "refused"
            assert own.evaluate(image) == "loaded"
            assert own.evaluate(search) is True  # queued after the other site's attempt, answered after it
            browser.close()
    finally:
        other.shutdown()
    assert len(searches) == 2  # the own page's two searches; the other site's never reached the search
