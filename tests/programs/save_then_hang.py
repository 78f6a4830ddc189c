"""Write a FAISS file but hang just before it is made durable, so a test can SIGKILL the writer mid-write.

    python -m tests.programs.save_then_hang PATH
"""

import os
import sys
import time

import numpy as np

from clipsearch.store.vectors import VectorIndex


def fsync_then_hang(fd):
    print("writing", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    index = VectorIndex.build(np.arange(50), np.eye(50, 16, dtype=np.float32), {"generation": 2})
    os.fsync = fsync_then_hang
    index.save(sys.argv[1])
