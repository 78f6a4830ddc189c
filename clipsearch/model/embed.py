"""Turning pixels and words into unit vectors in CLIP's shared space.

The ``Embedder`` wraps one open_clip model. Its fast paths (pixels prepared by decode workers, the image tower
run by ONNX Runtime in int8 on CPUs, text run at its real token length) are checked in ``tests/speed`` against
open_clip's own ``preprocess``/``encode_*`` reference path, which ``EmbedOptions(reference=True)`` forces.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clipsearch.imaging.decode import PixelSpec, resize_and_crop
from clipsearch.model import accel
from clipsearch.model.models import EmbedOptions, ModelSpec, load_model


def pick_device(requested: str | None) -> str:
    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """Encodes images and texts with one open_clip model into L2-normalised float32 vectors."""

    def __init__(self, spec: ModelSpec, model, preprocess, tokenizer, device: str, options: EmbedOptions):
        self.spec = spec
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.options = options
        cfg = _preprocess_cfg(model)
        self._mean = torch.tensor(cfg["mean"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg["std"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.pixel_spec = None if options.reference else _pixel_spec(cfg)
        self.image_backend = _choose_image_backend(model, device, options)
        self._fast_tower = None  # built on the first batch from decode workers (an indexing run)
        self.text_backend = _choose_text_backend(model, device, options)
        self._text_model_int8 = None  # made on the first text query: an index run never needs it
        with torch.inference_mode():
            self.dim = int(self.model.encode_text(self.tokenizer(["a photo"]).to(device)).shape[1])
        self._identity: dict | None = None
        self._light_exported = False

    @property
    def identity(self) -> dict:
        """``spec.identity()``, computed once (it checksums the checkpoint file)."""
        if self._identity is None:
            self._identity = self.spec.identity()
        return self._identity

    @classmethod
    def load(cls, spec: ModelSpec, options: EmbedOptions = EmbedOptions()) -> Embedder:
        device = pick_device(options.device)
        model, preprocess, tokenizer = load_model(spec, device=device)
        return cls(spec, model, preprocess, tokenizer, device, options)

    # -- images -------------------------------------------------------------------------------------------
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Encode a uint8 batch (n, size, size, 3) prepared by ``decode.load_pixels`` with ``pixel_spec``.

        This is the indexing path: the first call may build (and cache) the fast image tower, and exports the
        model for light queries (``clipsearch.model.export``) unless the cache has it already.
        """
        with torch.inference_mode():
            vectors = self._encode_pixels(pixels, build=True)
        if not self._light_exported:  # outside inference mode: the exporter traces with autograd on
            self._light_exported = True
            self._export_light()
        return vectors

    def _export_light(self) -> None:
        """Export the towers for torch-free queries (once per model, cached), then drop the torch image tower
        when ONNX Runtime runs it: it would only hold ~350 MB (ViT-B-32) for nothing."""
        from clipsearch.model import light

        if isinstance(self._fast_tower, accel.OnnxTower) and self.model.visual is not None:
            self.model.visual = None  # first: the export below is this run's memory peak
            gc.collect()
        refusal = light.light_refusal(self.options, images=True)
        if refusal is None and not self.device.startswith("cuda"):
            from clipsearch.model.export import export_light_bundle

            export_light_bundle(self)
            gc.collect()

    def _encode_pixels(self, pixels: np.ndarray, build: bool) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)
        batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
        batch = (batch - self._mean) / self._std
        return self._encode_image_tensor(batch, build=build)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Encode RGB PIL images (the same numbers as open_clip's ``preprocess`` + ``encode_image``)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.pixel_spec is not None:
            pixels = np.stack([resize_and_crop(im, self.pixel_spec) for im in images])
            return self._encode_pixels(pixels, build=False)  # a query never waits for an export
        batch = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        return self._encode_image_tensor(batch)

    def _encode_image_tensor(self, batch: torch.Tensor, build: bool = False) -> np.ndarray:
        features = self._image_tower(batch, build)(batch)
        return F.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)

    def _image_tower(self, example: torch.Tensor, build: bool):
        """The callable that runs the image tower. Only an indexing batch (``build``) may pay for an export;
        a query uses an export already cached, or plain torch."""
        if self._fast_tower is not None:
            return self._fast_tower
        if self.options.reference:
            return self.model.encode_image
        backend = self.image_backend
        if backend == "torch":
            if self.device.startswith("cuda"):
                self._fast_tower = accel.TorchTower(self.model.visual, self.device)
                return self._fast_tower
            return self.model.encode_image
        if backend == "torch-int8":
            self._fast_tower = accel.TorchInt8Tower(self.model.visual)
            return self._fast_tower
        tower = accel.cached_onnx_tower(
            self.model.visual, example, self.identity, quantise=backend == "onnx-int8", build=build
        )
        if tower is None:
            if build:
                self.image_backend = "torch"  # the export failed; do not retry on every batch
            return self.model.encode_image
        self._fast_tower = tower
        return tower

    # -- text ---------------------------------------------------------------------------------------------
    @property
    def _text_model(self):
        if self.text_backend != "torch-int8":
            return self.model
        if self._text_model_int8 is None:
            self._text_model_int8 = _int8_text_model(self.model)
        return self._text_model_int8

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts into unit vectors."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        if not self.options.reference and _is_causal_clip_text(self.model):
            features = _encode_text_trimmed(self._text_model, tokens)
        else:
            features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)


def _choose_image_backend(model, device: str, options: EmbedOptions) -> str:
    import open_clip

    if options.reference:
        return "torch"
    if not isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):
        return "torch"  # CoCa and other towers whose encode_image is more than ``visual``
    return accel.resolve_image_backend(options.image_backend, model.visual, device)


def _choose_text_backend(model, device: str, options: EmbedOptions) -> str:
    if options.text_backend not in accel.TEXT_BACKENDS:
        raise ValueError(f"unknown text backend {options.text_backend!r}; choose one of {accel.TEXT_BACKENDS}")
    if options.reference or device.startswith("cuda") or not _is_causal_clip_text(model):
        return "torch"
    if options.text_backend != "auto":
        return options.text_backend
    parameters = sum(p.numel() for p in model.transformer.parameters())
    return "torch-int8" if parameters >= accel.AUTO_MIN_PARAMETERS else "torch"


def _int8_text_model(model):
    """The pieces of the text tower ``_encode_text_trimmed`` uses, with the transformer's Linear layers in int8."""
    return SimpleNamespace(
        token_embedding=model.token_embedding,
        positional_embedding=model.positional_embedding,
        transformer=accel.quantise_linear_int8(model.transformer),
        attn_mask=model.attn_mask,
        ln_final=model.ln_final,
        text_projection=model.text_projection,
    )


def _preprocess_cfg(model) -> dict:
    import open_clip

    cfg = dict(open_clip.get_model_preprocess_cfg(model))
    cfg.setdefault("mean", open_clip.OPENAI_DATASET_MEAN)
    cfg.setdefault("std", open_clip.OPENAI_DATASET_STD)
    return cfg


def _pixel_spec(cfg: dict) -> PixelSpec | None:
    """The worker-side fast path covers open_clip's default transform; anything else uses ``preprocess``."""
    size = cfg.get("size")
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or size[0] != size[1]:
            return None
        size = size[0]
    if cfg.get("resize_mode", "shortest") != "shortest":
        return None
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in ("bicubic", "bilinear"):
        return None
    return PixelSpec(size=int(size), interpolation=interpolation)


def _is_causal_clip_text(model) -> bool:
    """True for open_clip's CLIP text tower: causal mask and pooling at the end-of-text (argmax) token.

    Under a causal mask nothing before the end-of-text token sees the padding after it, so trimming the padding
    changes nothing. SigLIP-style towers (no mask, or other pooling) do not have that property.
    """
    return (
        getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", None) == "argmax"
        and hasattr(model, "token_embedding")
        and hasattr(model, "positional_embedding")
    )


def _encode_text_trimmed(model, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` run only up to the longest real token sequence in the batch (about 5x faster)."""
    length = int(tokens.argmax(dim=-1).max().item()) + 1  # the end-of-text token has the highest id
    tokens = tokens[:, :length]
    cast_dtype = _text_cast_dtype(model)
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    if model.text_projection is not None:
        projection = model.text_projection
        x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
    return x


def _text_cast_dtype(model) -> torch.dtype:
    try:
        return model.transformer.get_cast_dtype()
    except AttributeError:  # quantised Linear layers expose ``weight`` as a method
        return model.token_embedding.weight.dtype
