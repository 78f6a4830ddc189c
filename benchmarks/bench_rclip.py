"""The race against rclip 3.3.0: same machine, same folder, same architecture (ViT-B-32-256), same run.

rclip is installed from the package registry into its own venv under the benchmark work folder. Both tools get
the same random-weight ViT-B-32-256 (no weights can be downloaded here; the compute is the real model's): rclip
in its own layout (``$RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/{visual,textual}.onnx``, fp32, input/output
``input``/``output``, dynamic batch, as rclip's ``scripts/convert_model.py`` exports them; the tokenizer
vocabulary in ``$RCLIP_DATADIR/tokenizer/``) and clipsearch as the matching open_clip checkpoint
(``--model ViT-B-32-256 --checkpoint FILE``). Timed, each in fresh processes, one after the other:

- a full index of the generated folder (clipsearch: first run with an empty export cache, then a later run in a
  fresh index with the cache kept; rclip's run includes its one search, as ``rclip QUERY`` always does);
- an unchanged rerun;
- a cold CLI text search (wall and peak RSS of a fresh process, like ``/usr/bin/time -v``), median of 5;
- warm text queries at 100k vectors through each tool's own API (clipsearch ``Library.search``, rclip
  ``RClip.search``), p50 of 40, uncached.

    python -m benchmarks.bench_rclip                 # 200 photos, ~10-15 minutes on 2 busy cores
    python -m benchmarks.bench_rclip --count 300

Raw outputs go to ``benchmarks/results/rclip-race-*.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks import _common
from benchmarks.photos import ensure_folder, folder_summary

RCLIP_VERSION = "3.3.0"
RCLIP_MODEL_DIR = "ViT-B-32-256-datacomp_s34b_b86k"
MODEL = "ViT-B-32-256"
QUERY = "a dog on a beach at sunset"
RESULTS = _common.REPO / "benchmarks" / "results"
QUERIES = ["a dog on a beach", "sunset over the mountains", "two children playing football in a park",
           "a red car parked in front of an old house", "birthday cake with candles", "snow",
           "people walking across a bridge in the rain at night", "cat sleeping on a sofa"]


# -- setting up -------------------------------------------------------------------------------------------------
def ensure_rclip(work: Path) -> Path:
    """rclip ``RCLIP_VERSION`` in its own venv (``python -m venv`` + ``pip install``); its ``bin`` folder."""
    venv = work / f"rclip-{RCLIP_VERSION}-venv"
    marker = venv / ".installed"
    if not marker.is_file():
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"rclip=={RCLIP_VERSION}"], check=True)
        marker.write_text(RCLIP_VERSION)
    return venv / "bin"


def ensure_stand_in(work: Path) -> tuple[Path, Path]:
    """The random-weight ViT-B-32-256 (seed 0): an open_clip checkpoint, and rclip's model folder from it."""
    folder = work / "vit-b-32-256-seed0"
    checkpoint = folder / "open_clip.safetensors"
    datadir = folder / "rclip-data"
    marker = folder / ".complete"
    if marker.is_file():
        return checkpoint, datadir
    shutil.rmtree(folder, ignore_errors=True)
    (datadir / RCLIP_MODEL_DIR).mkdir(parents=True)
    (datadir / "tokenizer").mkdir()
    _common.run_isolated("benchmarks.bench_rclip", "build_stand_in", checkpoint=str(checkpoint),
                         model_dir=str(datadir / RCLIP_MODEL_DIR), vocab_dir=str(datadir / "tokenizer"))
    marker.write_text("ok")
    return checkpoint, datadir


def build_stand_in(checkpoint: str, model_dir: str, vocab_dir: str) -> dict:
    """Runs in a fresh process: seed the model, save it for open_clip, export it as rclip ships its model."""
    import onnx
    import open_clip
    import torch
    from safetensors.torch import save_file

    from clipsearch.model import onnx_graph
    from clipsearch.model.export import _onnx_export

    torch.manual_seed(0)
    model = open_clip.create_model(MODEL, pretrained=None).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, checkpoint)

    class Visual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = model.visual

        def forward(self, pixels):
            return self.visual(pixels)

    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    # The image tower as rclip's convert_model.py makes it: torch.onnx.export, fp32, dynamic batch.
    _onnx_export(Visual(), (torch.zeros(1, 3, size, size),), Path(model_dir) / "visual.onnx", ["input"],
                 {"input": {0: "batch"}})
    # The text tower: traced, the exporter bakes the example's batch size into nn.MultiheadAttention's reshapes,
    # so it is written from the weights instead (the same function, fp32, any batch).
    onnx.save(onnx_graph.text_model(model, tokens_input="input", output_name="output"),
              str(Path(model_dir) / "textual.onnx"))
    _rename_output(Path(model_dir) / "visual.onnx")
    shutil.copyfile(open_clip.tokenizer.default_bpe(), Path(vocab_dir) / "bpe_simple_vocab_16e6.txt.gz")
    return {"image_size": size}


def _rename_output(path: Path) -> None:
    """rclip reads the output as ``output`` (the shared exporter names it ``features``)."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        node.output[:] = ["output" if name == "features" else name for name in node.output]
    for output in model.graph.output:
        if output.name == "features":
            output.name = "output"
    onnx.save(model, str(path))


# -- measuring --------------------------------------------------------------------------------------------------
def measure(command: list[str], log_name: str, cwd: str | None = None, env: dict | None = None) -> dict:
    """Run ``command`` to completion: wall seconds, the process's own peak RSS as ``/usr/bin/time`` reports it
    (its ``ru_maxrss``; taken from our own fork it would count this process's pages) and the peak RSS of the
    whole process tree, decode workers included (sampled every 20 ms). Output goes to the log."""
    timer = ["/usr/bin/time", "-f", "@@maxrss_kib %M"] if os.path.exists("/usr/bin/time") else []
    started = time.perf_counter()
    process = subprocess.Popen([*timer, *command], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak, finished = [0], threading.Event()

    def sample():
        while not finished.wait(0.02):
            peak[0] = max(peak[0], _common.tree_rss_bytes(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.stdout.read().decode("utf-8", "replace")
    process.wait()
    wall = time.perf_counter() - started
    finished.set()
    sampler.join()
    own = peak[0]
    if timer and "@@maxrss_kib " in output:
        output, _, tail = output.rpartition("@@maxrss_kib ")
        own = int(tail.split()[0]) * 1024
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / log_name, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n# cwd={cwd} rc={process.returncode} wall={wall:.2f}s "
                     f"maxrss={own / 2**20:.0f}MiB tree_peak={peak[0] / 2**20:.0f}MiB\n")
        handle.write(output[-4000:] + "\n")
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed (rc {process.returncode}); see {RESULTS / log_name}")
    return {"wall": wall, "rss": own, "tree_rss": max(peak[0], own)}


def clipsearch_warm(index_dir: str, queries: list[str], repeats: int, top_k: int) -> dict:
    """Runs in a fresh process: warm ``Library.search`` (uncached) on an index of 100k vectors."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as a serving process sets it (DESIGN.md)
    import sys as _sys

    from clipsearch import Library

    library = Library.open(index_dir)
    for query in queries[:2]:
        library.search(query, top_k)
    times, encode = [], []
    for i in range(repeats):
        query = queries[i % len(queries)]
        started = time.perf_counter()
        library.search(query, top_k)
        middle = time.perf_counter()
        library.encode_query(query)
        encode.append((time.perf_counter() - middle) * 1e3)
        times.append((middle - started) * 1e3)
    return {"ms": times, "encode_ms": encode, "torch": "torch" in _sys.modules,
            "encoder": type(library.text_encoder).__name__}


def run(count: int, repeats: int) -> list[dict]:
    work = _common.work_dir() / "rclip-race"
    work.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M")
    log = f"rclip-race-{stamp}.txt"
    rclip_bin = ensure_rclip(work)
    checkpoint, model_data = ensure_stand_in(work)
    folder = str(ensure_folder(_common.work_dir() / f"photos-{count}-seed0", count, 0))
    summary = folder_summary(folder)
    clip = [sys.executable, "-m", "clipsearch"]
    scratch = work / f"run-{stamp}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    # An empty export cache: clipsearch's first run of this model exports its towers, as a new user's would.
    os.environ["CLIPSEARCH_CACHE"] = str(scratch / "clipsearch-cache")
    env = dict(os.environ, PYTHONPATH=str(_common.REPO), HF_HUB_OFFLINE="1")
    rclip_env = dict(os.environ, RCLIP_DATADIR=str(scratch / "rclip-data"))
    rclip_env.pop("PYTHONPATH", None)
    shutil.copytree(model_data, scratch / "rclip-data", copy_function=os.link)
    model_args = ["--model", MODEL, "--checkpoint", str(checkpoint)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / log, "w", encoding="utf-8") as handle:
        handle.write(f"# {time.strftime('%Y-%m-%d %H:%M')} · {_common.machine()} · {count} photos, "
                     f"{summary['megabytes']} MB · uptime: {_uptime()}\n")

    result: dict = {"count": summary["files"], "megabytes": summary["megabytes"], "load_before": _uptime()}
    # full index: clipsearch's first run (empty export cache), rclip, clipsearch's later run (cache kept)
    result["cs_first"] = measure([*clip, "index", folder, "--index", str(scratch / "cs-first"), *model_args], log,
                                 env=env)
    result["rc_index"] = measure([str(rclip_bin / "rclip"), "-t", "1", QUERY], log, cwd=folder, env=rclip_env)
    result["cs_index"] = measure([*clip, "index", folder, "--index", str(scratch / "cs"), *model_args], log, env=env)
    # unchanged reruns
    result["rc_rerun"] = measure([str(rclip_bin / "rclip"), "-t", "1", QUERY], log, cwd=folder, env=rclip_env)
    result["cs_rerun"] = measure([*clip, "index", folder, "--index", str(scratch / "cs")], log, env=env)
    # cold CLI text searches, alternating
    searches = _common.alternate({
        "rc_search": lambda i: measure([str(rclip_bin / "rclip"), "-n", "-t", "10", QUERIES[i % len(QUERIES)]], log,
                                       cwd=folder, env=rclip_env),
        "cs_search": lambda i: measure([*clip, "search", QUERIES[i % len(QUERIES)], "--index", str(scratch / "cs"),
                                        "--top", "10"], log, env=env),
    }, 5)
    result.update(searches)
    # warm queries at 100k vectors, each tool through its own API
    from benchmarks.bench_query import synthetic_catalog
    from clipsearch.model.models import ModelSpec

    spec = ModelSpec.parse(MODEL, checkpoint=str(checkpoint))
    big = synthetic_catalog(100_000, spec, 512)
    result["cs_warm"] = _common.run_isolated("benchmarks.bench_rclip", "clipsearch_warm", index_dir=big,
                                             queries=QUERIES, repeats=repeats, top_k=20)
    warm_env = dict(rclip_env, RCLIP_DATADIR=str(work / "rclip-100k-data"))
    if not (work / "rclip-100k-data").is_dir():
        shutil.copytree(model_data, work / "rclip-100k-data", copy_function=os.link)
    done = subprocess.run([str(rclip_bin / "python"), str(_common.REPO / "benchmarks" / "rclip_warm.py"),
                           "/rclip-100k", *QUERIES, "--fill", "100000", "--repeats", str(repeats)],
                          capture_output=True, text=True, env=warm_env, check=True)
    result["rc_warm"] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_after"] = _uptime()
    with open(RESULTS / log, "a", encoding="utf-8") as handle:
        handle.write("# result " + json.dumps(result) + f"\n# uptime after: {_uptime()}\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load %.2f %.2f %.2f" % os.getloadavg()


def table(r: dict) -> str:
    n = r["count"]
    med = _common.median
    rc_rate, cs_rate = n / r["rc_index"]["wall"], n / r["cs_index"]["wall"]
    first_rate = n / r["cs_first"]["wall"]
    rc_cold, cs_cold = med([m["wall"] for m in r["rc_search"]]), med([m["wall"] for m in r["cs_search"]])
    rc_cold_rss = med([m["rss"] for m in r["rc_search"]]) / 2**20
    cs_cold_rss = med([m["rss"] for m in r["cs_search"]]) / 2**20
    rc_warm, cs_warm = med(r["rc_warm"]["ms"]), med(r["cs_warm"]["ms"])
    mib = 2**20
    rows = [
        ["full index (img/s, whole command)", f"{rc_rate:.2f}", f"{cs_rate:.2f}", f"{cs_rate / rc_rate:.2f}x",
         "≥ 3x (stretch 5x)"],
        ["  first run of a new model (export inside)", "", f"{first_rate:.2f}",
         f"{first_rate / rc_rate:.2f}x; first/later time {r['cs_first']['wall'] / r['cs_index']['wall']:.2f}",
         "first ≤ 1.15x later"],
        ["peak RSS indexing, process tree (MiB)", f"{r['rc_index']['tree_rss'] / mib:.0f}",
         f"{r['cs_index']['tree_rss'] / mib:.0f} (first run {r['cs_first']['tree_rss'] / mib:.0f})",
         f"{r['cs_index']['tree_rss'] / r['rc_index']['tree_rss']:.2f}", "≤ 1229 MiB"],
        ["unchanged rerun (s)", f"{r['rc_rerun']['wall']:.2f}", f"{r['cs_rerun']['wall']:.2f}",
         f"{r['cs_rerun']['wall'] / r['rc_rerun']['wall']:.2f}", ""],
        ["cold CLI text search (s, median of 5)", f"{rc_cold:.2f}", f"{cs_cold:.2f}", f"{cs_cold / rc_cold:.2f}",
         "≤ 0.5"],
        ["  its peak RSS (MiB)", f"{rc_cold_rss:.0f}", f"{cs_cold_rss:.0f}", f"{cs_cold_rss / rc_cold_rss:.2f}",
         "≤ 500 MiB"],
        [f"warm text query, 100k vectors (ms p50 of {len(r['cs_warm']['ms'])})", f"{rc_warm:.1f}", f"{cs_warm:.1f}",
         f"{cs_warm / rc_warm:.3f}", "≤ 10 ms, ≤ 0.2"],
        ["  rclip with its 100k vectors already in memory (ms p50)", f"{med(r['rc_warm']['in_memory_ms']):.1f}",
         f"{cs_warm:.1f}", f"{cs_warm / med(r['rc_warm']['in_memory_ms']):.2f}", "≤ 0.2"],
        ["  of which text encoding (ms p50)", "", f"{med(r['cs_warm']['encode_ms']):.1f}", "", ""],
    ]
    return _common.print_table(
        f"Race against rclip {RCLIP_VERSION}: {n} photos ({r['megabytes']} MB), random-weight {MODEL}",
        ["what", f"rclip {RCLIP_VERSION}", "clipsearch", "clipsearch / rclip", "target"], rows,
        note=f"Each figure from fresh processes of the two CLIs (warm queries: each tool's own API in one process), "
             f"one after the other in the same run. rclip's index run includes its one search. clipsearch warm "
             f"queries: {r['cs_warm']['encoder']}, torch imported: {r['cs_warm']['torch']}. Load before: "
             f"{r['load_before']}; after: {r['load_after']}.",
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="photos in the folder (default 200)")
    parser.add_argument("--repeats", type=int, default=40, help="warm queries per tool")
    args = parser.parse_args(argv)
    return table(run(args.count, args.repeats))


if __name__ == "__main__":
    main()
