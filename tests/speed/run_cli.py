"""Run the clipsearch CLI in this process with the given arguments, then print which heavy modules it imported.

    python tests/speed/run_cli.py search "a red circle" --index DIR --json

The CLI's own output comes first; the last line is ``@@modules {"torch": false, "open_clip": false, ...}``.
"""

import json
import sys

from clipsearch.cli import main

HEAVY = ("torch", "open_clip", "torchvision", "gradio")

if __name__ == "__main__":
    code = 0
    try:
        main(args=sys.argv[1:], prog_name="clipsearch")
    except SystemExit as exc:
        code = exc.code or 0
    sys.stdout.flush()
    print("\n@@modules " + json.dumps({name: name in sys.modules for name in HEAVY}), flush=True)
    sys.exit(code)
