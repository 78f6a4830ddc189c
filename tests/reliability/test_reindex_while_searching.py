"""A re-index of a folder whose every file changed, while searches go on: every answer is whole and consistent."""

from __future__ import annotations

import os
import threading

from clipsearch import IndexOptions, Library
from tests.conftest import HashEmbedder
from tests.reliability.conftest import HASH_SPEC, SteppedEmbedder
from tests.reliability.hostile import encoded, picture
from tests.reliability.test_concurrency import fill


def test_searches_keep_answering_with_every_file_while_a_changed_folder_is_reindexed(hash_library, tmp_path):
    photos = tmp_path / "photos"
    fill(photos, 48)
    writer = hash_library()
    writer.index([photos], IndexOptions(batch_size=4, workers=1))
    stepped = SteppedEmbedder(HASH_SPEC)
    writer.use_embedder(stepped)
    reader = Library.open(writer.directory)  # a second handle, like the web app's
    reader.use_embedder(HashEmbedder(HASH_SPEC))
    before = {h.path: h.score for h in reader.search("anything", top_k=100)}
    for i, path in enumerate(sorted(photos.iterdir())):  # every photo edited: all 48 are embedded again
        path.write_bytes(encoded(picture(1000 + i, (40, 30)), "PNG"))
        os.utime(path, ns=(10**18 + i, 10**18 + i))
    run = threading.Thread(target=writer.index, args=([photos], IndexOptions(batch_size=4, workers=1)))
    run.start()
    answers = []
    for _ in range(12):  # 48 files in batches of 4: a search between every two commits
        assert stepped.next_batch_waiting()
        hits = reader.search("anything", top_k=100)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert sorted(h.path for h in hits) == sorted(before)  # never a file missing or doubled meanwhile
        answers.append({h.path: h.score for h in hits})
        stepped.go.release()
    run.join(60)
    assert not run.is_alive()
    writer.close()
    after = {h.path: h.score for h in reader.search("anything", top_k=100)}
    assert after.keys() == before.keys()
    changed = [sum(a[p] != before[p] for p in before) for a in answers]
    assert changed == list(range(0, 48, 4))  # batch by batch, in order, whole batches only
    assert sum(after[p] != before[p] for p in before) == 48
