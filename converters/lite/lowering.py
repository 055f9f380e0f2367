"""Lower an IR graph to a float32 LiteModel, one mapping per catalogue op.

This is the first stage of every mode (TF's converter does the same: a float
TFLite graph first, calibrated and quantized afterwards). Before mapping,
BatchNormalization is folded into the preceding convolution or dense layer
and ReLU/ReLU6 into their producer, as TF's converter does; activations that
TFLite cannot fuse become their own op. Weights are laid out the TFLite way:
FC ``[out, in]``, CONV ``[out, kh, kw, in]``, DEPTHWISE ``[1, kh, kw, C*m]``,
TRANSPOSE_CONV ``[out, kh, kw, in]``.

>>> lowered = lower(graph, signatures)            # doctest: +SKIP
>>> lowered.model.op_counts()                     # doctest: +SKIP
{'CONV_2D': 2, 'MEAN': 1, 'FULLY_CONNECTED': 1, 'SOFTMAX': 1}
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.errors import ConversionError
from converters.lite import format as fmt
from converters.lite.model import LiteModel, SignatureDef, Tensor
from savedmodel.bundle import Signature
from savedmodel.ir import Graph, Node, TensorSpec
from savedmodel.ops import fused_activation

Mapping_ = Callable[["Lowering", Node], None]
MAPPINGS: dict[str, Mapping_] = {}

# IR ops whose output channels are the last axis and that take an `activation` attr.
_WEIGHTED = {"Dense", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"}
# Ops a ReLU / ReLU6 can be fused into as TFLite's fused_activation_function.
_FUSE_INTO = _WEIGHTED | {"Add", "Subtract", "Multiply"}


def mapping(*ops: str) -> Callable[[Mapping_], Mapping_]:
    """Register the decorated function as the lowering of the catalogue ops ``ops``."""

    def register(fn: Mapping_) -> Mapping_:
        for name in ops:
            MAPPINGS[name] = fn
        return fn

    return register


@dataclass
class Lowered:
    """A float32 LiteModel and where its tensors and ops came from."""

    model: LiteModel
    graph: Graph  # the rewritten graph that was lowered
    tensor_index: dict[str, int] = field(default_factory=dict)  # IR tensor name -> tensor index


# -- IR rewrites --------------------------------------------------------------------------


def _relu_kind(node: Node) -> str | None:
    """'relu' / 'relu6' when ``node`` is a plain ReLU or ReLU6 (fusable), else None."""
    act = fused_activation(node)
    return act if act in ("relu", "relu6") else None


def _drop_identities(g: Graph) -> None:
    for node in [n for n in g.nodes if n.op == "Identity"]:
        src, dst = node.inputs[0], node.outputs[0]
        if any(o.name == dst for o in g.outputs):
            continue
        for n in g.nodes:
            n.inputs = [src if t == dst else t for t in n.inputs]
        g.nodes = [n for n in g.nodes if n is not node]


def fold_batchnorm(g: Graph, specs: Mapping[str, TensorSpec]) -> None:
    """Fold BatchNormalization into the preceding convolution or dense layer, in float32.

    TF computes ``inv = rsqrt(var + eps) * gamma``, multiplies the weights by
    ``inv`` and the bias becomes ``bias * inv + beta - mean * inv``.
    """
    f32 = np.float32
    for node in [n for n in g.nodes if n.op == "BatchNormalization"]:
        producer = g.sole_producer(node, _WEIGHTED)
        rank = len(specs[node.inputs[0]].shape)
        if producer is None or node.attrs["axis"] % rank != rank - 1:
            continue
        w = {r: np.asarray(g.weights[k], f32) for r, k in node.weights.items()}
        var = w["moving_variance"] + f32(node.attrs["epsilon"])
        inv = (1.0 / np.sqrt(var.astype(np.float64))).astype(f32)
        if "gamma" in w:
            inv = inv * w["gamma"]
        shift = -w["moving_mean"] * inv
        if "beta" in w:
            shift = w["beta"] + shift
        role = "pointwise_kernel" if producer.op == "SeparableConv2D" else "kernel"
        kernel = np.asarray(g.weights[producer.weights[role]], f32)
        if producer.op == "DepthwiseConv2D":
            kernel = kernel * inv.reshape(kernel.shape[-2:])
        elif producer.op == "Conv2DTranspose":
            kernel = kernel * inv[:, None]
        else:
            kernel = kernel * inv
        if "bias" in producer.weights:
            bias = np.asarray(g.weights[producer.weights["bias"]], f32) * inv + shift
        else:
            bias = shift
        g.weights[f"{producer.name}/folded_{role}"] = kernel.astype(f32)
        g.weights[f"{producer.name}/folded_bias"] = bias.astype(f32)
        producer.weights = {**producer.weights, role: f"{producer.name}/folded_{role}",
                            "bias": f"{producer.name}/folded_bias"}
        producer.attrs["use_bias"] = True
        g.bypass(producer, node)


def fuse_relus(g: Graph) -> dict[str, str]:
    """Fuse standalone ReLU / ReLU6 into their producer.

    Weighted ops take it as their ``activation`` attr; for Add, Subtract and
    Multiply (which have no such attr) the fused activation is returned by
    node name.
    """
    fused: dict[str, str] = {}
    for node in list(g.nodes):
        kind = _relu_kind(node)
        if kind is None:
            continue
        producer = g.sole_producer(node, _FUSE_INTO)
        if producer is None or producer.name in fused:
            continue
        if producer.op in _WEIGHTED:
            producer.attrs["activation"] = kind
        else:
            fused[producer.name] = kind
        g.bypass(producer, node)
    return fused


def prepare_graph(graph: Graph) -> tuple[Graph, dict[str, TensorSpec], dict[str, str]]:
    """A validated copy of ``graph`` with identities dropped, BN folded and ReLUs fused;
    also the activations fused into elementwise ops, by node name."""
    g = Graph(list(graph.inputs), list(graph.outputs), [copy.deepcopy(n) for n in graph.nodes], dict(graph.weights))
    specs = g.validate()
    _drop_identities(g)
    fold_batchnorm(g, specs)
    fused = fuse_relus(g)
    return g, g.validate(), fused


# -- the lowering context -----------------------------------------------------------------


def _shape_and_signature(shape) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    static = tuple(1 if d is None else int(d) for d in shape)
    if any(d is None for d in shape):
        return static, tuple(-1 if d is None else int(d) for d in shape)
    return static, None


class Lowering:
    """Builds the float32 LiteModel; mappings call ``tensor``, ``const``, ``new`` and ``op``."""

    def __init__(self, graph: Graph, specs: dict[str, TensorSpec], fused: dict[str, str] | None = None) -> None:
        self.graph = graph
        self.specs = specs
        self.fused = fused or {}
        self.model = LiteModel(description=fmt.DESCRIPTION, subgraph_name=fmt.SUBGRAPH_NAME)
        self.index: dict[str, int] = {}
        self.node: Node | None = None
        self.pending_activation: tuple[str, int, int] | None = None

    def fail(self, reason: str) -> ConversionError:
        node = self.node
        return ConversionError(reason, op=node.op if node else None, node=node.name if node else None)

    def tensor(self, name: str) -> int:
        """The index of IR tensor ``name`` (created on first use)."""
        if name not in self.index:
            spec = self.specs[name]
            shape, signature = _shape_and_signature(spec.shape)
            if spec.dtype != "float32":
                raise self.fail(f"tensor {name!r} has dtype {spec.dtype}; only float32 graphs are supported")
            self.index[name] = self.model.add_tensor(Tensor(name, "float32", shape, signature))
        return self.index[name]

    def new(self, name: str, like: str | None = None, shape=None) -> int:
        """A new intermediate float32 tensor with the shape of IR tensor ``like`` (or ``shape``)."""
        dims = self.specs[like].shape if like is not None else shape
        static, signature = _shape_and_signature(dims)
        return self.model.add_tensor(Tensor(name, "float32", static, signature))

    def const(self, name: str, value: np.ndarray, dtype: str = "float32") -> int:
        return self.model.add_constant(name, np.asarray(value, dtype))

    def weight(self, node: Node, role: str) -> np.ndarray | None:
        key = node.weights.get(role)
        return None if key is None else np.asarray(self.graph.weights[key], np.float32)

    def op(self, op: str, inputs: list[int], outputs: list[int], options: dict[str, Any] | None = None) -> None:
        operator = self.model.add_operator(op, inputs, outputs, options)
        operator.source = self.node.name if self.node else None

    def activation(self, node: Node, fused_into: str, out_name: str) -> tuple[str, int]:
        """(fused_activation_function, output index) for a node with an ``activation`` attr.

        A ReLU/ReLU6/linear activation is fused; others get their own op
        after the main op, which then writes an intermediate tensor.
        """
        act = node.attrs.get("activation", "linear")
        if act in fmt.FUSED_ACTIVATIONS:
            return fmt.FUSED_ACTIVATIONS[act], self.tensor(out_name)
        pre = self.new(f"{out_name}/{fused_into.lower()}", like=out_name)
        self.pending_activation = (act, pre, self.tensor(out_name))
        return "NONE", pre

    def finish_activation(self) -> None:
        pending = self.pending_activation
        if pending is None:
            return
        self.pending_activation = None
        act, src, dst = pending
        emit_activation(self, act, src, dst)


def emit_activation(low: Lowering, act: str, src: int, dst: int) -> None:
    """One activation by IR name from tensor ``src`` to ``dst``."""
    simple = {"relu": "RELU", "relu6": "RELU6", "sigmoid": "LOGISTIC", "tanh": "TANH", "hard_silu": "HARD_SWISH",
              "exponential": "EXP", "log_softmax": "LOG_SOFTMAX"}
    if act == "linear":
        low.op("RESHAPE", [src, low.const(f"{low.model.tensors[dst].name}/shape",
                                          np.asarray(low.model.tensors[dst].signature, np.int32), "int32")], [dst])
    elif act in simple:
        low.op(simple[act], [src], [dst])
    elif act == "softmax":
        low.op("SOFTMAX", [src], [dst], {"beta": 1.0})
    elif act == "leaky_relu":
        low.op("LEAKY_RELU", [src], [dst], {"alpha": 0.2})
    elif act in ("gelu", "gelu_approximate"):
        low.op("GELU", [src], [dst], {"approximate": act == "gelu_approximate"})
    elif act == "silu":
        sig = low.new(f"{low.model.tensors[dst].name}/sigmoid", shape=_dims(low, dst))
        low.op("LOGISTIC", [src], [sig])
        low.op("MUL", [src, sig], [dst], {"fused_activation_function": "NONE"})
    elif not decompositions.emit_composite_activation(low, act, src, dst):
        composite = ["elu", "hard_sigmoid", "mish", "selu", "softplus", "softsign"]
        raise low.fail(f"activation {act!r} has no TFLite equivalent in this converter; supported: "
                       f"{', '.join(sorted([*simple, *composite, 'linear', 'softmax', 'leaky_relu', 'gelu', 'silu']))}")


def _dims(low: Lowering, index: int) -> tuple[int | None, ...]:
    t = low.model.tensors[index]
    return tuple(None if d < 0 else d for d in t.signature)


# -- mappings -----------------------------------------------------------------------------


def _padding(node: Node) -> str:
    pad = node.attrs["padding"]
    if pad not in ("same", "valid"):
        raise ConversionError(f"padding {pad!r} has no TFLite equivalent", op=node.op, node=node.name)
    return pad.upper()


@mapping("Dense")
def _dense(low: Lowering, node: Node) -> None:
    x = low.specs[node.inputs[0]]
    kernel, bias = low.weight(node, "kernel"), low.weight(node, "bias")
    act, out = low.activation(node, "FULLY_CONNECTED", node.outputs[0])
    w = low.const(f"{node.name}/kernel", kernel.T)
    b = low.const(f"{node.name}/bias", bias) if bias is not None else -1
    options = {"fused_activation_function": act, "keep_num_dims": len(x.shape) > 2}
    low.op("FULLY_CONNECTED", [low.tensor(node.inputs[0]), w, b], [out], options)
    low.finish_activation()


def _conv_options(node: Node, act: str) -> dict[str, Any]:
    a = node.attrs
    return {"padding": _padding(node), "stride_h": a["strides"][0], "stride_w": a["strides"][1],
            "dilation_h_factor": a["dilation_rate"][0], "dilation_w_factor": a["dilation_rate"][1],
            "fused_activation_function": act}


@mapping("Conv2D")
def _conv2d(low: Lowering, node: Node) -> None:
    kernel, bias = low.weight(node, "kernel"), low.weight(node, "bias")
    act, out = low.activation(node, "CONV_2D", node.outputs[0])
    w = low.const(f"{node.name}/kernel", kernel.transpose(3, 0, 1, 2))
    b = low.const(f"{node.name}/bias", bias) if bias is not None else -1
    low.op("CONV_2D", [low.tensor(node.inputs[0]), w, b], [out], _conv_options(node, act))
    low.finish_activation()


def _depthwise(low: Lowering, node: Node, kernel: np.ndarray, bias: np.ndarray | None, x: int, out: int,
               act: str, name: str) -> None:
    kh, kw, c, m = kernel.shape
    w = low.const(f"{name}/depthwise_kernel", kernel.reshape(1, kh, kw, c * m))
    b = low.const(f"{name}/depthwise_bias", bias) if bias is not None else -1
    options = _conv_options(node, act)
    options["depth_multiplier"] = m
    low.op("DEPTHWISE_CONV_2D", [x, w, b], [out], options)


@mapping("DepthwiseConv2D")
def _depthwise_conv2d(low: Lowering, node: Node) -> None:
    act, out = low.activation(node, "DEPTHWISE_CONV_2D", node.outputs[0])
    _depthwise(low, node, low.weight(node, "kernel"), low.weight(node, "bias"), low.tensor(node.inputs[0]), out,
               act, node.name)
    low.finish_activation()


@mapping("SeparableConv2D")
def _separable_conv2d(low: Lowering, node: Node) -> None:
    dw = low.weight(node, "depthwise_kernel")
    spec = low.specs[node.outputs[0]]
    mid = low.new(f"{node.name}/depthwise", shape=(*spec.shape[:-1], dw.shape[2] * dw.shape[3]))
    _depthwise(low, node, dw, np.zeros(dw.shape[2] * dw.shape[3], np.float32), low.tensor(node.inputs[0]), mid,
               "NONE", node.name)
    act, out = low.activation(node, "CONV_2D", node.outputs[0])
    pw, bias = low.weight(node, "pointwise_kernel"), low.weight(node, "bias")
    w = low.const(f"{node.name}/pointwise_kernel", pw.transpose(3, 0, 1, 2))
    b = low.const(f"{node.name}/bias", bias) if bias is not None else -1
    options = {"padding": "VALID", "stride_h": 1, "stride_w": 1, "dilation_h_factor": 1, "dilation_w_factor": 1,
               "fused_activation_function": act}
    low.op("CONV_2D", [mid, w, b], [out], options)
    low.finish_activation()


@mapping("Conv2DTranspose")
def _conv2d_transpose(low: Lowering, node: Node) -> None:
    a = node.attrs
    if a["dilation_rate"] != [1, 1] or a["groups"] != 1:
        raise low.fail("TRANSPOSE_CONV supports neither dilation nor groups")
    kernel, bias = low.weight(node, "kernel"), low.weight(node, "bias")
    x = low.tensor(node.inputs[0])
    out_spec = low.specs[node.outputs[0]]
    # The output shape as a tensor: the batch read at run time (SHAPE, STRIDED_SLICE, PACK), as TF does.
    shape = low.model.add_tensor(Tensor(f"{node.name}/input_shape", "int32", (4,)))
    low.op("SHAPE", [x], [shape], {"out_type": "INT32"})
    batch = low.model.add_tensor(Tensor(f"{node.name}/batch", "int32", ()))
    zero, one = low.const(f"{node.name}/begin", [0], "int32"), low.const(f"{node.name}/end", [1], "int32")
    low.op("STRIDED_SLICE", [shape, zero, one, one], [batch],
           {"begin_mask": 0, "end_mask": 0, "ellipsis_mask": 0, "new_axis_mask": 0, "shrink_axis_mask": 1})
    dims = [low.const(f"{node.name}/out_{i}", np.asarray(d, np.int32), "int32") for i, d in
            enumerate(out_spec.shape[1:])]
    out_shape = low.model.add_tensor(Tensor(f"{node.name}/output_shape", "int32", (4,)))
    low.op("PACK", [batch, *dims], [out_shape], {"values_count": 4, "axis": 0})
    act, out = low.activation(node, "TRANSPOSE_CONV", node.outputs[0])
    w = low.const(f"{node.name}/kernel", kernel.transpose(2, 0, 1, 3))
    b = low.const(f"{node.name}/bias", bias) if bias is not None else -1
    options = {"padding": _padding(node), "stride_h": a["strides"][0], "stride_w": a["strides"][1]}
    if act != "NONE":
        options["fused_activation_function"] = act
    low.op("TRANSPOSE_CONV", [out_shape, w, x, b], [out], options)
    low.finish_activation()


@mapping("MaxPooling2D", "AveragePooling2D")
def _pool2d(low: Lowering, node: Node) -> None:
    a = node.attrs
    options = {"padding": _padding(node), "stride_h": a["strides"][0], "stride_w": a["strides"][1],
               "filter_height": a["pool_size"][0], "filter_width": a["pool_size"][1],
               "fused_activation_function": "NONE"}
    op = "MAX_POOL_2D" if node.op == "MaxPooling2D" else "AVERAGE_POOL_2D"
    low.op(op, [low.tensor(node.inputs[0])], [low.tensor(node.outputs[0])], options)


@mapping("GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalMaxPooling1D")
def _global_pool(low: Lowering, node: Node) -> None:
    axes = [1, 2] if node.op.endswith("2D") else [1]
    op = "MEAN" if "Average" in node.op else "REDUCE_MAX"
    axes_t = low.const(f"{node.name}/axes", np.asarray(axes, np.int32), "int32")
    low.op(op, [low.tensor(node.inputs[0]), axes_t], [low.tensor(node.outputs[0])],
           {"keep_dims": bool(node.attrs["keepdims"])})


def _binary_chain(low: Lowering, node: Node, op: str, fused: str) -> None:
    """An n-ary elementwise op as a chain of binary TFLite ops (the activation on the last)."""
    inputs = [low.tensor(t) for t in node.inputs]
    if len(inputs) == 1:
        emit_activation(low, "linear", inputs[0], low.tensor(node.outputs[0]))
        return
    acc = inputs[0]
    for i, x in enumerate(inputs[1:], start=1):
        last = i == len(inputs) - 1
        out = low.tensor(node.outputs[0]) if last else low.new(f"{node.name}/partial_{i}", like=node.outputs[0])
        options = {"fused_activation_function": fused if last else "NONE"}
        low.op(op, [acc, x], [out], options)
        acc = out


@mapping("Add", "Subtract", "Multiply")
def _elementwise(low: Lowering, node: Node) -> None:
    act = fmt.FUSED_ACTIVATIONS[low.fused.get(node.name, "linear")]
    _binary_chain(low, node, {"Add": "ADD", "Subtract": "SUB", "Multiply": "MUL"}[node.op], act)


@mapping("Maximum", "Minimum")
def _max_min(low: Lowering, node: Node) -> None:
    _binary_chain_plain(low, node, "MAXIMUM" if node.op == "Maximum" else "MINIMUM")


def _binary_chain_plain(low: Lowering, node: Node, op: str) -> None:
    inputs = [low.tensor(t) for t in node.inputs]
    acc = inputs[0]
    for i, x in enumerate(inputs[1:], start=1):
        last = i == len(inputs) - 1
        out = low.tensor(node.outputs[0]) if last else low.new(f"{node.name}/partial_{i}", like=node.outputs[0])
        low.op(op, [acc, x], [out])
        acc = out


@mapping("Average")
def _average(low: Lowering, node: Node) -> None:
    total = low.new(f"{node.name}/sum", like=node.outputs[0])
    inputs = [low.tensor(t) for t in node.inputs]
    acc = inputs[0]
    for i, x in enumerate(inputs[1:], start=1):
        out = total if i == len(inputs) - 1 else low.new(f"{node.name}/partial_{i}", like=node.outputs[0])
        low.op("ADD", [acc, x], [out], {"fused_activation_function": "NONE"})
        acc = out
    factor = low.const(f"{node.name}/inverse_count", np.float32(1.0 / len(inputs)).reshape(()))
    low.op("MUL", [acc, factor], [low.tensor(node.outputs[0])], {"fused_activation_function": "NONE"})


@mapping("Concatenate")
def _concatenate(low: Lowering, node: Node) -> None:
    rank = len(low.specs[node.outputs[0]].shape)
    axis = node.attrs["axis"] % rank
    low.op("CONCATENATION", [low.tensor(t) for t in node.inputs], [low.tensor(node.outputs[0])],
           {"axis": axis if axis != rank - 1 else -1, "fused_activation_function": "NONE"})


def _reshape_to(low: Lowering, node: Node, src: int, out_name: str) -> None:
    spec = low.specs[out_name]
    if any(d is None for d in spec.shape[1:]):
        raise low.fail(f"cannot reshape to {list(spec.shape)}: only the batch dim may be unknown")
    shape = low.const(f"{node.name}/shape", np.asarray([-1, *spec.shape[1:]], np.int32), "int32")
    low.op("RESHAPE", [src, shape], [low.tensor(out_name)])


@mapping("Reshape", "Flatten")
def _reshape(low: Lowering, node: Node) -> None:
    _reshape_to(low, node, low.tensor(node.inputs[0]), node.outputs[0])


@mapping("Permute")
def _permute(low: Lowering, node: Node) -> None:
    perm = low.const(f"{node.name}/perm", np.asarray([0, *node.attrs["dims"]], np.int32), "int32")
    low.op("TRANSPOSE", [low.tensor(node.inputs[0]), perm], [low.tensor(node.outputs[0])])


@mapping("Activation")
def _activation(low: Lowering, node: Node) -> None:
    emit_activation(low, node.attrs["activation"], low.tensor(node.inputs[0]), low.tensor(node.outputs[0]))


@mapping("ReLU")
def _relu(low: Lowering, node: Node) -> None:
    a = node.attrs
    kind = _relu_kind(node)
    src, dst = low.tensor(node.inputs[0]), low.tensor(node.outputs[0])
    if kind is not None:
        emit_activation(low, kind, src, dst)
    elif a["max_value"] is None and a["threshold"] == 0:
        low.op("LEAKY_RELU", [src], [dst], {"alpha": float(a["negative_slope"])})
    else:
        raise low.fail(f"ReLU with max_value={a['max_value']}, threshold={a['threshold']} and negative_slope="
                       f"{a['negative_slope']} has no TFLite equivalent (supported: max_value None or 6 with "
                       "threshold 0, or a negative slope without max_value)")


@mapping("LeakyReLU")
def _leaky_relu(low: Lowering, node: Node) -> None:
    low.op("LEAKY_RELU", [low.tensor(node.inputs[0])], [low.tensor(node.outputs[0])],
           {"alpha": float(node.attrs["negative_slope"])})


@mapping("ELU")
def _elu(low: Lowering, node: Node) -> None:
    src, dst = low.tensor(node.inputs[0]), low.tensor(node.outputs[0])
    if node.attrs["alpha"] == 1.0:
        low.op("ELU", [src], [dst])
    else:  # TFLite's ELU has alpha 1
        decompositions.elu_with_alpha(low, src, dst, float(node.attrs["alpha"]), node.name)


@mapping("Softmax")
def _softmax(low: Lowering, node: Node) -> None:
    axis = node.attrs["axis"]
    rank = len(low.specs[node.inputs[0]].shape)
    axes = axis if isinstance(axis, list) else [axis]
    if len(axes) != 1 or axes[0] % rank == 0:
        raise low.fail(f"softmax over axis {axis} has no TFLite equivalent (expected one non-batch axis)")
    src, dst = low.tensor(node.inputs[0]), low.tensor(node.outputs[0])
    if axes[0] % rank == rank - 1:
        low.op("SOFTMAX", [src], [dst], {"beta": 1.0})
    else:
        decompositions.softmax_on_axis(low, src, dst, axes[0] % rank, rank, node.name)


@mapping("ZeroPadding2D", "ZeroPadding1D")
def _zero_padding(low: Lowering, node: Node) -> None:
    pads = node.attrs["padding"]
    spatial = pads if node.op.endswith("2D") else [pads]
    paddings = np.asarray([[0, 0], *spatial, [0, 0]], np.int32)
    low.op("PAD", [low.tensor(node.inputs[0]), low.const(f"{node.name}/paddings", paddings, "int32")],
           [low.tensor(node.outputs[0])])


@mapping("Cropping2D", "Cropping1D")
def _cropping(low: Lowering, node: Node) -> None:
    crops = node.attrs["cropping"] if node.op.endswith("2D") else [node.attrs["cropping"]]
    in_shape = low.specs[node.inputs[0]].shape
    rank = len(in_shape)
    begin = [0] + [c[0] for c in crops] + [0]
    end = [0] + [n - c[1] for n, c in zip(in_shape[1:-1], crops, strict=True)] + [0]
    mask = 1 | (1 << (rank - 1))
    ins = [low.tensor(node.inputs[0]), low.const(f"{node.name}/begin", np.asarray(begin, np.int32), "int32"),
           low.const(f"{node.name}/end", np.asarray(end, np.int32), "int32"),
           low.const(f"{node.name}/strides", np.ones(rank, np.int32), "int32")]
    low.op("STRIDED_SLICE", ins, [low.tensor(node.outputs[0])],
           {"begin_mask": mask, "end_mask": mask, "ellipsis_mask": 0, "new_axis_mask": 0, "shrink_axis_mask": 0})


@mapping("UpSampling2D")
def _upsampling2d(low: Lowering, node: Node) -> None:
    out = low.specs[node.outputs[0]].shape
    size = low.const(f"{node.name}/size", np.asarray(out[1:3], np.int32), "int32")
    if node.attrs["interpolation"] == "nearest":
        low.op("RESIZE_NEAREST_NEIGHBOR", [low.tensor(node.inputs[0]), size], [low.tensor(node.outputs[0])],
               {"align_corners": False, "half_pixel_centers": False})
    else:
        low.op("RESIZE_BILINEAR", [low.tensor(node.inputs[0]), size], [low.tensor(node.outputs[0])],
               {"align_corners": False, "half_pixel_centers": True})


def _scale_shift(low: Lowering, node: Node, scale, shift, scale_first: bool = True) -> None:
    """x * scale + shift (or (x + shift) * scale), skipping a factor of 1 or a shift of 0."""
    x = low.tensor(node.inputs[0])
    out = low.tensor(node.outputs[0])
    scale = np.asarray(scale, np.float32)
    shift = np.asarray(shift, np.float32)
    steps = [("MUL", scale, bool(np.any(scale != 1))), ("ADD", shift, bool(np.any(shift != 0)))]
    if not scale_first:
        steps.reverse()
    steps = [s for s in steps if s[2]]
    if not steps:
        emit_activation(low, "linear", x, out)
        return
    for i, (op, value, _) in enumerate(steps):
        dst = out if i == len(steps) - 1 else low.new(f"{node.name}/{op.lower()}", like=node.outputs[0])
        value_t = low.const(f"{node.name}/{op.lower()}_value", value)
        low.op(op, [x, value_t], [dst], {"fused_activation_function": "NONE"})
        x = dst


@mapping("Rescaling")
def _rescaling(low: Lowering, node: Node) -> None:
    _scale_shift(low, node, node.attrs["scale"], node.attrs["offset"])


@mapping("Normalization")
def _normalization(low: Lowering, node: Node) -> None:
    mean, var = low.weight(node, "mean"), low.weight(node, "variance")
    std = np.maximum(np.sqrt(var.astype(np.float64)), node.attrs["epsilon"]).astype(np.float32)
    if node.attrs["invert"]:
        _scale_shift(low, node, std, mean)
    else:
        _scale_shift(low, node, (1.0 / std.astype(np.float64)).astype(np.float32), -mean, scale_first=False)


@mapping("BatchNormalization")
def _batchnorm(low: Lowering, node: Node) -> None:
    dims = low.specs[node.inputs[0]].shape
    axis = node.attrs["axis"] % len(dims)
    if axis == 0:
        raise low.fail("BatchNormalization over the batch axis has no TFLite mapping")
    f32 = np.float32
    w = {r: np.asarray(low.graph.weights[k], f32) for r, k in node.weights.items()}
    inv = (1.0 / np.sqrt((w["moving_variance"] + f32(node.attrs["epsilon"])).astype(np.float64))).astype(f32)
    if "gamma" in w:
        inv = inv * w["gamma"]
    shift = -w["moving_mean"] * inv + (w["beta"] if "beta" in w else f32(0))
    along = [-1 if i == axis else 1 for i in range(1, len(dims))]  # broadcast along the normalized axis
    _scale_shift(low, node, inv.reshape(along), np.asarray(shift).reshape(along))


def _stable_order(g: Graph) -> list[Node]:
    """The nodes in their listed order, each moved after its producers only when needed
    (TF keeps the source model's layer order; Graph.topological_order groups by depth)."""
    g.topological_order()  # raises GraphError on dangling tensors and cycles
    available = {s.name for s in g.inputs}
    pending = list(g.nodes)
    order: list[Node] = []
    while pending:
        k = next(i for i, n in enumerate(pending) if all(t in available for t in n.inputs))
        node = pending.pop(k)
        order.append(node)
        available.update(node.outputs)
    return order


def lower(graph: Graph, signatures: Mapping[str, Signature] | None = None) -> Lowered:
    """The float32 LiteModel of ``graph``; ConversionError names the first op that has no mapping."""
    g, specs, fused = prepare_graph(graph)
    low = Lowering(g, specs, fused)
    for spec in g.inputs:
        low.tensor(spec.name)
    for node in _stable_order(g):
        fn = MAPPINGS.get(node.op)
        low.node = node
        if fn is None:
            raise ConversionError(
                f"op {node.op} has no TFLite mapping; the converter maps: {', '.join(sorted(MAPPINGS))}",
                op=node.op, node=node.name)
        fn(low, node)
    low.node = None
    model = low.model
    model.inputs = [low.index[s.name] for s in g.inputs]
    model.outputs = [low.tensor(s.name) for s in g.outputs]
    sigs = signatures or {fmt.DEFAULT_SIGNATURE: Signature.from_graph(g)}
    for key, sig in sigs.items():
        inputs = {alias: low.index[spec.name] for alias, spec in sig.inputs.items() if spec.name in low.index}
        outputs = {alias: low.index[spec.name] for alias, spec in sig.outputs.items() if spec.name in low.index}
        model.signatures.append(SignatureDef(key, inputs, outputs))
    return Lowered(model, g, dict(low.index))


# Importing the decompositions registers their mappings.
from converters.lite import decompositions  # noqa: E402
