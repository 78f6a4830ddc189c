"""Index a folder on an existing Ray cluster with a slow HashEmbedder, printing "committed N" after each batch,
so that a test can SIGKILL this driver mid-run.

    python -m tests.programs.index_on_ray INDEX_DIR PHOTO_FOLDER RAY_ADDRESS PID_FOLDER
"""

import os
import sys

import ray

from clipsearch import IndexOptions, Library
from clipsearch.ingest.ray_engine import RayEngine
from tests.scale.doubles import SPEC, PidReportingEmbedder

if __name__ == "__main__":
    index_dir, photos, address, pids = sys.argv[1:5]
    # the cluster's workers import the test double from this checkout
    ray.init(address=address, runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}},
             log_to_driver=False)
    library = Library.open(index_dir, model=SPEC, create=True)
    library.use_embedder(PidReportingEmbedder(pids, slow=0.5))
    engine = RayEngine(stall_timeout=120)
    library.index([photos], IndexOptions(batch_size=4, engine=engine),
                  progress=lambda done, total: print(f"committed {done}", flush=True))
    print("finished", flush=True)
