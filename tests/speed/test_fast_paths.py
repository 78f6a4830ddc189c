"""Every fast path of the Embedder against open_clip's own reference calls. Correctness only: nothing is timed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.bench_fidelity import cosines, error_against_spread, overlap_at_k
from clipsearch.imaging.decode import load_pixels
from clipsearch.model import accel
from clipsearch.model.embed import EmbedOptions, _encode_text_trimmed, _is_causal_clip_text
from tests.speed.conftest import make_embedder

TEXTS = [
    "a",
    "a large red circle on the left",
    "a small blue star at the top over a striped white background",
    "snow",
    "two children playing football in a park on a sunny afternoon with their dog, seen from far away",
]


def reference_image_vectors(embedder, images) -> np.ndarray:
    batch = torch.stack([embedder.preprocess(im) for im in images])
    with torch.inference_mode():
        return F.normalize(embedder.model.encode_image(batch), dim=-1).numpy()


def reference_text_vectors(embedder, texts) -> np.ndarray:
    with torch.inference_mode():
        return F.normalize(embedder.model.encode_text(embedder.tokenizer(texts)), dim=-1).numpy()


# -- text ---------------------------------------------------------------------------------------------------
def test_trimmed_text_matches_encode_text_at_full_context_length(random_tiny):
    assert _is_causal_clip_text(random_tiny.model)
    tokens = random_tiny.tokenizer(TEXTS)
    with torch.inference_mode():
        full = random_tiny.model.encode_text(tokens)
        trimmed = _encode_text_trimmed(random_tiny.model, tokens)
    assert torch.allclose(full, trimmed, atol=1e-5, rtol=1e-4)


def test_text_vectors_of_the_default_path_match_the_reference(random_tiny):
    assert random_tiny.text_backend == "torch"  # a small tower stays in fp32
    assert cosines(random_tiny.encode_texts(TEXTS), reference_text_vectors(random_tiny, TEXTS)).min() >= 0.9999


def test_text_towers_without_a_causal_mask_fall_back_to_encode_text():
    embedder = make_embedder(seed=1)
    embedder.model.attn_mask = None  # as SigLIP-style towers: every token sees the padding
    assert not _is_causal_clip_text(embedder.model)
    with torch.inference_mode():
        expected = F.normalize(embedder.model.encode_text(embedder.tokenizer(TEXTS)), dim=-1).numpy()
        trimmed = F.normalize(_encode_text_trimmed_unmasked(embedder.model, embedder.tokenizer(TEXTS)), dim=-1)
    np.testing.assert_allclose(embedder.encode_texts(TEXTS), expected, atol=1e-6)
    assert cosines(trimmed.numpy(), expected).min() < 0.9999  # trimming would really have changed the result


def _encode_text_trimmed_unmasked(model, tokens):
    length = int(tokens.argmax(dim=-1).max().item()) + 1
    x = model.token_embedding(tokens[:, :length]) + model.positional_embedding[:length]
    x = model.ln_final(model.transformer(x))
    return x[torch.arange(x.shape[0]), tokens[:, :length].argmax(dim=-1)] @ model.text_projection


def test_text_towers_with_other_pooling_fall_back(random_tiny):
    class Other:
        attn_mask = random_tiny.model.attn_mask
        text_pool_type = "last"
        token_embedding = positional_embedding = None

    assert not _is_causal_clip_text(Other())


def test_int8_text_tower_stays_close_to_the_reference(random_tiny):
    embedder = make_embedder(EmbedOptions(text_backend="torch-int8"))
    assert embedder.text_backend == "torch-int8"
    # Measured at 0.0018 of the distance to the nearest other text (seed 0); a vector taken for another text is >= 1.
    assert error_against_spread(embedder.encode_texts(TEXTS), reference_text_vectors(random_tiny, TEXTS)) <= 0.01


# -- images -------------------------------------------------------------------------------------------------
def test_encode_images_matches_preprocess_and_encode_image(random_tiny, photo_like_images):
    fast = random_tiny.encode_images(photo_like_images)
    assert cosines(fast, reference_image_vectors(random_tiny, photo_like_images)).min() >= 0.9999


def test_encode_images_matches_the_reference_on_vit_b_32(photo_like_images):
    embedder = make_embedder(EmbedOptions(image_backend="torch"), name="ViT-B-32")
    images = photo_like_images[:4]
    assert cosines(embedder.encode_images(images), reference_image_vectors(embedder, images)).min() >= 0.9999


def test_the_reference_option_uses_plain_open_clip(random_tiny, photo_like_images):
    reference = make_embedder(EmbedOptions(reference=True))
    assert reference.pixel_spec is None and reference.image_backend == "torch"
    np.testing.assert_allclose(
        reference.encode_images(photo_like_images[:3]),
        reference_image_vectors(random_tiny, photo_like_images[:3]),
        atol=1e-6,
    )


# The error as a share of the distance to the nearest other picture, measured (seed 0) at 0.0000 for ONNX fp32,
# 0.0040 for torch int8 and 0.0108 for ONNX int8; the bounds leave about 3x.
@pytest.mark.parametrize("backend, threshold", [("onnx", 0.001), ("torch-int8", 0.015), ("onnx-int8", 0.03)])
def test_image_backends_stay_close_to_torch_on_the_same_pixels(random_tiny, photo_like_images, backend, threshold):
    embedder = make_embedder(EmbedOptions(image_backend=backend))
    pixels = np.stack([load_pixels_from(im, embedder.pixel_spec) for im in photo_like_images])
    fast = embedder.encode_pixels(pixels)
    assert embedder._fast_tower is not None and embedder._fast_tower.name == backend
    assert error_against_spread(fast, random_tiny.encode_pixels(pixels)) <= threshold


def load_pixels_from(image, spec):
    from clipsearch.imaging.decode import resize_and_crop

    return resize_and_crop(image, spec)


def test_onnx_export_is_cached_and_a_query_never_builds_one(onnx_cache, photo_like_images):
    embedder = make_embedder(EmbedOptions(image_backend="onnx-int8"), seed=5)
    embedder.encode_images(photo_like_images[:2])  # a query image: no export yet, plain torch
    assert embedder._fast_tower is None
    before = set((onnx_cache / "onnx").glob("*.onnx")) if (onnx_cache / "onnx").is_dir() else set()
    pixels = np.stack([load_pixels_from(im, embedder.pixel_spec) for im in photo_like_images[:4]])
    embedder.encode_pixels(pixels)  # an indexing batch builds and caches it
    added = set((onnx_cache / "onnx").glob("*.onnx")) - before
    assert len(added) == 1
    stamp = next(iter(added)).stat().st_mtime_ns
    again = make_embedder(EmbedOptions(image_backend="onnx-int8"), seed=5)
    again.encode_images(photo_like_images[:2])  # a query in a new process reuses the cached export
    assert again._fast_tower is not None and next(iter(added)).stat().st_mtime_ns == stamp
    other = make_embedder(EmbedOptions(image_backend="onnx-int8"), seed=6)  # other weights, other file
    other.encode_pixels(pixels)
    assert len(set((onnx_cache / "onnx").glob("*.onnx")) - before) == 2


def test_auto_keeps_small_towers_in_torch_and_rejects_unknown_backends(random_tiny):
    assert random_tiny.image_backend == "torch"
    with pytest.raises(ValueError):
        accel.resolve_image_backend("fp4", random_tiny.model.visual, "cpu")
    with pytest.raises(ValueError):
        make_embedder(EmbedOptions(text_backend="fp4"))


def test_auto_picks_onnx_int8_for_large_towers_on_cpu_and_torch_on_cuda():
    import open_clip

    visual = open_clip.create_model("ViT-B-32", pretrained=None).visual
    assert accel.resolve_image_backend("auto", visual, "cpu") == "onnx-int8"  # onnx is a hard dependency
    assert accel.resolve_image_backend("auto", visual, "cuda") == "torch"
    assert accel.resolve_image_backend("onnx-int8", visual, "cuda:0") == "torch"


# -- ranking on the trained tiny model (held-out scenes) ------------------------------------------------------
@pytest.fixture(scope="module")
def held_out(scenes, trained_tiny):
    from PIL import Image

    folder, records = scenes
    paths = [str(folder / r["file"]) for r in records]
    queries = sorted({r["caption"] for r in records})
    reference = trained_tiny(reference=True)
    images = reference.encode_images([Image.open(p).convert("RGB") for p in paths])
    texts = reference.encode_texts(queries)
    return paths, queries, images, texts


@pytest.mark.parametrize("image_backend", ["torch", "torch-int8", "onnx", "onnx-int8"])
def test_indexing_paths_keep_the_top_10_of_the_reference(held_out, trained_tiny, image_backend):
    paths, queries, ref_images, ref_texts = held_out
    embedder = trained_tiny(image_backend=image_backend, text_backend="torch-int8")
    images = embedder.encode_pixels(np.stack([load_pixels(p, embedder.pixel_spec) for p in paths]))
    texts = embedder.encode_texts(queries)
    # Measured on the bundled model (draft-decoded pixels against full decodes): text->image 0.980-0.983,
    # image->image without the image itself 0.956-0.967 (onnx-int8 lowest).
    assert overlap_at_k(ref_texts @ ref_images.T, texts @ images.T) >= 0.97
    assert overlap_at_k(ref_images @ ref_images.T, images @ images.T, drop_self=True) >= 0.94


def test_default_paths_match_the_reference_vectors(held_out, trained_tiny):
    from PIL import Image

    paths, queries, ref_images, ref_texts = held_out
    embedder = trained_tiny()
    assert cosines(embedder.encode_texts(queries), ref_texts).min() >= 0.9999
    images = embedder.encode_images([Image.open(p).convert("RGB") for p in paths[:24]])
    assert cosines(images, ref_images[:24]).min() >= 0.9999


# -- CUDA (skips cleanly without a GPU) -----------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_path_matches_the_cpu_reference(random_tiny, photo_like_images):
    import open_clip

    from clipsearch.model.embed import Embedder

    model = random_tiny.model.to("cuda")
    try:
        embedder = Embedder(random_tiny.spec, model, random_tiny.preprocess, random_tiny.tokenizer, "cuda",
                            EmbedOptions())
        assert embedder.image_backend == "torch" and embedder.text_backend == "torch"
        images = embedder.encode_images(photo_like_images)
        texts = embedder.encode_texts(TEXTS)
    finally:
        random_tiny.model.to("cpu")
    assert images.dtype == np.float32 and open_clip is not None
    assert cosines(images, reference_image_vectors(random_tiny, photo_like_images)).min() >= 0.999
    assert cosines(texts, reference_text_vectors(random_tiny, TEXTS)).min() >= 0.999


# -- loading ----------------------------------------------------------------------------------------------------
def test_safetensors_checkpoints_load_in_place_with_open_clips_weights(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    from clipsearch.model.models import TINY_WEIGHTS, ModelSpec, load_model, load_safetensors_in_place

    model, _, _ = load_model(ModelSpec.parse("clipsearch-tiny"))
    expected, _, _ = open_clip.create_model_and_transforms("clipsearch-tiny", pretrained=str(TINY_WEIGHTS))
    ours, theirs = model.state_dict(), expected.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    # A checkpoint whose names differ (here: DataParallel's "module." prefix) is left to open_clip's loader.
    prefixed = tmp_path / "prefixed.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in theirs.items()}, str(prefixed))
    assert load_safetensors_in_place(model, prefixed) is False
    reloaded, _, _ = load_model(ModelSpec.parse("clipsearch-tiny", checkpoint=str(prefixed)))
    assert all(torch.equal(reloaded.state_dict()[k], theirs[k]) for k in theirs)
