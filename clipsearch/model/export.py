"""Exporting a model for the light model (``clipsearch.model.light``): the torch side, run once at index time.

``export_light_bundle`` writes into the cache: the text tower (an ONNX graph written from the weights by
``onnx_graph``; for large towers int8 where it keeps cosine ≥ ``INT8_MIN_COSINE`` with open_clip on the probe
texts, first every MatMul, then the MLPs only, else fp32), the very image tower file the index run embeds with,
the token embeddings, and the tokenizer's vocabulary. Before the bundle is published it checks the tokenizer's
tables and its ids on ``PROBE_TEXTS`` against open_clip's, and the text tower's vectors against
``encode_text``. A model whose tokenizer is not CLIP's BPE, whose identity does not pin its weights, or which
fails a check gets no bundle; its queries keep loading open_clip (the reason is logged).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clipsearch.model import accel, light
from clipsearch.model.light import TextInputs
from clipsearch.model.tokenizer import VOCAB_FILE, ClipTokenizer

log = logging.getLogger(__name__)

FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.9995  # the bar is 0.999 against the reference; keep a margin on the probes
PROBE_TEXTS = [
    "a",
    "snow",
    "a photo of a dog",
    "a large red circle on the left over a striped blue background",
    "two children playing football in a park on a sunny afternoon with their dog, seen from far away",
    "Ein Hund am Strand bei Sonnenuntergang",
    "un café crème à la terrasse, s'il vous plaît",
    "東京の夜景",
    "🐶🌅 dog + sunset!!!",
    "the eiffel tower, paris (france) — 1889 & now",
    "CAPITALS and MiXeD case, numbers 12345 and 3.14159",
    "word " * 90,  # longer than any context: truncated, ending on the end token
]


class Unexportable(Exception):
    """This model cannot have a light bundle; the message says why."""


_lock = threading.Lock()


def export_light_bundle(embedder) -> Path | None:
    """The model's light bundle folder, exported (and checked) first if it is not in the cache; ``None`` when
    the model cannot have one (the reason is logged) — its queries then run in open_clip as before."""
    identity = embedder.identity
    folder = light.bundle_dir(identity)
    if folder is None:
        log.info("no light export for %s: its identity does not pin its weights", embedder.spec.label)
        return None
    if (folder / light.MANIFEST).is_file():
        return folder
    with _lock:
        if (folder / light.MANIFEST).is_file():
            return folder
        try:
            _export(embedder, identity, folder)
        except Unexportable as exc:
            log.warning("queries of %s will load open_clip: %s", embedder.spec.label, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways; the torch path still works
            log.warning("exporting %s for light queries failed (%s: %s); queries will load open_clip",
                        embedder.spec.label, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            return None
    log.info("exported %s for light queries to %s", embedder.spec.label, folder)
    return folder


def _export(embedder, identity: dict, folder: Path) -> None:
    import open_clip

    model = embedder.model
    clean_mode, context_length = _tokenizer_settings(embedder.tokenizer)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".export-"))
    try:
        vocab = scratch / VOCAB_FILE
        shutil.copyfile(open_clip.tokenizer.default_bpe(), vocab)
        tokenizer = ClipTokenizer(str(vocab), context_length, clean_mode)
        _check_tokenizer(tokenizer, embedder.tokenizer)
        text = _export_text(model, tokenizer, embedder.tokenizer, scratch)
        manifest = {
            "format": light.LIGHT_FORMAT,
            "identity": identity,
            "dim": int(embedder.dim),
            "text": dict(text, vocab=VOCAB_FILE, context_length=context_length, clean=clean_mode),
            "image": _export_image(embedder, scratch),
            "made_with": {"open_clip": open_clip.__version__, "torch": torch.__version__,
                          "onnxruntime": _ort_version()},
        }
        with open(scratch / light.MANIFEST, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=1)
        try:
            os.rename(scratch, folder)  # atomic: readers see no bundle or a whole one
        except OSError:
            if not (folder / light.MANIFEST).is_file():  # not another process having won the race
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


# -- tokenizer ----------------------------------------------------------------------------------------------
def _tokenizer_settings(tokenizer) -> tuple[str, int]:
    from open_clip import tokenizer as oct

    if type(tokenizer) is not oct.SimpleTokenizer:
        raise Unexportable(f"its tokenizer ({type(tokenizer).__name__}) is not CLIP's BPE tokenizer")
    if tokenizer.reduction_fn is not None:
        raise Unexportable("its tokenizer reduces long texts by random masking")
    modes = {oct._clean_lower: "lower", oct._clean_whitespace: "whitespace"}
    if tokenizer.clean_fn not in modes:
        raise Unexportable("its tokenizer cleans text in a way the light tokenizer does not")
    return modes[tokenizer.clean_fn], int(tokenizer.context_length)


def _check_tokenizer(ours: ClipTokenizer, theirs) -> None:
    expected_ranks = {" ".join(pair): rank for pair, rank in theirs.bpe_ranks.items()}
    if ours.merge_ranks != expected_ranks or ours.vocab_size != len(theirs.encoder):
        raise Unexportable("its tokenizer's vocabulary is not open_clip's default one")
    if any(theirs.encoder["".join(pair)] != 512 + rank for pair, rank in theirs.bpe_ranks.items()):
        raise Unexportable("its tokenizer's ids are not laid out as CLIP's")
    if not np.array_equal(ours(PROBE_TEXTS), theirs(PROBE_TEXTS).numpy()):
        raise Unexportable("the light tokenizer's ids differ from open_clip's on the probe texts")


# -- text tower ---------------------------------------------------------------------------------------------
class _FullTextTower(torch.nn.Module):
    """``encode_text`` as it is, at the full context length (towers without a causal mask)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def _export_text(model, tokenizer: ClipTokenizer, reference_tokenizer, scratch: Path) -> dict:
    from clipsearch.model import onnx_graph

    with torch.inference_mode():
        reference = F.normalize(model.encode_text(reference_tokenizer(PROBE_TEXTS)), dim=-1).numpy()
    probe = tokenizer(PROBE_TEXTS)
    if not onnx_graph.supports_text(model):
        # Towers of other shapes are traced as they are, at the full context length: slower, still torch-free.
        path = scratch / "text.onnx"
        _onnx_export(_FullTextTower(model), (torch.from_numpy(tokenizer(["a photo of a dog"])),), path,
                     ["tokens"], {})  # one text at a time: traced attention may bake the example's batch size
        cosine = _text_cosine(path, probe, reference, None)
        if cosine < FP32_MIN_COSINE:
            raise Unexportable(f"the exported text tower drifts from open_clip (cosine {cosine:.5f})")
        return {"file": "text.onnx", "variant": "fp32", "causal": False, "embeddings": None,
                "min_cosine": round(cosine, 6)}
    np.save(scratch / "token_embedding.npy", model.token_embedding.weight.detach().float().cpu().numpy())
    np.save(scratch / "positional_embedding.npy", model.positional_embedding.detach().float().cpu().numpy())
    encoder = TextInputs(scratch / "token_embedding.npy", scratch / "positional_embedding.npy")
    # Large towers: every MatMul in int8 first; where that drifts, only the MLPs (2/3 of the weights, less
    # sensitive than the attention projections); else, and for small towers, fp32.
    tiers = [("fp32", lambda kind: False)]
    if sum(p.numel() for p in model.transformer.parameters()) >= accel.AUTO_MIN_PARAMETERS:
        tiers = [("int8", lambda kind: True), ("int8-mlp", lambda kind: kind.startswith("mlp"))] + tiers
    for variant, select in tiers:
        graph = onnx_graph.text_model(model, select, reduce_range=False)
        cosine = _text_cosine(graph.SerializeToString(), probe, reference, encoder)
        if cosine >= (FP32_MIN_COSINE if variant == "fp32" else INT8_MIN_COSINE):
            import onnx

            # Weights beside the graph, not inside it: ONNX Runtime then maps them instead of parsing and
            # copying them, which is most of a cold search's session time.
            onnx.save_model(graph, str(scratch / "text.onnx"), save_as_external_data=True,
                            all_tensors_to_one_file=True, location="text.weights", size_threshold=4096)
            return {"file": "text.onnx", "variant": variant, "causal": True,
                    "embeddings": {"embeddings": "token_embedding.npy", "positions": "positional_embedding.npy"},
                    "min_cosine": round(cosine, 6)}
        log.info("%s text tower kept cosine %.5f only", variant, cosine)
        del graph  # one candidate in memory at a time
    raise Unexportable(f"the exported text tower drifts from open_clip (cosine {cosine:.5f})")


def _text_cosine(path: Path | bytes, tokens: np.ndarray, reference: np.ndarray, encoder) -> float:
    """The worst cosine, over the probe texts run one by one (as queries run), against open_clip."""
    session = light.make_session(path)
    cosines = []
    for row, expected in zip(tokens, reference):
        ids = row[None, :]
        if encoder is not None:
            embeddings, eot = encoder(ids)
            vector = session.run(None, {"embeddings": embeddings, "eot": eot})[0][0]
        else:
            vector = session.run(None, {"tokens": ids})[0][0]
        cosines.append(float(vector @ expected / max(np.linalg.norm(vector), 1e-12)))
    return float(min(cosines))


# -- image tower --------------------------------------------------------------------------------------------
def _export_image(embedder, scratch: Path) -> dict | None:
    """The image tower the index run uses (ONNX int8 for large towers, else fp32 ONNX of the same weights)."""
    import open_clip

    spec = embedder.pixel_spec
    model = embedder.model
    if spec is None or not isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):
        log.info("the light export of %s has no image tower: its preprocessing is not the default one",
                 embedder.spec.label)
        return None
    tower = embedder._fast_tower if isinstance(embedder._fast_tower, accel.OnnxTower) else None
    if tower is None:
        if model.visual is None:
            return None  # released after an export that has since vanished: the next run re-exports
        example = torch.zeros((1, 3, spec.size, spec.size))
        quantise = accel.resolve_image_backend("auto", model.visual, "cpu") == "onnx-int8"
        tower = accel.cached_onnx_tower(model.visual, example, embedder.identity, quantise=quantise)
        if tower is None:
            return None
    # No second check here: it is the very file the index run embeds with (checked against torch when written),
    # so query images and indexed images go through the same numbers.
    variant = "int8" if tower.name == "onnx-int8" else "fp32"
    target = scratch / "image.onnx"
    try:
        os.link(tower.path, target)  # the very file the index run uses; a hard link costs no space
    except OSError:
        shutil.copyfile(tower.path, target)
    return {"file": "image.onnx", "variant": variant, "size": spec.size, "interpolation": spec.interpolation,
            "mean": embedder._mean.flatten().tolist(), "std": embedder._std.flatten().tolist()}


# -- shared -------------------------------------------------------------------------------------------------
def _onnx_export(module: torch.nn.Module, example: tuple, path: Path, inputs: list[str], axes: dict) -> None:
    # With gradients on: without them MultiheadAttention takes a fused fast path the exporter cannot trace.
    with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.float().cpu().eval(), example, str(path), input_names=inputs, output_names=["features"],
            dynamic_axes=dict(axes, features={0: "batch"}) if axes else None, opset_version=17, dynamo=False,
        )
