"""Run the clipsearch CLI in this process, then print (as JSON, last line) which heavy modules it imported.

    python -m tests.programs.cli_imports status --index DIR
"""

import json
import sys

from clipsearch.cli import main

HEAVY = ("torch", "open_clip", "gradio", "faiss", "onnxruntime", "ui")

if __name__ == "__main__":
    try:
        main(sys.argv[1:], prog_name="clipsearch")
    except SystemExit as exit_:
        code = exit_.code or 0
    else:
        code = 0
    print(json.dumps({"exit": code, "imported": [m for m in HEAVY if m in sys.modules]}))
