"""The light query path: an index whose model was exported answers text searches without torch or open_clip,
with the reference path's vectors and rankings; without an export (or with a broken one) it falls back to
open_clip and says so. Nothing here is timed."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_fidelity import cosines, error_against_spread, overlap_at_k
from clipsearch import Library
from clipsearch.model import light
from clipsearch.model.models import EmbedOptions, ModelSpec
from tests.speed.conftest import make_embedder

RUN_CLI = Path(__file__).with_name("run_cli.py")
REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cache: Path | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if cache is not None:
        env["CLIPSEARCH_CACHE"] = str(cache)
    done = subprocess.run([sys.executable, str(RUN_CLI), *args], capture_output=True, text=True, env=env,
                          timeout=300)
    head, _, modules = done.stdout.rpartition("@@modules ")
    done.stdout = head
    return done, json.loads(modules)


def captions(folder: Path) -> list[str]:
    with open(folder / "captions.jsonl") as handle:
        return sorted({json.loads(line)["caption"] for line in handle})


# -- the CLI ------------------------------------------------------------------------------------------------
def test_a_cli_text_search_on_an_exported_index_imports_neither_torch_nor_open_clip(scenes_library):
    done, modules = run_cli("search", "a red circle", "--index", str(scenes_library.directory), "--json", "--top",
                            "10", "--verbose")
    assert done.returncode == 0, done.stderr
    assert modules["torch"] is False and modules["open_clip"] is False
    assert "text queries: ONNX Runtime" in done.stderr and "torch not imported" in done.stderr
    hits = json.loads(done.stdout)
    expected = scenes_library.search("a red circle", top_k=10)  # this library runs the torch embedder
    assert [h["path"] for h in hits] == [h.path for h in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], atol=1e-4)


def test_without_an_export_a_search_falls_back_to_open_clip_and_says_so(scenes_library, tmp_path):
    done, modules = run_cli("search", "a blue square", "--index", str(scenes_library.directory), "--json",
                            "--verbose", cache=tmp_path / "empty-cache")
    assert done.returncode == 0, done.stderr
    assert "text queries: open_clip (torch), since no exported towers" in done.stderr
    assert modules["torch"] is True
    expected = scenes_library.search("a blue square", top_k=10)
    assert [h["path"] for h in json.loads(done.stdout)] == [h.path for h in expected]


def test_a_broken_export_is_not_used_and_the_search_still_answers(scenes_library, model_cache, tmp_path):
    bundle = light.bundle_dir(scenes_library.model_identity())
    assert bundle is not None and (model_cache / "light" / bundle.name / light.MANIFEST).is_file()
    broken = tmp_path / "cache" / "light" / bundle.name
    shutil.copytree(bundle, broken)
    (broken / "text.onnx").write_bytes(b"not an onnx model")
    done, modules = run_cli("search", "a green star", "--index", str(scenes_library.directory), "--json",
                            "--verbose", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert "open_clip (torch), since cannot load" in done.stderr and modules["torch"] is True
    expected = scenes_library.search("a green star", top_k=10)
    assert [h["path"] for h in json.loads(done.stdout)] == [h.path for h in expected]


def test_reference_option_keeps_queries_on_open_clip(scenes_library, caplog):
    library = Library.open(scenes_library.directory, embed_options=EmbedOptions(reference=True))
    with caplog.at_level(logging.INFO, logger="clipsearch"):
        encoder = library.text_encoder
    assert type(encoder).__name__ == "Embedder" and "--reference asks for plain open_clip" in caplog.text
    library.close()


# -- the library --------------------------------------------------------------------------------------------
def test_library_search_uses_the_light_model_and_finds_what_open_clip_finds(scenes, scenes_library):
    library = Library.open(scenes_library.directory)  # a fresh process would open it just like this
    assert isinstance(library.text_encoder, light.LightModel)
    for query in captions(scenes[0])[:20] + ["red", "a circle - red", "2:star + 0.5:striped"]:
        got, expected = library.search(query, top_k=10), scenes_library.search(query, top_k=10)
        assert [h.id for h in got] == [h.id for h in expected], query
        np.testing.assert_allclose([h.score for h in got], [h.score for h in expected], atol=1e-4)
    library.close()


def test_image_queries_run_in_the_exported_image_tower_with_open_clips_results(scenes, scenes_library):
    library = Library.open(scenes_library.directory)
    assert isinstance(library.embedder, light.LightModel) and library.embedder.image_backend == "onnx-fp32"
    folder, records = scenes
    for record in records[:8]:
        query = [str(folder / record["file"]), "+", "0.5:striped"]
        got, expected = library.search(query, top_k=10), scenes_library.search(query, top_k=10)
        assert [h.id for h in got] == [h.id for h in expected]
    library.close()


def test_a_second_index_run_embeds_with_the_exported_model_and_matches_torch(
    scenes, tiny_spec, tiny_embedder, tmp_path
):
    folder, records = scenes
    first, second = tmp_path / "first", tmp_path / "second"
    for target, part in ((first, records[:6]), (second, records[6:12])):
        target.mkdir()
        for record in part:
            shutil.copy(folder / record["file"], target / record["file"])
    library = Library.open(tmp_path / "index", model=tiny_spec, create=True)
    library.use_embedder(tiny_embedder)
    library.index([first])
    library.close()
    done, modules = run_cli("index", str(second), "--index", str(tmp_path / "index"))
    assert done.returncode == 0, done.stderr
    assert modules["torch"] is False, "a later index run needs no torch once the model is exported"
    library = Library.open(tmp_path / "index")
    ids, vectors = zip(*((i, v) for chunk_ids, chunk in library.iter_vectors() for i, v in zip(chunk_ids, chunk)))
    paths = [library.file(int(i)).path for i in ids]
    from clipsearch.imaging.decode import load_pixels

    expected = tiny_embedder.encode_pixels(np.stack([load_pixels(p, tiny_embedder.pixel_spec) for p in paths]))
    assert len(paths) == 12 and cosines(np.stack(vectors), expected).min() >= 0.9999
    library.close()


# -- fidelity against the reference path ----------------------------------------------------------------------
def test_light_text_vectors_match_the_reference_on_the_tiny_models_held_out_scenes(scenes, scenes_library):
    from PIL import Image

    from clipsearch.model.embed import Embedder

    folder, records = scenes
    reference = Embedder.load(ModelSpec.parse("clipsearch-tiny"), EmbedOptions(reference=True))
    model = light.LightModel.open(scenes_library.model_identity())
    queries = captions(folder)
    ref_texts, texts = reference.encode_texts(queries), model.encode_texts(queries)
    # The exporter keeps an int8 text tower only at cosine >= 0.9995 with open_clip (else fp32). Measured on the
    # bundled model: fp32 tower, cosine 0.9999999, overlap 1.0.
    assert cosines(texts, ref_texts).min() >= 0.9995
    images = reference.encode_images([Image.open(folder / r["file"]).convert("RGB") for r in records])
    assert overlap_at_k(ref_texts @ images.T, texts @ images.T) >= 0.98


@pytest.fixture(scope="module")
def random_vit():
    """A random-weight ViT-B-32 (the real architecture) and its light export, made by an indexing batch."""
    embedder = make_embedder(name="ViT-B-32")
    embedder.encode_pixels(np.zeros((2, 224, 224, 3), np.uint8))  # exports the image tower and the bundle
    return embedder, light.LightModel.open(embedder.identity, images=True)


def varied_texts(count: int = 120, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    colours = "red blue green yellow purple orange white black".split()
    things = "dog cat car house boat bridge mountain beach flower cake".split()
    places = ["in a park", "on a beach", "at night", "in the rain", "under a tree", "next to a lake", "in the snow"]
    texts = {f"a {rng.choice(colours)} {rng.choice(things)} {rng.choice(places)}" for _ in range(4 * count)}
    return sorted(texts)[:count] + ["snow", "a", "東京の夜景", "🐶🌅 at the beach!", "word " * 80]


def test_light_text_vectors_match_the_reference_on_a_random_weight_vit_b_32(random_vit):
    import torch
    import torch.nn.functional as F

    embedder, model = random_vit
    assert model.manifest["text"]["variant"] in ("fp32", "int8", "int8-mlp")
    texts = varied_texts()
    with torch.inference_mode():
        reference = F.normalize(embedder.model.encode_text(embedder.tokenizer(texts)), dim=-1).numpy()
    got = np.concatenate([model.encode_texts([t]) for t in texts])  # one by one, as queries run
    assert cosines(got, reference).min() >= 0.999
    # Random weights put different texts close together; the export's error must be small against that spread.
    # Measured (int8-mlp text tower, seed 0): error 0.0063 of the nearest other text's distance, overlap 0.988.
    assert error_against_spread(got, reference) <= 0.02
    assert overlap_at_k(reference @ reference.T, got @ reference.T, drop_self=True) >= 0.97
    np.testing.assert_array_equal(model.encode_texts(texts[:7]), got[:7])  # a batch changes no vector


def test_the_light_image_tower_is_the_indexing_tower(random_vit):
    embedder, model = random_vit
    pixels = np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    assert model.image_backend == "onnx-int8" and embedder._fast_tower.name == "onnx-int8"
    assert cosines(model.encode_pixels(pixels), embedder.encode_pixels(pixels)).min() >= 0.9999
    assert embedder.model.visual is None, "the torch image tower is released once ONNX Runtime runs it"


# -- what cannot be exported ------------------------------------------------------------------------------------
def test_a_tower_without_a_causal_mask_is_exported_at_full_length_and_still_matches(caplog):
    import torch
    import torch.nn.functional as F

    from clipsearch.model.export import export_light_bundle

    embedder = make_embedder(seed=11)
    embedder.model.attn_mask = None  # as SigLIP-style towers: every token sees the padding
    assert export_light_bundle(embedder) is not None
    model = light.LightModel.open(embedder.identity)
    assert model.manifest["text"]["causal"] is False
    texts = varied_texts(20)
    with torch.inference_mode():
        reference = F.normalize(embedder.model.encode_text(embedder.tokenizer(texts)), dim=-1).numpy()
    assert cosines(model.encode_texts(texts), reference).min() >= 0.9999


def test_models_the_light_path_cannot_serve_get_no_export_and_a_reason(caplog):
    from clipsearch.model.export import export_light_bundle

    other_tokenizer = make_embedder(seed=12)
    other_tokenizer.tokenizer = lambda texts: other_tokenizer.__class__  # not CLIP's BPE tokenizer
    unpinned = make_embedder(seed=13)
    unpinned.spec = ModelSpec("clipsearch-tiny", None, None)
    unpinned._identity = {"name": "clipsearch-tiny", "pretrained": None, "weights_sha256": None}
    with caplog.at_level(logging.INFO, logger="clipsearch"):
        assert export_light_bundle(other_tokenizer) is None
        assert export_light_bundle(unpinned) is None
    assert "is not CLIP's BPE tokenizer" in caplog.text and "does not pin its weights" in caplog.text
    with pytest.raises(light.LightUnavailable, match="no exported towers"):
        light.LightModel.open(make_embedder(seed=14).identity)


def test_image_towers_the_graph_writer_does_not_cover_are_traced_and_still_match(monkeypatch, photo_like_images):
    from clipsearch.imaging.decode import resize_and_crop
    from clipsearch.model import onnx_graph

    traced = make_embedder(EmbedOptions(image_backend="onnx"), seed=21)
    written = make_embedder(EmbedOptions(image_backend="onnx"), seed=21)
    reference = make_embedder(EmbedOptions(image_backend="torch"), seed=21)
    pixels = np.stack([resize_and_crop(im, reference.pixel_spec) for im in photo_like_images])
    expected = reference.encode_pixels(pixels)
    assert cosines(written.encode_pixels(pixels), expected).min() >= 0.9999
    monkeypatch.setattr(onnx_graph, "supports_vision", lambda visual: False)
    traced.spec = ModelSpec("clipsearch-tiny", "random-seed21-traced", None)  # its own cache entry
    traced._identity = None
    assert cosines(traced.encode_pixels(pixels), expected).min() >= 0.9999
    assert traced._fast_tower.path != written._fast_tower.path
