"""`clipsearch serve` as a user starts it: a password (option or CLIPSEARCH_PASSWORD) guards every page, and
its console shows one line of ours, never a share-link hint or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ui.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, scenes):
    import shutil

    from click.testing import CliRunner

    from clipsearch.cli import main

    folder, records = scenes
    photos = tmp_path_factory.mktemp("serve-photos")
    for record in records[:4]:
        shutil.copy(folder / record["file"], photos / record["file"])
    index = tmp_path_factory.mktemp("serve-index")
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(index), "--model", "clipsearch-tiny"])
    assert result.exit_code == 0, result.output
    return index


def serve(index: Path, port: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    environment = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "clipsearch", "serve", "--index", str(index), "--port", str(port),
                             *args], cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode())
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.25)  # the server is still loading the model
    raise AssertionError(f"{url} did not come up in {timeout} s")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_serve_with_a_password_refuses_every_request_until_logged_in(small_index, how):
    port = free_port()
    args, env = (["--password", "s3cret"], None) if how == "option" else ([], {"CLIPSEARCH_PASSWORD": "s3cret"})
    process = serve(small_index, port, *args, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/", process)
        for route in ("/config", "/gradio_api/info"):
            assert httpx.get(base + route, timeout=10).status_code in (401, 403), route
        call = httpx.post(base + "/gradio_api/call/search", json={"data": ["red", 3]}, timeout=10)
        assert call.status_code in (401, 403)
        assert httpx.post(base + "/login", data={"username": "me", "password": "wrong"}).status_code >= 400
        with httpx.Client(base_url=base, timeout=10) as session:
            assert session.post("/login", data={"username": "me", "password": "s3cret"}).status_code == 200
            assert session.get("/config").status_code == 200
            call = session.post("/gradio_api/call/search", json={"data": ["red", 3]})
            assert call.status_code == 200 and "event_id" in call.json()
    finally:
        process.kill()
        process.wait()


def test_serve_beyond_loopback_without_a_password_is_refused_in_one_line(small_index):
    out = subprocess.run([sys.executable, "-m", "clipsearch", "serve", "--index", str(small_index), "--host",
                          "0.0.0.0", "--port", str(free_port())], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, CLIPSEARCH_PASSWORD=""))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "without a password" in out.stderr


@pytest.mark.browser
def test_serve_says_one_line_and_an_empty_query_prints_no_traceback(small_index):
    from playwright.sync_api import sync_playwright

    from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS

    port = free_port()
    process = serve(small_index, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/", process)
        call = httpx.post(base + "/gradio_api/call/search", json={"data": ["", 5, 0, "", "", ""]}, timeout=30)
        event = call.json()["event_id"]
        answer = httpx.get(f"{base}/gradio_api/call/search/{event}", timeout=30).text
        assert answer.startswith("event: error")  # (Gradio's plain-HTTP stream leaves the message out)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(base)
            page.locator("#query textarea, #query input").first.press("Enter")  # nothing typed, nothing dropped
            page.wait_for_function("() => (document.querySelector('#summary')?.innerText || '')"
                                   ".includes('Type some words or drop an image')")
            browser.close()
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert f"clipsearch: the web app is on http://127.0.0.1:{port}" in output
    assert "share=True" not in output and "public link" not in output
    assert "Traceback" not in output and "Error" not in output, output
