#!/usr/bin/env python
"""HTTP load test of a running ``clipsearch serve``: N concurrent clients for a fixed time.

    clipsearch serve --index index/demo/index --port 7860 &
    python benchmarks/load.py --port 7860 --clients 5 --seconds 600 --pid $!

    python benchmarks/load.py --serve-index index/demo/index --clients 5 --seconds 60   # starts the server itself

Each client loops: POST ``/gradio_api/call/<api_name>`` with a query, then reads the event stream of
``/gradio_api/call/<api_name>/<event_id>`` until ``complete`` or ``error`` (gradio's documented HTTP protocol),
with a per-request timeout, until the time is up. Most requests are text searches (``/search``); a share are
"more like this" (``/more_like``) on ids seen in earlier results, and 10 % the Explore views' endpoints (``/map``,
``/themes``, ``/duplicates``, ``/outliers``, with the app's defaults). Reports throughput, p50/p95/p99 latency,
errors by kind ("busy" is the server's fast refusal when its queue is full) and the server's RSS over time.

Only 127.0.0.1 / localhost is accepted as a target. Nothing is installed or downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

QUERIES = [
    "a red car", "a forest in the snow", "a beach at sunset", "a yellow house on the left", "at night",
    "a boat on a lake - fog", "two people", "a red circle", "a city in the rain + 0.5:lights", "a white hexagon",
    "mountains by day", "2:red 1:tree",
]
EXPLORE = ("map", "themes", "duplicates", "outliers")  # each answers from the library's cached analysis
EXPLORE_SHARE = 0.1
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Sample:
    started: float
    seconds: float
    outcome: str  # ok | busy | error | timeout
    endpoint: str
    detail: str = ""


@dataclass
class Shared:
    samples: list[Sample] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    signatures: dict[str, list[tuple[str, object]]] = field(default_factory=dict)

    def payload(self, endpoint: str, **given) -> list:
        """Positional data for ``endpoint``: the given values by parameter name, the app's defaults elsewhere
        (plain HTTP calls must send every input; the names come from ``/gradio_api/info``)."""
        return [given.get(name, default) for name, default in self.signatures[endpoint]]


def read_signatures(base: str) -> dict[str, list[tuple[str, object]]]:
    with urllib.request.urlopen(f"{base}/gradio_api/info", timeout=30) as response:
        info = json.loads(response.read())
    return {name.lstrip("/"): [(p["parameter_name"], p.get("parameter_default")) for p in spec["parameters"]]
            for name, spec in info.get("named_endpoints", {}).items()}


def call(base: str, api_name: str, data: list, timeout: float) -> tuple[str, object]:
    """One gradio API call over plain HTTP; returns (outcome, payload or message)."""
    deadline = time.monotonic() + timeout
    body = json.dumps({"data": data}).encode()
    request = urllib.request.Request(f"{base}/gradio_api/call/{api_name}", body,
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            event_id = json.loads(response.read())["event_id"]
        remaining = max(0.1, deadline - time.monotonic())
        with urllib.request.urlopen(f"{base}/gradio_api/call/{api_name}/{event_id}", timeout=remaining) as stream:
            event = None
            for raw in stream:
                if time.monotonic() > deadline:
                    return "timeout", "deadline passed while streaming"
                line = raw.decode("utf-8", "replace").strip()
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line.split(":", 1)[1].strip()
                    if event == "complete":
                        return "ok", json.loads(payload)
                    return classify_error(payload), payload
        return "error", "stream ended without a result"
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")[:200]
        return ("busy" if exc.code in (429, 503) or "queue" in text.lower() else "error"), f"HTTP {exc.code} {text}"
    except (TimeoutError, socket.timeout):
        return "timeout", "request timed out"
    except (urllib.error.URLError, ConnectionError, OSError, ValueError, KeyError) as exc:
        return "error", f"{type(exc).__name__}: {exc}"


def classify_error(payload: str) -> str:
    text = payload.lower()
    return "busy" if ("queue is full" in text or "too busy" in text or "busy" in text) else "error"


def client(base: str, until: float, timeout: float, shared: Shared, seed: int, top_k: int,
           backoff: float) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:  # bounded: every request has its own timeout, the loop a fixed end
        with shared.lock:
            ids = shared.ids[-200:]
        explore = [name for name in EXPLORE if name in shared.signatures]
        roll = rng.random()
        if explore and roll < EXPLORE_SHARE:
            endpoint = rng.choice(explore)
            data = shared.payload(endpoint)
        elif ids and "more_like" in shared.signatures and roll < EXPLORE_SHARE + 0.2:
            endpoint, data = "more_like", shared.payload("more_like", file_id=rng.choice(ids), top_k=top_k)
        else:
            endpoint, data = "search", shared.payload("search", query=rng.choice(QUERIES), top_k=top_k)
        started = time.monotonic()
        outcome, payload = call(base, endpoint, data, timeout)
        sample = Sample(started, time.monotonic() - started, outcome, endpoint,
                        "" if outcome == "ok" else str(payload)[:160])
        with shared.lock:
            shared.samples.append(sample)
            if outcome == "ok" and isinstance(payload, list) and payload and isinstance(payload[0], list):
                shared.ids.extend(int(r["id"]) for r in payload[0][:3] if isinstance(r, dict) and "id" in r)
        if outcome == "busy":
            time.sleep(backoff)  # what a polite client does with a "busy" answer


def rss_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` and its children, in MiB (Linux /proc)."""
    total, seen = 0, 0
    for p in [pid, *children(pid)]:
        try:
            with open(f"/proc/{p}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        seen += 1
        except OSError:
            continue
    return round(total / 1024, 1) if seen else None


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            direct = [int(x) for x in handle.read().split()]
    except OSError:
        return []
    return direct + [g for c in direct for g in children(c)]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] * 1000, 1)


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares growth of (seconds, MiB) samples, in MiB per minute: a plateau is near 0."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t, mean_r = sum(t for t, _ in points) / n, sum(r for _, r in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return round(60 * sum((t - mean_t) * (r - mean_r) for t, r in points) / spread, 3) if spread else None


def wait_ready(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/gradio_api/info", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.5)
    raise SystemExit(f"the server at {base} did not answer within {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summarise(shared: Shared, seconds: float, rss: list[tuple[float, float | None]], args) -> dict:
    samples = shared.samples
    ok = [s.seconds for s in samples if s.outcome == "ok"]
    busy = [s.seconds for s in samples if s.outcome == "busy"]
    kinds = Counter(s.outcome for s in samples)
    details = Counter(s.detail for s in samples if s.outcome not in ("ok",))
    rss_values = [r for _, r in rss if r is not None]
    plateau = [(t, r) for t, r in rss if r is not None and t >= args.warm_up]
    return {
        "clients": args.clients, "seconds": round(seconds, 1), "requests": len(samples),
        "throughput_rps": round(len(ok) / seconds, 2) if seconds else None,
        "latency_ms": {"p50": percentile(ok, 50), "p95": percentile(ok, 95), "p99": percentile(ok, 99),
                       "max": percentile(ok, 100)},
        "busy_latency_ms_p95": percentile(busy, 95),
        "by_endpoint": dict(Counter(s.endpoint for s in samples)),
        "outcomes": dict(kinds), "error_examples": dict(details.most_common(5)),
        "rss_mib": {"start": rss_values[0] if rss_values else None, "end": rss_values[-1] if rss_values else None,
                    "max": max(rss_values) if rss_values else None,
                    "slope_after_warm_up_mib_per_min": slope_per_minute(plateau),
                    "series": [(round(t, 1), r) for t, r in rss]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--timeout", type=float, default=30, help="per-request limit")
    parser.add_argument("--top-k", type=int, default=12)
    parser.add_argument("--pid", type=int, help="server process id, for RSS sampling")
    parser.add_argument("--serve-index", help="start `clipsearch serve --index DIR` on a free port first")
    parser.add_argument("--rss-every", type=float, default=5.0)
    parser.add_argument("--busy-backoff", type=float, default=0.25, help="pause after a 'busy' answer")
    parser.add_argument("--out", help="write the JSON summary here too")
    parser.add_argument("--warm-up", type=float, default=60, help="seconds before the RSS slope is measured")
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK:
        parser.error("only a server on this machine (127.0.0.1) may be load-tested")
    server = None
    if args.serve_index:
        args.port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "clipsearch", "serve", "--index", args.serve_index,
                                   "--host", "127.0.0.1", "--port", str(args.port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
        args.pid = server.pid
    base = f"http://{'127.0.0.1' if args.host == 'localhost' else args.host}:{args.port}"
    try:
        wait_ready(base, 180)
        shared, rss = Shared(signatures=read_signatures(base)), []
        if "search" not in shared.signatures:
            raise SystemExit(f"the server at {base} has no /search endpoint")
        started = time.monotonic()
        until = started + args.seconds
        threads = [threading.Thread(target=client, args=(base, until, args.timeout, shared, i, args.top_k,
                                                               args.busy_backoff),
                                    daemon=True) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            if args.pid:
                rss.append((time.monotonic() - started, rss_mib(args.pid)))
            time.sleep(min(args.rss_every, max(0.05, until + args.timeout - time.monotonic())))
            if time.monotonic() > until + args.timeout + 5:
                break  # a client is stuck beyond its own timeout: report what we have
        if args.pid:
            rss.append((time.monotonic() - started, rss_mib(args.pid)))
        summary = summarise(shared, time.monotonic() - started, rss, args)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return 0 if summary["outcomes"].get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
