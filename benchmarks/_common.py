"""What every benchmark shares: a work folder, the models, measuring a process tree, printing a table."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def work_dir() -> Path:
    """Generated folders, catalogs and checkpoints are kept here between runs: ``$CLIPSEARCH_BENCH_DIR``."""
    path = Path(os.environ.get("CLIPSEARCH_BENCH_DIR") or "/tmp/clipsearch-bench")
    path.mkdir(parents=True, exist_ok=True)
    return path


def vit_b32_spec():
    """ViT-B-32 with seeded random weights: the real architecture's cost without downloadable weights."""
    from clipsearch.model.models import ModelSpec

    path = work_dir() / "vit-b-32-random-seed0.safetensors"
    if not path.is_file():
        import open_clip
        import torch
        from safetensors.torch import save_file

        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        tmp = path.with_suffix(".tmp")
        save_file(state, str(tmp))
        os.replace(tmp, path)
    return ModelSpec("ViT-B-32", None, str(path))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} CPUs, load {load:.1f}, Python {platform.python_version()}"


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def spread(values, digits: int = 2) -> str:
    """``median (min–max)`` of repeated measurements, for a table cell."""
    if not values:
        return "–"
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def alternate(pipelines: dict, repeats: int) -> dict[str, list]:
    """Run each of ``pipelines`` (name -> callable taking the round number) ``repeats`` times, interleaved: one
    round runs them in order, the next in reverse (A B B A ...), so a change in the machine's load during the run
    falls on every pipeline alike. Returns each pipeline's results in round order. The one way benchmarks here
    compare two things measured on a shared machine."""
    results: dict[str, list] = {name: [] for name in pipelines}
    names = list(pipelines)
    for round_number in range(repeats):
        for name in names if round_number % 2 == 0 else reversed(names):
            results[name].append(pipelines[name](round_number))
    return results


# -- measuring a process tree -----------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(c) for c in handle.read().split())
    except OSError:
        pass
    return found


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants now (decode workers included)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
        stack.extend(_children(current))
    return total


class PeakTreeRss:
    """Samples the resident memory of this process tree every ``interval`` seconds; ``peak`` is the maximum."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakTreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(os.getpid()))


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_isolated(module: str, function: str, **kwargs) -> dict:
    """Run ``module.function(**kwargs)`` in a fresh Python process and return its JSON-able result.

    Each measured pipeline gets its own process, so peak memory, CPU time and warm caches never leak
    from one into the next.
    """
    code = (
        "import json, sys; from importlib import import_module; "
        f"result = getattr(import_module({module!r}), {function!r})(**json.loads(sys.argv[1])); "
        "sys.stdout.write('\\n@@RESULT@@' + json.dumps(result) + '\\n')"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("HF_HUB_OFFLINE", "1")
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True, env=env, cwd=REPO
    )
    marker = "\n@@RESULT@@"
    if done.returncode != 0 or marker not in done.stdout:
        raise RuntimeError(f"{module}.{function} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.rsplit(marker, 1)[1])


# -- output -----------------------------------------------------------------------------------------------
def print_table(title: str, columns: list[str], rows: list[list], note: str | None = None) -> str:
    """Print (and return) a Markdown table."""

    def cell(value) -> str:
        if isinstance(value, float):
            if value != value:
                return "–"
            return f"{value:.4f}" if abs(value) < 1 else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    if note:
        lines += ["", note]
    lines += ["", f"_{time.strftime('%Y-%m-%d %H:%M')} · {machine()}_", ""]
    text = "\n".join(lines)
    print(text, flush=True)
    return text
