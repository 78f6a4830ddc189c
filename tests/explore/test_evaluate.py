"""`eval`: recall@K and MRR from a captions file, checked against a recall computed here from first principles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from clipsearch import ClipsearchError
from clipsearch.cli import main
from tests.explore.conftest import write_jsonl


def independent_recall(library, captions: dict[str, str], folder, ks):
    """Brute force: every caption against every stored vector, the caption's own photo's place in the order."""
    chunks = list(library.iter_vectors())
    ids = np.concatenate([c[0] for c in chunks])
    vectors = np.concatenate([c[1] for c in chunks]).astype(np.float64)
    rows = library.files(ids.tolist())
    where = {rows[int(i)].path: n for n, i in enumerate(ids)}
    queries = library.embedder.encode_texts(list(captions.values())).astype(np.float64)
    places = []
    for name, query in zip(captions, queries):
        scores = vectors @ query
        order = np.argsort(-scores, kind="stable")
        target = where[str((folder / name).resolve())]
        place = int(np.flatnonzero(order == target)[0]) + 1
        while place > 1 and scores[order[place - 2]] <= scores[target] + 1e-6:
            place -= 1  # a tie counts in the photo's favour, as the library counts it
        places.append(place)
    places = np.array(places)
    return {k: float((places <= k).mean()) for k in ks}, float((1 / places).mean())


def test_eval_agrees_with_an_independent_recall_computation(planted, tmp_path):
    captions = dict(sorted(planted.captions.items())[:40])
    path = write_jsonl(tmp_path / "captions.jsonl",
                       [{"file": str(planted.folder / n), "caption": c} for n, c in captions.items()])
    result = planted.library.evaluate(path, ks=(1, 5, 10))
    recall, mrr = independent_recall(planted.library, captions, planted.folder, (1, 5, 10))
    assert result.n == 40 and result.skipped == 0
    assert result.recall == pytest.approx(recall, abs=1e-9) and result.mrr == pytest.approx(mrr, abs=1e-6)
    assert result.recall[10] > result.recall[1] > 0.2  # the tiny model does find scenes by their captions


def test_csv_with_relative_paths_gives_the_same_figures_as_jsonl(planted, tmp_path):
    captions = dict(sorted(planted.captions.items())[:25])
    jsonl = write_jsonl(planted.folder.parent / f"{tmp_path.name}.jsonl",
                        [{"file": f"{planted.folder.name}/{n}", "caption": c} for n, c in captions.items()])
    csv = planted.folder.parent / f"{tmp_path.name}.csv"
    csv.write_text("file,caption\n" + "".join(f'{planted.folder.name}/{n},"{c}"\n' for n, c in captions.items()))
    try:
        a, b = planted.library.evaluate(jsonl), planted.library.evaluate(csv)
    finally:
        jsonl.unlink()
        csv.unlink()
    assert a.n == b.n == 25 and a.recall == b.recall and a.mrr == b.mrr


def test_captions_of_photos_that_are_not_indexed_are_skipped_and_counted(planted, tmp_path):
    records = [{"file": str(planted.folder / n), "caption": c} for n, c in sorted(planted.captions.items())[:10]]
    records += [{"file": "elsewhere/none.jpg", "caption": "a red circle"}, {"caption": "no file"}]
    path = write_jsonl(tmp_path / "c.jsonl", records)
    with open(path, "a") as handle:
        handle.write("this line is not JSON\n")
    result = planted.library.evaluate(path)
    assert result.n == 10 and result.skipped == 3
    assert result.reasons == {"photo not indexed": 1, "malformed line": 2}


@pytest.mark.parametrize(("content", "message"), [
    (None, "not found"),
    ("", "no captions"),
    ("{not json\n[1, 2]\n", "no usable captions"),
    ('{"file": "nowhere.jpg", "caption": "x"}\n', "names an indexed photo"),
    (b"\xff\xfe\x00 binary", "not UTF-8"),
])
def test_a_bad_captions_file_gets_one_clear_line(planted, tmp_path, content, message):
    path = tmp_path / "captions.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ClipsearchError, match=message):
        planted.library.evaluate(path)
    result = CliRunner().invoke(main, ["eval", str(path), "--index", str(planted.library.directory)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("clipsearch: error: ") and message in result.output


def test_eval_cli_prints_json_with_recall_by_k(planted, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"file": str(planted.folder / n), "caption": c}
                                              for n, c in sorted(planted.captions.items())[:15]])
    result = CliRunner().invoke(main, ["eval", str(path), "--index", str(planted.library.directory),
                                       "--k", "1,3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 15 and set(report["recall"]) == {"1", "3"} and report["skipped"] == 0
    assert 0 < report["mrr"] <= 1
