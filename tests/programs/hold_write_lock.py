"""Hold an index's write lock (as an index run does) until killed.

    python -m tests.programs.hold_write_lock INDEX_DIR
"""

import sys
import time
from pathlib import Path

from clipsearch.library import _write_lock

if __name__ == "__main__":
    with _write_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(60)
