"""Which model makes the vectors, and how it is loaded through open_clip.

Every vector in an index knows the model that made it (``ModelSpec.identity``), so two models never mix.
torch and open_clip are imported only inside ``load_model``: status and catalog-only commands stay light.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from clipsearch.errors import ModelError

TINY_MODEL = "clipsearch-tiny"
# How the towers may run (clipsearch.model.accel); "auto" picks by measurement, see benchmarks/RESULTS.md.
IMAGE_BACKENDS = ("auto", "torch", "torch-int8", "onnx", "onnx-int8")
TEXT_BACKENDS = ("auto", "torch", "torch-int8")
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
WORLD_DIR = Path(__file__).resolve().parent.parent / "world"
TINY_CONFIG = WORLD_DIR / "model_configs" / f"{TINY_MODEL}.json"
TINY_WEIGHTS = WORLD_DIR / "weights" / f"{TINY_MODEL}.safetensors"


@dataclass(frozen=True)
class EmbedOptions:
    """How to run the model. ``reference=True`` forces plain open_clip calls everywhere (the ground truth)."""

    device: str | None = None  # None: CUDA when available, else CPU
    reference: bool = False
    # "auto" (ONNX Runtime int8 for large towers on CPU, else torch), "torch", "torch-int8", "onnx", "onnx-int8".
    image_backend: str = "auto"
    # "auto" (int8 Linear layers for large causal text towers on CPU, else fp32), "torch", "torch-int8".
    text_backend: str = "auto"
    # A process that answers one query and exits (``clipsearch search``): load towers fast rather than run fast.
    one_shot: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """An open_clip model: architecture name plus a hub tag, an ``hf-hub:`` id, or a local checkpoint file."""

    name: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    checkpoint: str | None = None

    @classmethod
    def parse(cls, name: str | None, pretrained: str | None = None, checkpoint: str | None = None) -> ModelSpec:
        """Build a spec from CLI-style options; ``name`` may be ``NAME/TAG`` or ``hf-hub:org/repo``."""
        name = (name or DEFAULT_MODEL).strip()
        if checkpoint:
            return cls(name, None, os.path.abspath(os.path.expanduser(checkpoint)))
        if name.startswith("hf-hub:") or name == TINY_MODEL:
            return cls(name, None, None)
        if pretrained is None and "/" in name:
            name, pretrained = name.split("/", 1)
        if pretrained is None:
            pretrained = DEFAULT_PRETRAINED if name == DEFAULT_MODEL else None
        return cls(name, pretrained, None)

    @property
    def label(self) -> str:
        """Short human name, e.g. ``ViT-B-32/laion2b_s34b_b79k``."""
        if self.checkpoint:
            return f"{self.name} ({os.path.basename(self.checkpoint)})"
        return f"{self.name}/{self.pretrained}" if self.pretrained else self.name

    def weights_file(self) -> Path | None:
        if self.checkpoint:
            return Path(self.checkpoint)
        return TINY_WEIGHTS if self.name == TINY_MODEL else None

    def identity(self) -> dict:
        """What must match for two vectors to be comparable: architecture, tag, and the weights' checksum."""
        weights = self.weights_file()
        checksum = file_checksum(weights) if weights is not None and weights.is_file() else None
        return {"name": self.name, "pretrained": self.pretrained, "weights_sha256": checksum}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        return cls(data.get("name", DEFAULT_MODEL), data.get("pretrained"), data.get("checkpoint"))


_checksums: dict[tuple, str] = {}


def file_checksum(path: Path) -> str:
    """SHA-256 of a weights file, remembered per (path, inode, size, mtime): a ViT-B-32 checkpoint costs ~1 s to
    hash, and one index run asks for its model's identity several times."""
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        key = (os.path.abspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if key not in _checksums:
            digest = hashlib.sha256()
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
            _checksums[key] = digest.hexdigest()
    return _checksums[key]


def register_tiny_model() -> None:
    """Make ``clipsearch-tiny`` known to open_clip (idempotent)."""
    import open_clip

    if TINY_MODEL not in open_clip.list_models():
        open_clip.add_model_config(str(TINY_CONFIG))


def load_model(spec: ModelSpec, device: str = "cpu"):
    """Create ``(model, preprocess, tokenizer)`` with open_clip, or raise ``ModelError`` with a short reason."""
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - the package depends on it
        raise ModelError(f"open_clip is not installed ({exc}); pip install open-clip-torch") from None

    if spec.name == TINY_MODEL:
        register_tiny_model()
    weights = spec.weights_file()
    if weights is not None and not weights.is_file():
        raise ModelError(f"model weights not found: {weights}")
    pretrained = str(weights) if weights is not None else spec.pretrained
    if not spec.name.startswith("hf-hub:") and spec.name not in open_clip.list_models():
        raise ModelError(
            f"unknown model {spec.name!r}; `python -c \"import open_clip; print(open_clip.list_models())\"` "
            f"lists the names, or use --model {TINY_MODEL}"
        )
    if weights is None and spec.pretrained != "none" and not _hub_weights_reachable(spec):
        raise ModelError(
            f"model weights for {spec.label} could not be downloaded: no network and not in the Hugging Face "
            f"cache. Connect once to download them, pass --checkpoint FILE, or use --model {TINY_MODEL} for the "
            "bundled offline model."
        )
    try:
        in_place = weights is not None and weights.suffix == ".safetensors"
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.name, pretrained=pretrained, device=device, load_weights=not in_place
        )
        if in_place and not load_safetensors_in_place(model, weights):
            open_clip.load_checkpoint(model, str(weights))  # keys to convert: open_clip's loader knows how
        tokenizer = open_clip.get_tokenizer(spec.name)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise ModelError(_weights_message(spec, exc)) from None
    except Exception as exc:  # huggingface_hub raises many network error types; all mean the same to a user
        if type(exc).__module__.split(".")[0] in {"huggingface_hub", "requests", "httpx", "urllib3"}:
            raise ModelError(_weights_message(spec, exc)) from None
        raise
    model.eval()
    return model, preprocess, tokenizer


_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def load_safetensors_in_place(model, path: Path) -> bool:
    """Copy a safetensors checkpoint into ``model``'s own tensors one at a time; ``False`` (nothing copied) when
    its names or shapes are not exactly the model's (then open_clip's loader converts them).

    open_clip's loader reads the whole checkpoint and then copies it into the model: two copies of the weights
    at once (~1.2 GB for ViT-B-32, the first index run's peak). The file is read with plain reads, not mapped,
    so its pages do not count as this process's memory either. The format is a little-endian header length, a
    JSON header of ``name: {dtype, shape, data_offsets}``, then the raw tensors.
    """
    import json
    import struct

    import torch

    targets = model.state_dict(keep_vars=True)
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        header.pop("__metadata__", None)
        if set(header) != set(targets) or any(
            list(targets[k].shape) != info["shape"] or info["dtype"] not in _SAFETENSORS_DTYPES
            for k, info in header.items()
        ):
            return False
        with torch.no_grad():
            for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
                start, end = info["data_offsets"]
                handle.seek(8 + length + start)
                data = bytearray(handle.read(end - start))
                dtype = getattr(torch, _SAFETENSORS_DTYPES[info["dtype"]])
                tensor = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
                targets[name].copy_(tensor.reshape(info["shape"]))
    return True


def _hub_weights_reachable(spec: ModelSpec) -> bool:
    """Cached locally, or the hub's host resolves. Without this a machine with no network waits ~1 minute
    in huggingface_hub's retries before failing."""
    import socket

    import open_clip

    if spec.pretrained is None and not spec.name.startswith("hf-hub:"):
        return True  # random initialisation: nothing to fetch
    repo = spec.name[len("hf-hub:"):] if spec.name.startswith("hf-hub:") else ""
    if not repo:
        repo = (open_clip.get_pretrained_cfg(spec.name, spec.pretrained) or {}).get("hf_hub", "").strip("/")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_config.json"):
            if isinstance(try_to_load_from_cache(repo, filename), str):
                return True
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        return False
    return True


def _weights_message(spec: ModelSpec, exc: Exception) -> str:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
    if spec.checkpoint or spec.name == TINY_MODEL:
        return f"model {spec.label} could not be loaded from its checkpoint: {first_line}"
    return (
        f"model weights for {spec.label} could not be loaded (no network, or not in the Hugging Face cache): "
        f"{first_line}. Connect once to download them, pass --checkpoint FILE, or use --model {TINY_MODEL} "
        "for the bundled offline model."
    )
