"""The Explore map in Chromium: how long the web app's drawer (ui/assets/map.js) takes to draw 100k points.

    python -m benchmarks --only map_draw
    python -m benchmarks.bench_map_draw --points 100000 --repeats 15

Debian's Chromium (headless, ``--disable-gpu``, as the browser tests run it) opens ``benchmarks/map_draw.html``,
which runs ``map.js`` the way Gradio runs a ``gr.HTML``'s ``js_on_load``. Each timed round hands the drawer the
map payload as JSON text, as the page receives it (ids, coordinates in [0, 1], a colour group per point, a
legend of 20), and stops the clock when the canvas has been rasterised (a pixel read back): JSON parse, typed
arrays, the id index, the legend and the draw. A redraw (pan, zoom) is timed apart. The baseline, measured in
the same run, is the first drawer one would write: one ``fillStyle`` and ``fillRect`` per point. Not included:
Gradio's transport of the payload (about 2 MB for 100k points) and the server's ``Library.map``.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from benchmarks import _common

HARNESS = _common.REPO / "benchmarks" / "map_draw.html"
DRAWER = _common.REPO / "ui" / "assets" / "map.js"
GOAL_MS = 2000.0


def payload(points: int, seed: int = 0) -> str:
    """Synthetic map data in the app's format: 20 clusters of uneven size and spread, one colour each."""
    from ui.explore import PALETTE

    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, (len(PALETTE), 2))
    group = rng.choice(len(PALETTE), points, p=rng.dirichlet(np.ones(len(PALETTE))))
    xy = np.clip(centres[group] + rng.normal(0, 1, (points, 2)) * rng.uniform(0.01, 0.06, len(PALETTE))[group, None],
                 0, 1)
    counts = np.bincount(group, minlength=len(PALETTE))
    return json.dumps({
        "ids": list(range(1, points + 1)),
        "x": np.round(xy[:, 0], 5).tolist(),
        "y": np.round(xy[:, 1], 5).tolist(),
        "group": group.tolist(),
        "legend": [{"name": f"theme {n}", "colour": c, "count": int(counts[n])} for n, c in enumerate(PALETTE)],
        "by": "theme",
    })


def run(points: int, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS

    text = payload(points)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1050})
        page.goto(HARNESS.as_uri())
        page.evaluate("code => window.bench.start(code)", DRAWER.read_text(encoding="utf-8"))
        page.evaluate("text => { window.payload = text; }", text)  # in the page once: not timed
        page.evaluate("() => window.bench.load(window.payload)")  # one warm-up round (JIT, canvas allocation)
        drawn = int(page.evaluate("() => document.querySelector('#explore-map [data-points]').dataset.points"))
        rounds = {"load": [], "redraw": [], "naive": []}
        for _ in range(repeats):  # interleaved, so load on the machine falls on all three alike
            rounds["load"].append(page.evaluate("() => window.bench.load(window.payload)"))
            rounds["redraw"].append(page.evaluate("() => window.bench.redraw()"))
            rounds["naive"].append(page.evaluate("() => window.bench.naive(window.payload)"))
        version = browser.version
        browser.close()
    return {"points": points, "drawn": drawn, "bytes": len(text), "chromium": version, **rounds}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    result = _common.run_isolated("benchmarks.bench_map_draw", "run", points=args.points, repeats=args.repeats)
    assert result["drawn"] == args.points, result["drawn"]
    baseline = _common.median(result["naive"])
    rows = []
    for name, label in (("naive", "baseline: fillStyle + fillRect per point"),
                        ("load", "map.js: payload to drawn canvas"), ("redraw", "map.js: redraw (pan, zoom)")):
        times = result[name]
        rows.append([label, f"{_common.median(times):.1f}", f"{min(times):.1f}", f"{max(times):.1f}",
                     f"{baseline / _common.median(times):.2f}", f"{GOAL_MS / _common.median(times):.0f}x under"])
    return _common.print_table(
        f"the Explore map in Chromium {result['chromium']} (headless, --disable-gpu): {args.points:,} points",
        ["drawer", "median ms", "min ms", "max ms", "speed vs baseline", "vs the 2 s goal"], rows,
        note=f"{args.repeats} rounds each, interleaved, one warm-up; payload {result['bytes'] / 1e6:.1f} MB of JSON, "
             "parsed inside the timed part; canvas 1300 px wide at device pixel ratio 1; clock stopped after a "
             "pixel read-back. Gradio's transport and Library.map are not included.")


if __name__ == "__main__":
    main()
