"""Make the README's screenshots from the real-browser test run, or measure the app's warm search-to-gallery time.

    .venv/bin/python tools/screenshot.py               # docs/screenshot.png, -preview, -map, -themes, -duplicates
    .venv/bin/python tools/screenshot.py --measure 20  # 300-scene demo library: median Enter-to-gallery time

The measurement drives Debian's Chromium with Playwright: it types a query, presses Enter, and stops the clock
when the summary names that query and every thumbnail in the gallery has been fetched and decoded. Each query
runs once first (model, FAISS index and thumbnails warm), then the timed rounds cycle through the queries.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUERIES = ("a red circle", "a large blue square on the left", "star + yellow", "circle - red",
           "a small green cross", "striped purple background")


def screenshot(target: Path) -> int:
    env = dict(os.environ, CLIPSEARCH_SCREENSHOT=str(target), GRADIO_ANALYTICS_ENABLED="False")
    journeys = ("previews_it_and_more_like_this or box_selection_fills_the_gallery or theme_card_opens_its_photos "
                "or keeper_and_the_list_exports")  # the journeys that take them (viewport shots)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ui/test_browser.py",
               "tests/ui/test_explore_browser.py", "-k", journeys]
    return subprocess.call(command, cwd=REPO, env=env)


def measure(rounds: int, count: int, workdir: Path) -> tuple[list[float], list[float]]:
    """(browser Enter-to-gallery times, server search times as the summary reports them), in ms."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from playwright.sync_api import sync_playwright

    from clipsearch.demo import run_demo
    from ui.app import AppSettings, launch

    sys.path.insert(0, str(REPO))
    from tests.ui.conftest import free_port
    from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS, wait_for_summary

    demo = run_demo(workdir, count)
    app = launch(demo.library, port=free_port(), prevent_thread_lock=True, quiet=True, settings=AppSettings())
    timings, server = [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1050})
            page.goto(app.local_url)
            box = page.locator("#query textarea, #query input").first
            for number in range(len(QUERIES) + rounds):
                query = QUERIES[number % len(QUERIES)]
                box.fill(query)
                started = time.perf_counter()
                box.press("Enter")
                summary = wait_for_summary(page, f"for {query}")
                if number >= len(QUERIES):  # the first pass over the queries only warms
                    timings.append((time.perf_counter() - started) * 1000)
                    server.append(float(re.search(r"(\d+) ms", summary).group(1)))
            browser.close()
    finally:
        app.close()
    return timings, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--measure", type=int, metavar="ROUNDS", help="time this many warm searches instead")
    parser.add_argument("--count", type=int, default=300, help="scenes in the measured library")
    parser.add_argument("--dir", type=Path, help="where the measured library goes (default: a temp folder)")
    args = parser.parse_args()
    if args.measure:
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory(prefix="clipsearch-measure-") as tmp:
            timings, server = measure(args.measure, args.count, args.dir or Path(tmp))
        print(f"# {time.strftime('%Y-%m-%d %H:%M')} UTC{time.strftime('%z')}, {os.cpu_count()} CPUs, load average "
              f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
        print("# browser ms:", " ".join(f"{t:.0f}" for t in timings))
        print("# server ms: ", " ".join(f"{t:.0f}" for t in server))
        print(f"warm search-to-gallery over {len(timings)} searches, {args.count} scenes: "
              f"median {statistics.median(timings):.0f} ms, "
              f"min {min(timings):.0f} ms, max {max(timings):.0f} ms "
              f"(of which the search itself, server side: median {statistics.median(server):.0f} ms)")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raise SystemExit(screenshot(args.out.resolve()))


if __name__ == "__main__":
    main()
