"""Hold an index's write lock (as an index run does) until killed.

    python -m tests.programs.hold_write_lock INDEX_DIR
"""

import sys
import time

from clipsearch import Library

if __name__ == "__main__":
    with Library.open(sys.argv[1]).write_lock():
        print("locked", flush=True)
        time.sleep(60)
