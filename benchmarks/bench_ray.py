"""Indexing on Ray against the local engine on this machine, and how the Ray pipeline scales with actors.

One machine: the same generated photos indexed with ``LocalEngine`` and with ``RayEngine`` (a private Ray started
by the run, actors at 0.5 CPU), each in a fresh process, ViT-B-32 with random weights (the real model's cost);
wall time includes Ray's start-up and each actor's model load.

Scaling (simulated): a cluster's nodes would each bring their own cores or GPU, which two shared cores cannot show.
So the model is the HashEmbedder with a fixed 0.25 s per batch of 8 spent sleeping (standing in for a GPU or
another node's time, not this machine's CPU), and actors take 0.2 CPU so that 8 fit; files/s is measured from the
first committed batch to the last (start-up excluded), for 1, 2, 4 and 8 actors.

    python -m benchmarks.bench_ray
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks import _common


def photos(count: int) -> str:
    from clipsearch.world.synthetic import generate_library

    folder = _common.work_dir() / f"ray-photos-{count}"
    if not (folder / "complete").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        generate_library(folder, count, 777)
        (folder / "complete").write_text("ok")
    return str(folder)


def index_once(folder: str, engine: str, actors: int | None = None, slow: float = 0.0,
               cpus_per_actor: float = 0.5) -> dict:
    """Index ``folder`` into a fresh index with one engine; wall seconds and the commit times."""
    import tempfile

    from clipsearch import IndexOptions, Library
    from clipsearch.ingest.ray_engine import ModelLoader, RayEngine
    from clipsearch.testing import HashEmbedder

    os.environ.setdefault("RAY_AUTH_TOKEN", os.urandom(32).hex())  # never written to ~/.ray
    commits: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        if slow:
            model = HashEmbedder(slow=slow)
            library = Library.open(scratch, model=model.spec, create=True)
            library.use_embedder(model)
            loader = None
        else:
            spec = _common.vit_b32_spec()
            library = Library.open(scratch, model=spec, create=True)
            loader = ModelLoader(spec)
        chosen = None
        if engine == "ray":
            chosen = RayEngine(load_model=loader, actors=actors, cpus_per_actor=cpus_per_actor)
        started = time.perf_counter()
        report = library.index([folder], IndexOptions(batch_size=8, engine=chosen),
                               progress=lambda done, total: commits.append(time.perf_counter()))
        wall = time.perf_counter() - started
    steady = commits[-1] - commits[1] if len(commits) > 2 else float("nan")  # commits[0]: the 0-of-n call
    return {"indexed": report.indexed, "wall": wall, "steady": steady, "batches": len(commits) - 1}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=96)
    parser.add_argument("--simulated", type=int, default=192)
    args = parser.parse_args(argv)
    folder = photos(max(args.photos, args.simulated))
    local = _common.run_isolated("benchmarks.bench_ray", "index_once", folder=folder, engine="local")
    ray = _common.run_isolated("benchmarks.bench_ray", "index_once", folder=folder, engine="ray")
    rows = [["local engine (decode workers + this process)", local["indexed"], local["wall"],
             local["indexed"] / local["wall"], 1.0],
            ["Ray engine, private local Ray, auto actors", ray["indexed"], ray["wall"], ray["indexed"] / ray["wall"],
             local["wall"] / ray["wall"]]]
    text = _common.print_table(
        f"One machine: {local['indexed']} generated photos, ViT-B-32 (random weights), batch 8",
        ["engine", "files", "wall s", "files/s", "× local"], rows,
        note="Wall time includes Ray's start-up and each actor's model load; the local engine loads the model once.")
    base = None
    scaled = []
    for actors in (1, 2, 4, 8):
        r = _common.run_isolated("benchmarks.bench_ray", "index_once", folder=folder, engine="ray", actors=actors,
                                 slow=0.25, cpus_per_actor=0.2)
        rate = (r["batches"] - 1) * 8 / r["steady"]
        base = base or rate
        scaled.append([actors, r["indexed"], r["steady"], rate, rate / base, r["wall"]])
    text += _common.print_table(
        "Simulated scaling: 0.25 s of model time per batch of 8 (sleep), actors at 0.2 CPU",
        ["actors", "files", "first→last commit s", "files/s", "× 1 actor", "wall s (with start-up)"], scaled,
        note="The sleep stands in for a GPU's or another node's time; the two shared cores still decode every file.")
    return text


if __name__ == "__main__":
    main()
