"""Faster ways to run a CLIP tower, each one checked against plain open_clip in ``tests/speed``.

Measured on the shared 2-core development VM, ViT-B-32 image tower, batch 32 (benchmarks/RESULTS.md):

- ``onnx-int8``: the image tower as an ONNX graph with int8 MatMuls (weights per channel, activations dynamic),
  run by ONNX Runtime: the fastest here by far. Standard open_clip ViTs are written straight from their weights
  (``onnx_graph``, ~2 s); other towers are traced by ``torch.onnx.export`` and quantised (~20 s). Either way the
  export is cached per model and weights under the user cache dir, and only ever built for an indexing run; the
  same file then serves the light model (``light``), so later runs need no torch at all.
- ``torch-int8``: ``quantize_dynamic`` of the Linear layers; no extra package, a modest gain.
- ``torch``: plain fp32 (bf16 autocast on this CPU was several times *slower*, so it is not offered here).
- Text: queries run at their real token length (``embed._encode_text_trimmed``); for large text towers the
  transformer's Linear layers also run in int8 (``torch-int8``), ~1.4x less CPU per query. (Without torch, the
  light model's exported text tower does the same in ONNX Runtime.)
- On CUDA the towers run in torch under fp16 autocast; nothing here is needed there.

``auto`` picks ``onnx-int8`` on CPU for towers big enough to gain from it (when onnx and onnxruntime are
installed), else ``torch``. Small towers such as the bundled clipsearch-tiny gain nothing and stay on torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from clipsearch.model.light import cache_dir, cpu_threads, make_session  # noqa: F401  (torch-free home)
from clipsearch.model.models import IMAGE_BACKENDS, TEXT_BACKENDS  # noqa: F401  (their torch-free home, for the CLI)

log = logging.getLogger(__name__)

# Below this many image-tower parameters the model is already cheap next to decoding; keep it in plain torch.
AUTO_MIN_PARAMETERS = 20_000_000
CACHE_FORMAT = 3  # 3: image towers written by onnx_graph


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_image_backend(requested: str, visual: torch.nn.Module, device: str) -> str:
    """The backend ``auto`` means for this tower on this device."""
    if requested not in IMAGE_BACKENDS:
        raise ValueError(f"unknown image backend {requested!r}; choose one of {', '.join(IMAGE_BACKENDS)}")
    if device.startswith("cuda"):
        return "torch"  # fp16 autocast on the GPU; int8 CPU kernels have no place there
    if requested != "auto":
        return requested
    parameters = sum(p.numel() for p in visual.parameters())
    if parameters >= AUTO_MIN_PARAMETERS and onnx_available():
        return "onnx-int8"
    return "torch"


class TorchTower:
    """A tower run by torch: fp32 on CPU, fp16 autocast on CUDA."""

    name = "torch"

    def __init__(self, module: torch.nn.Module, device: str):
        self.module = module
        self.device = device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.device.startswith("cuda"):
            with torch.autocast("cuda", dtype=torch.float16):
                return self.module(batch).float()
        return self.module(batch)


class TorchInt8Tower(TorchTower):
    """The Linear layers of a copy of the tower quantised to int8 (dynamic activations), CPU only."""

    name = "torch-int8"

    def __init__(self, module: torch.nn.Module):
        super().__init__(quantise_linear_int8(module), "cpu")


def quantise_linear_int8(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` whose Linear layers run in int8 (weights per tensor, activations dynamic)."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice; the API still works and is tested
        quantised = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(module).float(), {torch.nn.Linear}, dtype=torch.qint8
        )
    return quantised.eval()


class OnnxTower:
    """A tower exported to ONNX (optionally int8-quantised) and run by ONNX Runtime on the CPU."""

    def __init__(self, path: Path, name: str, threads: int | None = None):
        self.session = make_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.path = path
        self.name = name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def tower_fingerprint(identity: dict, module: torch.nn.Module, variant: str) -> str:
    """A key for a cached export: model identity, the tower's actual weights, and the tool versions."""
    import onnxruntime
    import open_clip

    digest = hashlib.blake2b(digest_size=16)
    versions = (CACHE_FORMAT, variant, torch.__version__, open_clip.__version__, onnxruntime.__version__)
    digest.update(repr((sorted(identity.items()), versions)).encode())
    # A hub tag or a checkpoint's checksum already names the weights; anything else is named by its bytes.
    named = bool(identity.get("weights_sha256") or identity.get("pretrained"))
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(repr((tuple(tensor.shape), str(tensor.dtype))).encode())
        if not named:
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


_export_lock = threading.Lock()


def cached_onnx_tower(
    module: torch.nn.Module, example: torch.Tensor, identity: dict, quantise: bool, build: bool = True
) -> OnnxTower | None:
    """The ONNX Runtime tower for ``module``, exported (and quantised) once and then reused from the cache.

    With ``build=False`` only an already cached export is used (``None`` otherwise): a query must never wait
    for an export. ``None`` as well when exporting fails (an architecture the exporter cannot trace).
    """
    variant = "int8" if quantise else "fp32"
    folder = cache_dir() / "onnx"
    path = folder / f"{tower_fingerprint(identity, module, variant)}-{variant}.onnx"
    with _export_lock:
        if not path.is_file():
            if not build:
                return None
            try:
                _export(module, example, path, quantise)
            except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways; torch still works
                log.warning("ONNX export of the image tower failed (%s); using torch", exc)
                return None
        try:
            return OnnxTower(path, "onnx-int8" if quantise else "onnx")
        except Exception as exc:  # noqa: BLE001 - a corrupt cache file: drop it, fall back to torch
            log.warning("cached ONNX tower %s is unusable (%s); using torch", path, exc)
            path.unlink(missing_ok=True)
            return None


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path, quantise: bool) -> None:
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    if _write_direct_graph(module, tuple(example.shape[1:]), path, quantise):
        return
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as scratch:
        fp32 = Path(scratch) / "tower.onnx"
        # With gradients on: without them MultiheadAttention takes a fused fast path the exporter cannot trace.
        with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.float().cpu().eval(),
                (torch.zeros(tuple(example.shape[1:]), dtype=torch.float32).unsqueeze(0),),
                str(fp32),
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter needs no onnxscript and handles open_clip's towers
            )
        final = fp32
        if quantise:
            final = Path(scratch) / "tower.int8.onnx"
            # MatMul only (the patch-embedding Conv gains nothing), weights per channel in 7 bits: full 8-bit
            # weights saturate the u8 x s8 multiply-add of AVX-512 kernels, and cost ranking agreement here.
            quantise_matmuls_int8(fp32, final, reduce_range=True)
        os.replace(final, path)  # atomic: a reader sees no file or a whole one


def _write_direct_graph(visual: torch.nn.Module, shape: tuple, path: Path, quantise: bool) -> bool:
    """Write an open_clip ``VisionTransformer`` straight from its weights (``onnx_graph``: ~1-2 s instead of
    ~15-25 s of tracing and quantising), after checking it against the torch tower; ``False`` when the tower
    is not one ``onnx_graph`` covers or the check fails (the caller then traces it)."""
    from clipsearch.model import onnx_graph

    if not onnx_graph.supports_vision(visual):
        return False
    # Weights per channel in 7 bits (reduce_range): full 8-bit weights saturate the u8 x s8 multiply-add of
    # AVX-512 kernels without VNNI, and cost ranking agreement there.
    graph = onnx_graph.vision_model(visual, lambda kind: quantise, reduce_range=True)
    data = graph.SerializeToString()
    session = make_session(data)
    pixels = torch.randn((3, *shape), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(visual.float()(pixels), dim=-1).numpy()
    got = session.run(None, {"pixels": pixels.numpy()})[0]
    cosine = float((np.sum(got * expected, axis=1) / np.linalg.norm(got, axis=1)).min())
    if cosine < (0.999 if quantise else 0.9999):
        log.warning("the directly written image tower drifts from torch (cosine %.5f); tracing it instead", cosine)
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: a reader sees no file or a whole one
    return True


def quantise_matmuls_int8(source: Path, target: Path, reduce_range: bool, select=None) -> int:
    """Dynamic int8 quantisation of every MatMul by a constant 2-D weight (whose node name ``select`` accepts,
    when given); returns how many were quantised.

    The same arithmetic as ``onnxruntime.quantization.quantize_dynamic(per_channel=True, weight_type=QInt8,
    op_types_to_quantize=["MatMul"])`` (symmetric per-column int8 weights, activations quantised per tensor at
    run time), written as the ``DynamicQuantizeMatMul`` nodes ONNX Runtime fuses that output into anyway. The
    library quantises one channel at a time in Python: 10-15 s for a ViT-B-32 tower, against ~0.5 s here, and
    the export is part of a model's first index run.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    qmax = 64.0 if reduce_range else 127.0  # onnxruntime's symmetric int8 ranges: [-64, 64] and [-127, 127]
    nodes, replaced, count = [], set(), 0
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight is None or len(weight.dims) != 2 or (select is not None and not select(node.name)):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight).astype(np.float32)
        absmax = np.abs(w).max(axis=0)
        scale = np.where(absmax > 0, 2.0 * absmax / (2.0 * qmax), 1.0).astype(np.float32)
        quantised = np.clip(np.round(w / scale), -qmax, qmax).astype(np.int8)
        base = f"{node.input[1]}_int8_{count}"
        count += 1
        graph.initializer.extend([
            numpy_helper.from_array(quantised, base),
            numpy_helper.from_array(scale, base + "_scale"),
            numpy_helper.from_array(np.zeros_like(quantised[0]), base + "_zero"),
        ])
        nodes.append(helper.make_node(
            "DynamicQuantizeMatMul", [node.input[0], base, base + "_scale", base + "_zero"], list(node.output),
            name=(node.name or base) + "_int8", domain="com.microsoft",
        ))
        users[node.input[1]] -= 1
        replaced.add(node.input[1])
    unused = {name for name in replaced if users[name] == 0}
    kept = [init for init in graph.initializer if init.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(target))
    return count
