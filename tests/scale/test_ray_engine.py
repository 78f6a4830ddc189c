"""Indexing on Ray: a local Ray cluster started inside the test (loopback, 2 CPUs, a small object store, token
auth with a token that lives only in the environment) gives the same catalog rows and vectors as the local
engine; a worker killed mid-run loses and duplicates no file; a killed driver resumes."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
from click.testing import CliRunner
from PIL import Image

from clipsearch import IndexOptions, Library
from clipsearch.cli import main
from clipsearch.ingest.ray_engine import RayEngine
from clipsearch.store.catalog import Catalog
from clipsearch.world.synthetic import generate_library
from tests.scale.doubles import SPEC, PidReportingEmbedder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray head on this machine for this module; its address (a second driver can join it)."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    # Token auth is Ray's default for a new cluster (ray.init turns RAY_AUTH_MODE to token); a token given in the
    # environment is used as it is, never written to ~/.ray, and reaches the second driver of the resume test.
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    context = ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),  # short: Ray's socket paths must fit in 107 bytes
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}},
    )
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def photo(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)


def catalog_rows(index_dir: Path) -> dict[str, tuple]:
    catalog = Catalog.open(str(index_dir / "catalog.sqlite"))
    try:
        rows = {}
        for root in catalog.roots():
            for path, row in catalog.rows_under(root).items():
                rows[path] = (row.id, row.size, row.mtime_ns, row.inode, row.digest, row.status, row.reason,
                              row.width, row.height, catalog.get_vector(row.id))
        return rows
    finally:
        catalog.close()


def test_the_ray_engine_stores_the_same_rows_and_vectors_as_the_local_engine(ray_cluster, tmp_path, tiny_spec,
                                                                             tiny_embedder):
    photos = tmp_path / "photos"
    generate_library(photos, 24, 5150)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    local = Library.open(tmp_path / "local", model=tiny_spec, create=True)
    local.use_embedder(tiny_embedder)
    local.index([photos], IndexOptions(batch_size=8))
    local.close()
    result = CliRunner().invoke(main, ["index", str(photos), "--index", str(tmp_path / "ray"), "--model",
                                       "clipsearch-tiny", "--batch-size", "8", "--engine", "ray", "--ray-address",
                                       ray_cluster])
    assert result.exit_code == 0, result.output
    assert "indexed 24, unchanged 0, moved 0, removed 0, skipped 1" in result.output
    expected, got = catalog_rows(tmp_path / "local"), catalog_rows(tmp_path / "ray")
    assert set(got) == set(expected) and len(got) == 25
    for path, row in expected.items():
        assert got[path][:-1] == row[:-1], path  # same id, stat, digest, status, skip reason, size
        if row[-1] is not None:
            assert float(np.dot(got[path][-1], row[-1])) >= 0.9999, path


def test_a_worker_killed_mid_run_loses_and_duplicates_no_file(ray_cluster, tmp_path):
    photos = tmp_path / "photos"
    for i in range(40):
        photo(photos / f"p{i:02}.png", i)
    pids = tmp_path / "pids"
    pids.mkdir()
    library = Library.open(tmp_path / "index", model=SPEC, create=True)
    library.use_embedder(PidReportingEmbedder(str(pids), slow=0.4))
    killed: list[tuple[int, int]] = []
    progress: list[int] = []

    def kill_a_worker_once(done: int, total: int) -> None:
        progress.append(done)
        if done and not killed:
            victim = int(next(pids.iterdir()).name)
            os.kill(victim, signal.SIGKILL)
            killed.append((victim, done))

    report = library.index([photos], IndexOptions(batch_size=4, engine=RayEngine(stall_timeout=120)),
                           progress=kill_a_worker_once)
    assert killed and killed[0][1] < 40  # the kill landed while files were still to come
    assert report.indexed == 40 and report.skipped == []
    assert progress[-1] == 40 and sum(np.diff(progress)) == 40  # every file reached the writer exactly once
    rows = catalog_rows(tmp_path / "index")
    assert sorted(rows) == sorted(str(photos / f"p{i:02}.png") for i in range(40))
    assert len({row[0] for row in rows.values()}) == 40
    double = PidReportingEmbedder(str(pids))
    for path, row in rows.items():
        assert np.allclose(row[-1], double.encode_images([Image.open(path).convert("RGB")])[0], atol=1e-6)


def test_a_killed_driver_loses_nothing_and_a_rerun_resumes(ray_cluster, tmp_path):
    photos = tmp_path / "photos"
    for i in range(32):
        photo(photos / f"p{i:02}.png", 100 + i)
    pids = tmp_path / "pids"
    pids.mkdir()
    index_dir = tmp_path / "index"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.programs.index_on_ray", str(index_dir), str(photos), ray_cluster, str(pids)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in child.stdout:
            if line.startswith("committed") and int(line.split()[1]) > 0:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(30)
    committed = Catalog.open(str(index_dir / "catalog.sqlite"))
    kept = committed.counts()["files"]
    committed.close()
    assert 0 < kept < 32  # killed mid-run, with at least one batch stored
    library = Library.open(index_dir)
    library.use_embedder(PidReportingEmbedder(str(pids)))
    report = library.index(options=IndexOptions(batch_size=4, engine=RayEngine(stall_timeout=120)))
    assert report.unchanged == kept and report.indexed == 32 - kept  # resumed: nothing embedded twice
    assert sorted(catalog_rows(index_dir)) == sorted(str(photos / f"p{i:02}.png") for i in range(32))
