"""Index one folder with the HashEmbedder and print the report and the indexed paths as JSON.

    python -m tests.programs.index_with_hash_model INDEX_DIR PHOTO_FOLDER
"""

import json
import sys

from clipsearch import IndexOptions, Library, ModelSpec
from clipsearch.testing import HashEmbedder

if __name__ == "__main__":
    spec = ModelSpec("hash-test", "none")
    library = Library.open(sys.argv[1], model=spec, create=True)
    library.use_embedder(HashEmbedder(spec))
    report = library.index([sys.argv[2]], IndexOptions(workers=1))
    print(json.dumps({"report": report.to_dict(), "files": [h.path for h in library.search("x", top_k=100)]}))
