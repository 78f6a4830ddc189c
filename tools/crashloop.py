#!/usr/bin/env python
"""Crash loop: SIGKILL an index run at random moments, many times, then check the result equals a clean run.

    python tools/crashloop.py --files 400 --kills 50            # API child, hash embedder (plumbing, fast)
    python tools/crashloop.py --mode cli --embedder tiny --kills 30   # the real CLI with the bundled model

Each attempt starts a child process that indexes the same photo folder into the same index and kills it (and
its decode workers: the whole process group) after a random delay; a final attempt runs to completion. The
crashed index is then compared with an index built once without interruption:

* the same rows (path, status, skip reason, size, mtime, digest, size in pixels), no duplicates;
* the same vectors (bit-identical for the hash embedder; cosine > 0.9999 for a real model, whose batches differ);
* the same search rankings (top 10 for a sample of stored vectors);
* a ``vectors.faiss`` that loads and matches the catalog, and no temporary files left behind.

Prints a JSON summary; exits 1 if anything differs. Only local files are touched (under --work).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clipsearch.testing import HashEmbedder

REPO = Path(__file__).resolve().parents[1]


def open_library(index: str, embedder: str, slow: float = 0.0, create: bool = False):
    from clipsearch import Library, ModelSpec

    if embedder == "hash":
        library = Library.open(index, model=ModelSpec("hash-test", "none"), create=create)
        library.use_embedder(HashEmbedder(slow=slow))
    else:
        library = Library.open(index, model=None, create=create)  # the model the index was built with
    return library


def child(args) -> None:
    """One index run (the process that gets killed)."""
    from clipsearch import IndexOptions

    library = open_library(args.index, args.embedder, args.slow, create=True)
    library.index([args.root], IndexOptions(batch_size=args.batch_size, workers=args.workers))
    library.close()


def make_photos(folder: Path, count: int, seed: int) -> None:
    from clipsearch.world.synthetic import generate_library

    generate_library(folder, count, seed)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_bytes(b"not a picture")
    some = sorted(folder.glob("*.jpg"))[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(some[: len(some) // 3])
    (folder / "copy-of-first.jpg").write_bytes(some)  # same content twice: two rows, one digest


def mutate_photos(folder: Path, rng: random.Random, cycle: int) -> None:
    """Change the folder as a user would between runs: new, rewritten, renamed and deleted photos."""
    from clipsearch.world.synthetic import generate_library

    photos = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".jpg", ".png"))
    picks = rng.sample(photos, min(len(photos), 12))
    for path in picks[:4]:
        path.rename(path.with_name(f"renamed-{cycle}-{path.name}"))
    for path in picks[4:7]:
        path.unlink()
    for path in picks[7:10]:
        source = photos[rng.randrange(len(photos))]
        if source.exists() and source != path:
            path.write_bytes(source.read_bytes()[:-1] + b"\x00")  # new content, usually still decodable
    generate_library(folder / f"new-{cycle}", rng.randint(10, 40), 1000 + cycle)


def command(args, index: Path) -> list[str]:
    if args.mode == "cli":
        model = ["--checkpoint", args.checkpoint] if args.checkpoint else []
        return [sys.executable, "-m", "clipsearch", "index", str(args.photos), "--index", str(index),
                "--model", "clipsearch-tiny", *model, "--batch-size", str(args.batch_size)] + (
                    ["--workers", str(args.workers)] if args.workers is not None else [])
    return [sys.executable, __file__, "child", "--index", str(index), "--root", str(args.photos),
            "--embedder", args.embedder, "--slow", str(args.slow), "--batch-size", str(args.batch_size)] + (
                ["--workers", str(args.workers)] if args.workers is not None else [])


def run_once(cmd: list[str], kill_after: float | None, timeout: float, index: Path, watch: bool = False,
             rng: random.Random | None = None) -> tuple[bool, float, int]:
    """Run ``cmd`` (an index run into ``index``) and SIGKILL its process group after ``kill_after`` s, or (with
    ``watch``) a random moment after its next batch is committed. Returns (killed mid-run, seconds, commits the
    run made before it ended), the commits read from the catalog's generation, not assumed from the aim."""
    started = time.monotonic()
    generation_before = _generation(index)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if watch:
        kill_after = _seconds_until_next_commit(process, index, timeout, started) + rng.uniform(0, 0.3)
    try:
        process.wait(timeout=max(0.0, started + kill_after - time.monotonic()) if kill_after is not None
                     else timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if kill_after is None:
            raise RuntimeError(f"index run did not finish within {timeout} s") from None
        return True, time.monotonic() - started, _generation(index) - generation_before
    stderr = process.stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"index run failed ({process.returncode}): {stderr[-2000:]}")
    return False, time.monotonic() - started, _generation(index) - generation_before


def _seconds_until_next_commit(process: subprocess.Popen, index: Path, timeout: float, started: float) -> float:
    """Poll the catalog until it changes (or the run ends); seconds since ``started``."""
    before = _generation(index)
    while process.poll() is None and time.monotonic() - started < timeout:
        if _generation(index) != before:
            break
        time.sleep(0.03)
    return time.monotonic() - started


def _generation(index: Path) -> int:
    """The catalog's generation (bumped by every committed batch); 0 before there is a catalog."""
    if not (index / "catalog.sqlite").is_file():
        return 0
    try:
        db = sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            return int(row[0]) if row else 0
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _stored_rows(index: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # no catalog yet: killed before the first commit


def catalog_rows(index: Path) -> dict[bytes, tuple]:
    db = sqlite3.connect(index / "catalog.sqlite")
    try:
        rows = db.execute("SELECT path, status, reason, size, mtime_ns, digest, width, height, vector FROM files")
        result = {}
        for path, *rest in rows:
            if bytes(path) in result:
                raise AssertionError(f"duplicate row for {path!r}")
            result[bytes(path)] = tuple(rest)
        return result
    finally:
        db.close()


def compare(args, clean: Path, crashed: Path) -> list[str]:
    """Everything that differs between the two indexes (empty when they are equivalent)."""
    problems = []
    a, b = catalog_rows(clean), catalog_rows(crashed)
    if set(a) != set(b):
        problems.append(f"paths differ: only clean {sorted(set(a) - set(b))[:5]}, only crashed "
                        f"{sorted(set(b) - set(a))[:5]}")
    for path in sorted(set(a) & set(b)):
        meta_a, meta_b = a[path][:-1], b[path][:-1]
        if meta_a != meta_b:
            problems.append(f"{path!r}: {meta_a} != {meta_b}")
        va, vb = a[path][-1], b[path][-1]
        if (va is None) != (vb is None):
            problems.append(f"{path!r}: vector present in only one index")
        elif va is not None and va != vb:
            x, y = np.frombuffer(va, np.float32), np.frombuffer(vb, np.float32)
            if args.embedder == "hash" or float(x @ y) < 0.9999:
                problems.append(f"{path!r}: vectors differ (cosine {float(x @ y):.6f})")
    problems += compare_rankings(args, clean, crashed)
    leftovers = [p.name for p in crashed.iterdir() if ".tmp-" in p.name]
    if leftovers:
        problems.append(f"temporary files left behind: {leftovers}")
    return problems


def compare_rankings(args, clean: Path, crashed: Path) -> list[str]:
    problems = []
    lib_a, lib_b = open_library(str(clean), args.embedder), open_library(str(crashed), args.embedder)
    try:
        if not lib_b.vector_index_is_saved():
            problems.append("the crashed index's vectors.faiss does not match its catalog")
        ids, matrix = (np.concatenate(parts) for parts in zip(*lib_a.iter_vectors()))
        sample = random.Random(args.seed).sample(range(len(ids)), min(20, len(ids)))
        for i in sample:
            ranked_a, ranked_b = _top_10(lib_a, matrix[i]), _top_10(lib_b, matrix[i])
            if ranked_a != ranked_b:
                problems.append(f"rankings differ for the vector of {ranked_a[0][1]}")
    finally:
        lib_a.close()
        lib_b.close()
    return problems


def _top_10(library, vector) -> list[tuple[float, str]]:
    """The ten best (score, path), equal scores by path: files with the same bytes (the loop copies some) tie,
    and two indexes may hold them under different ids, so search order among them is not the thing compared."""
    hits = library.search_vector(vector, 20)
    return sorted(((-round(h.score, 5), h.path) for h in hits))[:10]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    c = sub.add_parser("child")
    c.add_argument("--index", required=True)
    c.add_argument("--root", required=True)
    c.add_argument("--embedder", default="hash")
    c.add_argument("--slow", type=float, default=0.0)
    c.add_argument("--batch-size", type=int, default=8)
    c.add_argument("--workers", type=int)
    parser.add_argument("--files", type=int, default=300, help="synthetic photos to generate")
    parser.add_argument("--kills", type=int, default=30, help="kills that must land mid-run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=["api", "cli"], default="api")
    parser.add_argument("--embedder", choices=["hash", "tiny"], default="hash")
    parser.add_argument("--slow", type=float, default=0.05, help="seconds per batch added by the hash embedder")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--checkpoint", help="cli mode: weights for clipsearch-tiny other than the bundled ones")
    parser.add_argument("--work", help="working folder (default: a new temporary one)")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    if args.command == "child":
        child(args)
        return 0
    if args.mode == "cli":
        args.embedder = "tiny"
    work = Path(args.work or tempfile.mkdtemp(prefix="clipsearch-crashloop-"))
    args.photos = work / "photos"
    make_photos(args.photos, args.files, args.seed)
    rng = random.Random(args.seed)

    kills = attempts = aimed_after_commit = cycles = 0
    stored_at_kill: list[int] = []  # indexed rows in the crashed catalog right after each kill
    commits_at_kill: list[int] = []  # batches the killed run had committed before its kill
    estimate = 3.0  # seconds a run takes; updated from runs that finished
    started = time.monotonic()
    while kills < args.kills and attempts < 20 * args.kills + 20:
        attempts += 1
        # Half the kills land just after a batch commit (mid-embedding, or during the FAISS save at the end);
        # the rest at any moment: start-up, scan, worker start, mid-batch.
        if rng.random() < 0.5:
            killed, seconds, commits = run_once(command(args, work / "crashed"), None, args.timeout,
                                                work / "crashed", watch=True, rng=rng)
            aimed_after_commit += killed
        else:
            delay = rng.choice([rng.uniform(0, 0.6), rng.uniform(0, estimate * 1.1)])
            killed, seconds, commits = run_once(command(args, work / "crashed"), delay, args.timeout,
                                                work / "crashed")
        kills += killed
        if killed:
            stored_at_kill.append(_stored_rows(work / "crashed"))
            commits_at_kill.append(commits)
        if not killed:  # the index caught up: change the folder so the next runs have work to be killed in
            estimate = max(estimate, seconds)
            cycles += 1
            mutate_photos(args.photos, rng, cycles)
    _, final_seconds, _ = run_once(command(args, work / "crashed"), None, args.timeout, work / "crashed")
    _, clean_seconds, _ = run_once(command(args, work / "clean"), None, args.timeout, work / "clean")
    problems = compare(args, work / "clean", work / "crashed")
    summary = {
        "files": args.files, "mode": args.mode, "embedder": args.embedder, "kills": kills,
        "kills_aimed_after_a_commit": aimed_after_commit, "commits_before_each_kill": commits_at_kill,
        "stored_at_kill": stored_at_kill, "seed": args.seed,
        "attempts": attempts, "folder_changes": cycles,
        "clean_run_s": round(clean_seconds, 2), "final_run_s": round(final_seconds, 2),
        "loop_s": round(time.monotonic() - started, 1), "rows": len(catalog_rows(work / "clean")),
        "equal": not problems, "problems": problems[:20], "work": str(work),
    }
    print(json.dumps(summary, indent=2))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
