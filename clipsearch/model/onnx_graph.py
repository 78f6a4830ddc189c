"""ONNX graphs of open_clip's standard towers, written from their weights (no tracing).

``torch.onnx.export`` takes 10-20 s per ViT-B-32 tower here (tracing, ONNX passes, then a second pass to
quantise), which is most of a new model's first index run; traced through ``nn.MultiheadAttention`` it also
leaves a graph full of shape arithmetic and its out-projections as ``Gemm`` nodes the quantiser skips. A CLIP
tower is a short, fixed recipe (patch embedding, pre-norm transformer blocks, pooling, projection), so this
module writes that recipe directly with ``onnx.helper``, its MatMuls already in int8 where asked: ~1-2 s, and a
plain graph. It covers open_clip's ``VisionTransformer`` and the causal CLIP text transformer with standard
blocks (``supports_*``); anything else goes through ``torch.onnx.export`` as before. Every graph is checked
against the torch tower before it is used (``accel``, ``export``).

Weights are int8 per output channel, symmetric; activations are quantised per tensor at run time
(``com.microsoft.DynamicQuantizeMatMul``): the arithmetic of ``onnxruntime.quantization.quantize_dynamic``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

OPSET = 17


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def _standard_blocks(blocks) -> bool:
    from open_clip.transformer import LayerScale, ResidualAttentionBlock

    def ok_scale(module) -> bool:
        return isinstance(module, (torch.nn.Identity, LayerScale))

    return bool(len(blocks)) and all(
        type(b) is ResidualAttentionBlock and not hasattr(b, "ln_1_kv")
        and isinstance(b.attn, torch.nn.MultiheadAttention) and b.attn._qkv_same_embed_dim
        and b.attn.in_proj_bias is not None and b.attn.bias_k is None and not b.attn.add_zero_attn
        and ok_scale(b.ls_1) and ok_scale(b.ls_2) and _activation(b.mlp.gelu) is not None
        and isinstance(b.ln_1, torch.nn.LayerNorm) and isinstance(b.ln_2, torch.nn.LayerNorm)
        for b in blocks
    )


def _activation(module) -> str | None:
    from open_clip.transformer import QuickGELU

    if isinstance(module, QuickGELU):
        return "quick"
    if type(module) is torch.nn.GELU:
        return "erf" if module.approximate == "none" else None
    return None


def supports_vision(visual) -> bool:
    from open_clip.transformer import VisionTransformer

    return (
        type(visual) is VisionTransformer and visual.attn_pool is None and visual.pool_type in ("tok", "avg")
        and not visual.output_tokens and visual.conv1.bias is None
        and isinstance(visual.patch_dropout, torch.nn.Identity)
        and isinstance(visual.ln_pre, (torch.nn.LayerNorm, torch.nn.Identity))
        and isinstance(visual.ln_post, torch.nn.LayerNorm) and visual.proj is not None
        and _standard_blocks(visual.transformer.resblocks)
    )


def supports_text(model) -> bool:
    return (
        getattr(model, "attn_mask", None) is not None and getattr(model, "text_pool_type", None) == "argmax"
        and isinstance(getattr(model, "ln_final", None), torch.nn.LayerNorm)
        and isinstance(getattr(model, "text_projection", None), torch.Tensor)
        and _standard_blocks(model.transformer.resblocks)
    )


class _Builder:
    def __init__(self, quantise: Callable[[str], bool], reduce_range: bool):
        self.nodes: list = []
        self.initializers: list = []
        self.quantise = quantise
        self.qmax = 64.0 if reduce_range else 127.0  # onnxruntime's symmetric int8 ranges
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, array: np.ndarray, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d shapes
        return name

    def op(self, op_type: str, *inputs: str, domain: str = "", **attributes) -> str:
        from onnx import helper

        output = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], domain=domain, **attributes))
        return output

    def matmul(self, x: str, weight: np.ndarray, kind: str, bias: np.ndarray | None = None) -> str:
        """``x @ weight`` (+ bias) for a (in, out) weight, in int8 when ``quantise(kind)``."""
        weight = weight.astype(np.float32)
        if self.quantise(kind):
            absmax = np.abs(weight).max(axis=0)
            scale = np.where(absmax > 0, absmax / self.qmax, 1.0).astype(np.float32)
            quantised = np.clip(np.round(weight / scale), -self.qmax, self.qmax).astype(np.int8)
            inputs = [x, self.const(quantised, "w8"), self.const(scale, "scale"),
                      self.const(np.zeros(weight.shape[1], np.int8), "zero")]
            if bias is not None:
                inputs.append(self.const(bias.astype(np.float32), "bias"))
            return self.op("DynamicQuantizeMatMul", *inputs, domain="com.microsoft")
        out = self.op("MatMul", x, self.const(weight, "w"))
        return out if bias is None else self.op("Add", out, self.const(bias.astype(np.float32), "bias"))

    def layer_norm(self, x: str, norm: torch.nn.LayerNorm) -> str:
        weight, bias = self.const(_np(norm.weight), "ln_w"), self.const(_np(norm.bias), "ln_b")
        return self.op("LayerNormalization", x, weight, bias, axis=-1, epsilon=float(norm.eps))

    def scale(self, x: str, module) -> str:
        return x if isinstance(module, torch.nn.Identity) else self.op("Mul", x, self.const(_np(module.gamma), "ls"))

    def activation(self, x: str, kind: str) -> str:
        if kind == "quick":
            return self.op("Mul", x, self.op("Sigmoid", self.op("Mul", x, self.const(np.float32(1.702)))))
        half = self.op("Mul", x, self.const(np.float32(0.5)))
        erf = self.op("Erf", self.op("Mul", x, self.const(np.float32(1 / np.sqrt(2)))))
        return self.op("Mul", half, self.op("Add", erf, self.const(np.float32(1.0))))

    def block(self, x: str, block, mask: str | None) -> str:
        attn = block.attn
        heads, width = attn.num_heads, attn.embed_dim
        head = width // heads
        h = self.layer_norm(x, block.ln_1)
        qkv = self.matmul(h, _np(attn.in_proj_weight).T, "attn_in", _np(attn.in_proj_bias))
        # (n, length, 3 * width) -> (3, n, heads, length, head); Reshape's 0 keeps a dimension as it is.
        qkv = self.op("Reshape", qkv, self.const(np.array([0, 0, 3, heads, head], np.int64), "shape"))
        qkv = self.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])
        q, k, v = (self.op("Squeeze", self.op("Gather", qkv, self.const(np.array([i], np.int64)), axis=0),
                           self.const(np.array([0], np.int64))) for i in range(3))
        q = self.op("Mul", q, self.const(np.float32(head ** -0.5)))
        scores = self.op("MatMul", q, self.op("Transpose", k, perm=[0, 1, 3, 2]))
        if mask is not None:
            scores = self.op("Add", scores, mask)
        out = self.op("MatMul", self.op("Softmax", scores, axis=-1), v)
        out = self.op("Reshape", self.op("Transpose", out, perm=[0, 2, 1, 3]),
                      self.const(np.array([0, 0, width], np.int64), "shape"))
        out = self.matmul(out, _np(attn.out_proj.weight).T, "attn_out", _np(attn.out_proj.bias))
        x = self.op("Add", x, self.scale(out, block.ls_1))
        h = self.layer_norm(x, block.ln_2)
        h = self.matmul(h, _np(block.mlp.c_fc.weight).T, "mlp_fc", _np(block.mlp.c_fc.bias))
        h = self.activation(h, _activation(block.mlp.gelu))
        h = self.matmul(h, _np(block.mlp.c_proj.weight).T, "mlp_proj", _np(block.mlp.c_proj.bias))
        return self.op("Add", x, self.scale(h, block.ls_2))

    def model(self, inputs: list, output: str, width: int, output_name: str = "features"):
        from onnx import TensorProto, helper

        self.nodes.append(helper.make_node("Identity", [output], [output_name]))
        output = output_name
        graph = helper.make_graph(
            self.nodes, "clipsearch", inputs,
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", width])], self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                        helper.make_opsetid("com.microsoft", 1)])
        model.ir_version = 8
        return model


def vision_model(visual, quantise: Callable[[str], bool] = lambda kind: False, reduce_range: bool = True):
    """The image tower: normalised pixels ``(n, 3, size, size)`` → features ``(n, dim)``."""
    from onnx import TensorProto, helper

    b = _Builder(quantise, reduce_range)
    size = visual.image_size
    patch = visual.patch_size
    x = b.op("Conv", "pixels", b.const(_np(visual.conv1.weight), "patch"), kernel_shape=list(patch),
             strides=list(patch))
    width = int(visual.conv1.weight.shape[0])
    x = b.op("Transpose", b.op("Reshape", x, b.const(np.array([0, 0, -1], np.int64), "shape")), perm=[0, 2, 1])
    batch = b.op("Slice", b.op("Shape", x), b.const(np.array([0], np.int64)), b.const(np.array([1], np.int64)))
    cls_shape = b.op("Concat", batch, b.const(np.array([1, width], np.int64)), axis=0)
    cls = b.op("Expand", b.const(_np(visual.class_embedding).reshape(1, 1, width), "cls"), cls_shape)
    x = b.op("Add", b.op("Concat", cls, x, axis=1), b.const(_np(visual.positional_embedding), "pos"))
    if not isinstance(visual.ln_pre, torch.nn.Identity):
        x = b.layer_norm(x, visual.ln_pre)
    for block in visual.transformer.resblocks:
        x = b.block(x, block, None)

    def pool(x: str) -> str:
        if visual.pool_type == "tok":
            return b.op("Gather", x, b.const(np.array(0, np.int64)), axis=1)
        rest = b.op("Slice", x, b.const(np.array([1], np.int64)), b.const(np.array([2**62], np.int64)),
                    b.const(np.array([1], np.int64)))
        return b.op("ReduceMean", rest, b.const(np.array([1], np.int64)), keepdims=0)

    if visual.final_ln_after_pool:
        pooled = b.layer_norm(pool(x), visual.ln_post)
    else:
        pooled = pool(b.layer_norm(x, visual.ln_post))
    out = b.matmul(pooled, _np(visual.proj), "proj")
    pixels = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, size[0], size[1]])
    return b.model([pixels], out, int(visual.proj.shape[1]))


def text_model(model, quantise: Callable[[str], bool] = lambda kind: False, reduce_range: bool = False,
               tokens_input: str | None = None, output_name: str = "features"):
    """The causal text tower after its embeddings (``light.TextInputs`` makes them): token + position
    embeddings ``(n, length, width)`` and the end token's position ``(n,)`` → features ``(n, dim)``.

    With ``tokens_input`` the graph takes the token ids ``(n, length)`` instead, embeddings included (as other
    tools ship a text tower)."""
    from onnx import TensorProto, helper

    b = _Builder(quantise, reduce_range)
    width = int(model.token_embedding.weight.shape[1])
    if tokens_input:
        tokens = tokens_input
        shape = b.op("Shape", tokens)
        length = b.op("Slice", shape, b.const(np.array([1], np.int64)), b.const(np.array([2], np.int64)))
        positions = b.op("Slice", b.const(_np(model.positional_embedding), "pos"), b.const(np.array([0], np.int64)),
                         length, b.const(np.array([0], np.int64)))
        x = b.op("Add", b.op("Gather", b.const(_np(model.token_embedding.weight), "tokens"), tokens, axis=0),
                 positions)
        eot = b.op("ArgMax", tokens, axis=1, keepdims=0)  # the end token has the highest id
        inputs = [helper.make_tensor_value_info(tokens, TensorProto.INT64, ["batch", "length"])]
    else:
        x, eot = "embeddings", "eot"
        length = b.op("Slice", b.op("Shape", x), b.const(np.array([1], np.int64)), b.const(np.array([2], np.int64)))
        inputs = [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", "length", width]),
                  helper.make_tensor_value_info("eot", TensorProto.INT64, ["batch"])]
    mask = b.op("Slice", b.const(_np(model.attn_mask), "mask"), b.const(np.array([0, 0], np.int64)),
                b.op("Concat", length, length, axis=0), b.const(np.array([0, 1], np.int64)))
    for block in model.transformer.resblocks:
        x = b.block(x, block, mask)
    x = b.layer_norm(x, model.ln_final)
    x = b.op("GatherND", x, b.op("Unsqueeze", eot, b.const(np.array([1], np.int64))), batch_dims=1)
    out = b.matmul(x, _np(model.text_projection), "proj")
    return b.model(inputs, out, int(model.text_projection.shape[1]), output_name)
