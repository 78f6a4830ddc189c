"""Open a catalog whose schema is older, and SIGKILL this process inside the last upgrade step, after its
statements ran but before its transaction commits.

    python -m tests.programs.upgrade_and_die CATALOG_FILE
"""

import os
import signal
import sys

from clipsearch.store import migrations
from clipsearch.store.catalog import Catalog

if __name__ == "__main__":
    last = migrations.MIGRATIONS[-1]

    def step_then_die(db):
        last(db)
        print("upgraded, not committed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    migrations.MIGRATIONS[-1] = step_then_die
    Catalog.open(sys.argv[1])
