"""IR op -> TF ops of a TF.js graph model: one lowering function per catalogue op.

A lowering gets the emitter, the node and the TF tensor names of its inputs,
adds TF nodes (named ``<node>/<Op>``) and returns the tensor holding the
node's output. Only ops the TF.js graph executor implements are used.

>>> "Conv2D" in GRAPH_MAPPINGS and "Normalization" in GRAPH_MAPPINGS
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from converters.web.graph_writer import a_bool, a_float, a_int, a_ints, a_str, a_type
from savedmodel.errors import UnsupportedError
from savedmodel.ir import Node

if TYPE_CHECKING:
    from converters.web.graph_writer import GraphEmitter

Lowering = Callable[["GraphEmitter", Node, list[str]], str]
GRAPH_MAPPINGS: dict[str, Lowering] = {}
F32 = a_type("float32")


def lowering(*ops: str) -> Callable[[Lowering], Lowering]:
    """Register the decorated function as the graph lowering of ``ops``."""

    def register(fn: Lowering) -> Lowering:
        for name in ops:
            if name in GRAPH_MAPPINGS:
                raise ValueError(f"graph lowering {name!r} is registered twice")
            GRAPH_MAPPINGS[name] = fn
        return fn

    return register


def _unsupported(node: Node, why: str) -> UnsupportedError:
    return UnsupportedError(f"node {node.name!r} ({node.op}): {why}.", what=node.name, kind=node.op)


# -- helpers ------------------------------------------------------------------------------
def binary(em: GraphEmitter, op: str, a: str, b: str, base: str) -> str:
    return em.op(op, [a, b], base, T=F32)


def unary(em: GraphEmitter, op: str, x: str, base: str) -> str:
    return em.op(op, [x], base, T=F32)


def activation(em: GraphEmitter, x: str, act: str, base: str) -> str:
    """``act`` (a name of savedmodel.ops.ACTIVATIONS) applied to x, with the formulas of our runtime."""
    simple = {"relu": "Relu", "relu6": "Relu6", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax",
              "log_softmax": "LogSoftmax", "elu": "Elu", "selu": "Selu", "softplus": "Softplus", "exponential": "Exp"}
    if act == "linear":
        return x
    if act in simple:
        return unary(em, simple[act], x, f"{base}/{simple[act]}")
    if act == "leaky_relu":
        return em.op("LeakyRelu", [x], f"{base}/LeakyRelu", alpha=a_float(0.2), T=F32)
    if act == "softsign":
        denom = binary(em, "AddV2", unary(em, "Abs", x, f"{base}/Abs"), em.scalar(1.0), f"{base}/add")
        return binary(em, "RealDiv", x, denom, f"{base}/softsign")
    if act == "mish":
        t = unary(em, "Tanh", unary(em, "Softplus", x, f"{base}/Softplus"), f"{base}/Tanh")
        return binary(em, "Mul", x, t, f"{base}/mish")
    if act == "silu":
        return binary(em, "Mul", x, unary(em, "Sigmoid", x, f"{base}/Sigmoid"), f"{base}/silu")
    if act == "gelu":  # x/2 * (1 + erf(x / sqrt 2))
        e = unary(em, "Erf", binary(em, "Mul", x, em.scalar(math.sqrt(0.5)), f"{base}/scale"), f"{base}/Erf")
        half = binary(em, "Mul", x, em.scalar(0.5), f"{base}/half")
        return binary(em, "Mul", half, binary(em, "AddV2", e, em.scalar(1.0), f"{base}/add"), f"{base}/gelu")
    if act == "gelu_approximate":  # x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
        cube = binary(em, "Mul", binary(em, "Mul", x, x, f"{base}/sq"), x, f"{base}/cube")
        inner = binary(em, "AddV2", x, binary(em, "Mul", cube, em.scalar(0.044715), f"{base}/c"), f"{base}/inner")
        t = unary(em, "Tanh", binary(em, "Mul", inner, em.scalar(math.sqrt(2 / math.pi)), f"{base}/u"),
                  f"{base}/Tanh")
        half = binary(em, "Mul", x, em.scalar(0.5), f"{base}/half")
        return binary(em, "Mul", half, binary(em, "AddV2", t, em.scalar(1.0), f"{base}/add"), f"{base}/gelu")
    if act in ("hard_sigmoid", "hard_silu"):  # relu6(x + 3) / 6, Keras 3's definition
        r = unary(em, "Relu6", binary(em, "AddV2", x, em.scalar(3.0), f"{base}/add3"), f"{base}/Relu6")
        h = binary(em, "RealDiv", r, em.scalar(6.0), f"{base}/hard_sigmoid")
        return h if act == "hard_sigmoid" else binary(em, "Mul", x, h, f"{base}/hard_silu")
    raise UnsupportedError(f"activation {act!r} has no TF.js graph lowering.", what=base, kind=act)


def batch_shape(em: GraphEmitter, x: str, dims: list[int | None], base: str) -> str:
    """A shape tensor (batch of x, *dims); one entry of dims may be unknown (None or -1)."""
    dims = [-1 if d is None else int(d) for d in dims]
    if -1 not in dims:
        return em.ints([-1, *dims], f"{base}/shape")
    return dynamic_shape(em, x, dims, base)


def dynamic_shape(em: GraphEmitter, x: str, dims: list[int], base: str) -> str:
    """The shape tensor (the actual batch size of x, *dims)."""
    shape = em.op("Shape", [x], f"{base}/Shape", T=F32, out_type=a_type("int32"))
    n = em.op("StridedSlice", [shape, em.ints([0], f"{base}/begin"), em.ints([1], f"{base}/end"),
                               em.ints([1], f"{base}/strides")], f"{base}/batch", Index=a_type("int32"),
              T=a_type("int32"))
    return em.op("ConcatV2", [n, em.ints(dims, f"{base}/dims"), em.ints(0, f"{base}/axis")], f"{base}/target",
                 N=a_int(2), T=a_type("int32"))


def reshape(em: GraphEmitter, x: str, dims: list[int | None], base: str) -> str:
    return em.op("Reshape", [x, batch_shape(em, x, dims, base)], f"{base}/Reshape", T=F32)


def bias_and_activation(em: GraphEmitter, node: Node, y: str) -> str:
    if "bias" in node.weights:
        y = em.op("BiasAdd", [y, em.weight(node, "bias")], f"{node.name}/BiasAdd", T=F32,
                  data_format=a_str("NHWC"))
    return activation(em, y, node.attrs["activation"], node.name)


def _pad(padding: str) -> dict:
    return a_str(padding.upper())


# -- dense and convolutions -----------------------------------------------------------------
@lowering("Dense")
def dense(em, node, xs):
    shape = em.spec(node.inputs[0]).shape
    kernel = em.weight(node, "kernel")
    if len(shape) == 2:
        y = em.op("MatMul", [xs[0], kernel], f"{node.name}/MatMul", T=F32, transpose_a=a_bool(False),
                  transpose_b=a_bool(False))
    else:
        flat = reshape(em, xs[0], [shape[-1]], f"{node.name}/flat")
        y = em.op("MatMul", [flat, kernel], f"{node.name}/MatMul", T=F32, transpose_a=a_bool(False),
                  transpose_b=a_bool(False))
        y = reshape(em, y, [*shape[1:-1], node.attrs["units"]], f"{node.name}/unflat")
    return bias_and_activation(em, node, y)


def _conv2d(em, x, kernel, strides, padding, dilations, base):
    return em.op("Conv2D", [x, kernel], base, T=F32, strides=a_ints([1, *strides, 1]), padding=_pad(padding),
                 dilations=a_ints([1, *dilations, 1]), data_format=a_str("NHWC"), use_cudnn_on_gpu=a_bool(True))


def _grouped(em, node, x, kernel, cin, conv):
    """conv(x, kernel) per channel group, concatenated (TF.js has no grouped convolution)."""
    g = node.attrs["groups"]
    if g == 1:
        return conv(x, kernel, node.name + "/Conv2D")
    if cin is None:
        raise _unsupported(node, "grouped convolution of an input with unknown channels")
    parts = em.op("Split", [em.ints(3, f"{node.name}/split_axis"), x], f"{node.name}/Split", T=F32,
                  num_split=a_int(g))
    fo = node.attrs["filters"] // g
    outs = []
    for i in range(g):
        k = em.op("Slice", [kernel, em.ints([0, 0, 0, i * fo], f"{node.name}/begin{i}"),
                            em.ints([-1, -1, -1, fo], f"{node.name}/size{i}")], f"{node.name}/kernel{i}", T=F32,
                  Index=a_type("int32"))
        outs.append(conv(parts if i == 0 else f"{parts}:{i}", k, f"{node.name}/Conv2D_{i}"))
    return em.op("ConcatV2", [*outs, em.ints(3, f"{node.name}/concat_axis")], f"{node.name}/concat",
                 N=a_int(g), T=F32)


@lowering("Conv2D")
def conv2d(em, node, xs):
    a = node.attrs
    kernel = em.weight(node, "kernel")
    y = _grouped(em, node, xs[0], kernel, em.spec(node.inputs[0]).shape[-1],
                 lambda x, k, base: _conv2d(em, x, k, a["strides"], a["padding"], a["dilation_rate"], base))
    return bias_and_activation(em, node, y)


@lowering("Conv1D")
def conv1d(em, node, xs):
    # (N, L, C) -> (N, 1, L, C), a 2D convolution with a (1, k) kernel, and back.
    a = node.attrs
    x = xs[0]
    padding = a["padding"]
    if padding == "causal":
        left = a["dilation_rate"][0] * (a["kernel_size"][0] - 1)
        x = em.op("Pad", [x, em.ints([[0, 0], [left, 0], [0, 0]], f"{node.name}/causal")], f"{node.name}/Pad", T=F32)
        padding = "valid"
    x = em.op("ExpandDims", [x, em.ints(1, f"{node.name}/axis")], f"{node.name}/ExpandDims", T=F32)
    kernel = em.op("ExpandDims", [em.weight(node, "kernel"), em.ints(0, f"{node.name}/kaxis")],
                   f"{node.name}/kernel2d", T=F32)
    y = _grouped(em, node, x, kernel, em.spec(node.inputs[0]).shape[-1],
                 lambda x, k, base: _conv2d(em, x, k, [1, a["strides"][0]], padding, [1, a["dilation_rate"][0]],
                                            base))
    y = em.op("Squeeze", [y], f"{node.name}/Squeeze", T=F32, squeeze_dims=a_ints([1]))
    return bias_and_activation(em, node, y)


def _depthwise(em, node, x, kernel, base):
    a = node.attrs
    return em.op("DepthwiseConv2dNative", [x, kernel], base, T=F32, strides=a_ints([1, *a["strides"], 1]),
                 padding=_pad(a["padding"]), dilations=a_ints([1, *a["dilation_rate"], 1]),
                 data_format=a_str("NHWC"))


@lowering("DepthwiseConv2D")
def depthwise(em, node, xs):
    y = _depthwise(em, node, xs[0], em.weight(node, "kernel"), f"{node.name}/depthwise")
    return bias_and_activation(em, node, y)


@lowering("SeparableConv2D")
def separable(em, node, xs):
    y = _depthwise(em, node, xs[0], em.weight(node, "depthwise_kernel"), f"{node.name}/depthwise")
    y = _conv2d(em, y, em.weight(node, "pointwise_kernel"), [1, 1], "valid", [1, 1], f"{node.name}/pointwise")
    return bias_and_activation(em, node, y)


@lowering("Conv2DTranspose")
def conv_transpose(em, node, xs):
    a = node.attrs
    if a["dilation_rate"] != [1, 1]:
        raise _unsupported(node, "TF.js' Conv2DBackpropInput has no dilation")
    out = em.spec(node.outputs[0]).shape
    if None in out[1:]:
        raise _unsupported(node, "Conv2DTranspose of an input with unknown spatial size")
    sizes = dynamic_shape(em, xs[0], list(out[1:]), f"{node.name}/sizes")  # the op needs the real batch
    y = em.op("Conv2DBackpropInput", [sizes, em.weight(node, "kernel"), xs[0]], f"{node.name}/conv_transpose",
              T=F32, strides=a_ints([1, *a["strides"], 1]), padding=_pad(a["padding"]), data_format=a_str("NHWC"),
              dilations=a_ints([1, 1, 1, 1]))
    return bias_and_activation(em, node, y)


# -- pooling ---------------------------------------------------------------------------------
@lowering("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D")
def pooling(em, node, xs):
    a = node.attrs
    op = "MaxPool" if node.op.startswith("Max") else "AvgPool"
    one_d = node.op.endswith("1D")
    x = xs[0]
    pool, strides = list(a["pool_size"]), list(a["strides"])
    if one_d:
        x = em.op("ExpandDims", [x, em.ints(1, f"{node.name}/axis")], f"{node.name}/ExpandDims", T=F32)
        pool, strides = [1, *pool], [1, *strides]
    y = em.op(op, [x], f"{node.name}/{op}", T=F32, ksize=a_ints([1, *pool, 1]), strides=a_ints([1, *strides, 1]),
              padding=_pad(a["padding"]), data_format=a_str("NHWC"))
    if one_d:
        y = em.op("Squeeze", [y], f"{node.name}/Squeeze", T=F32, squeeze_dims=a_ints([1]))
    return y


@lowering("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D")
def global_pooling(em, node, xs):
    op = "Max" if "Max" in node.op else "Mean"
    axes = [1] if node.op.endswith("1D") else [1, 2]
    return em.op(op, [xs[0], em.ints(axes, f"{node.name}/axes")], f"{node.name}/{op}", T=F32,
                 keep_dims=a_bool(node.attrs["keepdims"]), Tidx=a_type("int32"))


# -- normalisation ------------------------------------------------------------------------------
def _along(em, value: str, rank: int, axis: int, base: str) -> str:
    """A (C,) tensor reshaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    if axis == rank - 1:
        return value
    shape = [1] * (rank - axis - 1)
    return em.op("Reshape", [value, em.ints([-1, *shape], f"{base}/shape")], f"{base}/Reshape", T=F32)


@lowering("BatchNormalization")
def batch_norm(em, node, xs):
    a = node.attrs
    rank = len(em.spec(node.inputs[0]).shape)
    axis = a["axis"] % rank
    n = node.name
    inv = unary(em, "Rsqrt", binary(em, "AddV2", em.weight(node, "moving_variance"), em.scalar(a["epsilon"]),
                                    f"{n}/add_eps"), f"{n}/Rsqrt")
    if "gamma" in node.weights:
        inv = binary(em, "Mul", inv, em.weight(node, "gamma"), f"{n}/mul_gamma")
    # y = x * inv + (beta - mean * inv): the same folding as the runtime's kernel.
    shift = em.op("Neg", [binary(em, "Mul", em.weight(node, "moving_mean"), inv, f"{n}/mean_inv")], f"{n}/Neg",
                  T=F32)
    if "beta" in node.weights:
        shift = binary(em, "AddV2", shift, em.weight(node, "beta"), f"{n}/add_beta")
    inv = _along(em, inv, rank, axis, f"{n}/inv")
    shift = _along(em, shift, rank, axis, f"{n}/shift")
    return binary(em, "AddV2", binary(em, "Mul", xs[0], inv, f"{n}/mul"), shift, f"{n}/batchnorm")


@lowering("LayerNormalization")
def layer_norm(em, node, xs):
    a = node.attrs
    shape = em.spec(node.inputs[0]).shape
    rank = len(shape)
    axes = sorted(ax % rank for ax in a["axis"])
    n, x = node.name, xs[0]
    ax = em.ints(axes, f"{n}/axes")
    mean = em.op("Mean", [x, ax], f"{n}/mean", T=F32, keep_dims=a_bool(True), Tidx=a_type("int32"))
    d = binary(em, "Sub", x, mean, f"{n}/centered")
    var = em.op("Mean", [unary(em, "Square", d, f"{n}/Square"), ax], f"{n}/variance", T=F32,
                keep_dims=a_bool(True), Tidx=a_type("int32"))
    inv = unary(em, "Rsqrt", binary(em, "AddV2", var, em.scalar(a["epsilon"]), f"{n}/add_eps"), f"{n}/Rsqrt")
    y = binary(em, "Mul", x if a["rms_scaling"] else d, inv, f"{n}/normalized")
    target = [shape[i] if i in axes else 1 for i in range(axes[0], rank)]
    trailing = axes == list(range(axes[0], rank)) and len(axes) == 1

    def broadcast(value: str, role: str) -> str:
        if trailing:
            return value
        return em.op("Reshape", [value, em.ints(target, f"{n}/{role}_shape")], f"{n}/{role}_Reshape", T=F32)

    if "gamma" in node.weights:
        y = binary(em, "Mul", y, broadcast(em.weight(node, "gamma"), "gamma"), f"{n}/mul_gamma")
    if "beta" in node.weights and not a["rms_scaling"]:
        y = binary(em, "AddV2", y, broadcast(em.weight(node, "beta"), "beta"), f"{n}/add_beta")
    return y


@lowering("Normalization")
def normalization(em, node, xs):
    n = node.name
    std = binary(em, "Maximum", unary(em, "Sqrt", em.weight(node, "variance"), f"{n}/Sqrt"),
                 em.scalar(node.attrs["epsilon"]), f"{n}/std")
    mean = em.weight(node, "mean")
    if node.attrs["invert"]:
        return binary(em, "AddV2", binary(em, "Mul", xs[0], std, f"{n}/mul"), mean, f"{n}/add")
    return binary(em, "RealDiv", binary(em, "Sub", xs[0], mean, f"{n}/sub"), std, f"{n}/div")


@lowering("Rescaling")
def rescaling(em, node, xs):
    scale, offset = node.attrs["scale"], node.attrs["offset"]
    y = binary(em, "Mul", xs[0], em.const(scale, f"{node.name}/scale"), f"{node.name}/mul")
    return binary(em, "AddV2", y, em.const(offset, f"{node.name}/offset"), f"{node.name}/add")


# -- activations ---------------------------------------------------------------------------------
@lowering("Activation")
def activation_node(em, node, xs):
    return activation(em, xs[0], node.attrs["activation"], node.name)


@lowering("ReLU")
def relu(em, node, xs):
    a, n, x = node.attrs, node.name, xs[0]
    top, slope, threshold = a["max_value"], a["negative_slope"], a["threshold"]
    if threshold == 0:
        pos = unary(em, "Relu6" if top == 6 and slope == 0 else "Relu", x, f"{n}/Relu")
        if top == 6 and slope == 0:
            return pos
    else:  # x where x > threshold, else 0
        mask = em.op("Cast", [em.op("Greater", [x, em.scalar(threshold)], f"{n}/Greater", T=F32)], f"{n}/Cast",
                     SrcT=a_type("bool"), DstT=F32)
        pos = binary(em, "Mul", x, mask, f"{n}/above")
    if top is not None:
        pos = em.op("ClipByValue", [pos, em.scalar(0.0), em.scalar(top)], f"{n}/clip", T=F32)
    if slope == 0:
        return pos
    below = unary(em, "Relu", binary(em, "Sub", em.scalar(threshold), x, f"{n}/below"), f"{n}/Relu_below")
    return binary(em, "Sub", pos, binary(em, "Mul", below, em.scalar(slope), f"{n}/slope"), f"{n}/relu")


@lowering("LeakyReLU")
def leaky_relu(em, node, xs):
    return em.op("LeakyRelu", xs, f"{node.name}/LeakyRelu", alpha=a_float(node.attrs["negative_slope"]), T=F32)


@lowering("ELU")
def elu(em, node, xs):
    if node.attrs["alpha"] == 1:
        return unary(em, "Elu", xs[0], f"{node.name}/Elu")
    n = node.name
    neg = unary(em, "Expm1", binary(em, "Minimum", xs[0], em.scalar(0.0), f"{n}/min0"), f"{n}/Expm1")
    neg = binary(em, "Mul", neg, em.scalar(node.attrs["alpha"]), f"{n}/alpha")
    return binary(em, "AddV2", unary(em, "Relu", xs[0], f"{n}/Relu"), neg, f"{n}/elu")


@lowering("Softmax")
def softmax(em, node, xs):
    rank = len(em.spec(node.inputs[0]).shape)
    axis = node.attrs["axis"]
    axes = sorted({ax % rank for ax in (axis if isinstance(axis, list) else [axis])})
    n, x = node.name, xs[0]
    if axes == [rank - 1]:
        return unary(em, "Softmax", x, f"{n}/Softmax")
    ax = em.ints(axes, f"{n}/axes")
    top = em.op("Max", [x, ax], f"{n}/Max", T=F32, keep_dims=a_bool(True), Tidx=a_type("int32"))
    e = unary(em, "Exp", binary(em, "Sub", x, top, f"{n}/sub"), f"{n}/Exp")
    total = em.op("Sum", [e, ax], f"{n}/Sum", T=F32, keep_dims=a_bool(True), Tidx=a_type("int32"))
    return binary(em, "RealDiv", e, total, f"{n}/softmax")


@lowering("PReLU")
def prelu(em, node, xs):
    return em.op("Prelu", [xs[0], em.weight(node, "alpha")], f"{node.name}/Prelu", T=F32)


@lowering("Identity")
def identity(em, node, xs):
    return em.op("Identity", xs, f"{node.name}/Identity", T=F32)


# -- shapes -----------------------------------------------------------------------------------------
@lowering("Flatten")
def flatten(em, node, xs):
    shape = em.spec(node.inputs[0]).shape
    size = None if None in shape[1:] else math.prod(shape[1:])
    return reshape(em, xs[0], [size], node.name)


@lowering("Reshape")
def reshape_node(em, node, xs):
    return reshape(em, xs[0], list(node.attrs["target_shape"]), node.name)


@lowering("Permute")
def permute(em, node, xs):
    return em.op("Transpose", [xs[0], em.ints([0, *node.attrs["dims"]], f"{node.name}/perm")],
                 f"{node.name}/Transpose", T=F32, Tperm=a_type("int32"))


@lowering("RepeatVector")
def repeat_vector(em, node, xs):
    x = em.op("ExpandDims", [xs[0], em.ints(1, f"{node.name}/axis")], f"{node.name}/ExpandDims", T=F32)
    return em.op("Tile", [x, em.ints([1, node.attrs["n"], 1], f"{node.name}/multiples")], f"{node.name}/Tile",
                 T=F32, Tmultiples=a_type("int32"))


_BINARY = {"Add": "AddV2", "Multiply": "Mul", "Maximum": "Maximum", "Minimum": "Minimum", "Average": "AddV2"}


@lowering("Add", "Multiply", "Maximum", "Minimum", "Average")
def merge(em, node, xs):
    op = _BINARY[node.op]
    y = xs[0]
    if len(xs) == 1:
        y = em.op("Identity", [y], f"{node.name}/Identity", T=F32)
    for i, x in enumerate(xs[1:]):
        y = binary(em, op, y, x, f"{node.name}/{op}_{i}" if len(xs) > 2 else f"{node.name}/{op}")
    if node.op == "Average":
        y = binary(em, "RealDiv", y, em.scalar(float(len(xs))), f"{node.name}/average")
    return y


@lowering("Subtract")
def subtract(em, node, xs):
    return binary(em, "Sub", xs[0], xs[1], f"{node.name}/Sub")


@lowering("Concatenate")
def concatenate(em, node, xs):
    rank = len(em.spec(node.inputs[0]).shape)
    axis = em.ints(node.attrs["axis"] % rank, f"{node.name}/axis")
    return em.op("ConcatV2", [*xs, axis], f"{node.name}/ConcatV2", N=a_int(len(xs)), T=F32, Tidx=a_type("int32"))


def _l2_normalize(em, x: str, axis: int, base: str) -> str:
    total = em.op("Sum", [unary(em, "Square", x, f"{base}/Square"), em.ints([axis], f"{base}/axis")],
                  f"{base}/Sum", T=F32, keep_dims=a_bool(True), Tidx=a_type("int32"))
    inv = binary(em, "Minimum", unary(em, "Rsqrt", total, f"{base}/Rsqrt"), em.scalar(1e7), f"{base}/cap")
    return binary(em, "Mul", x, inv, f"{base}/normalized")


@lowering("Dot")
def dot(em, node, xs):
    # Keras' batch_dot: move x's contracted axis last and y's first (after batch), then a batched matmul.
    xs_shape, ys_shape = (em.spec(t).shape for t in node.inputs)
    ax, ay = node.attrs["axes"][0] % len(xs_shape), node.attrs["axes"][1] % len(ys_shape)
    n = node.name
    x, y = xs
    if node.attrs["normalize"]:
        x, y = _l2_normalize(em, x, ax, f"{n}/x"), _l2_normalize(em, y, ay, f"{n}/y")
    x_rest = [d for i, d in enumerate(xs_shape) if i not in (0, ax)]
    y_rest = [d for i, d in enumerate(ys_shape) if i not in (0, ay)]
    if None in x_rest or None in y_rest or xs_shape[ax] is None:
        raise _unsupported(node, "Dot of inputs with unknown non-batch dims")
    k = xs_shape[ax]
    x_perm = [0] + [i for i in range(1, len(xs_shape)) if i != ax] + [ax]
    y_perm = [0, ay] + [i for i in range(1, len(ys_shape)) if i != ay]
    if x_perm != list(range(len(xs_shape))):
        x = em.op("Transpose", [x, em.ints(x_perm, f"{n}/x_perm")], f"{n}/x_Transpose", T=F32)
    if y_perm != list(range(len(ys_shape))):
        y = em.op("Transpose", [y, em.ints(y_perm, f"{n}/y_perm")], f"{n}/y_Transpose", T=F32)
    x = reshape(em, x, [math.prod(x_rest), k], f"{n}/x")
    y = reshape(em, y, [k, math.prod(y_rest)], f"{n}/y")
    out = em.op("BatchMatMulV2", [x, y], f"{n}/BatchMatMulV2", T=F32, adj_x=a_bool(False), adj_y=a_bool(False))
    return reshape(em, out, [*x_rest, *y_rest] if x_rest or y_rest else [1], f"{n}/out")


@lowering("ZeroPadding1D", "ZeroPadding2D")
def zero_padding(em, node, xs):
    pads = [node.attrs["padding"]] if node.op.endswith("1D") else node.attrs["padding"]
    return em.op("Pad", [xs[0], em.ints([[0, 0], *pads, [0, 0]], f"{node.name}/paddings")], f"{node.name}/Pad",
                 T=F32, Tpaddings=a_type("int32"))


@lowering("Cropping1D", "Cropping2D")
def cropping(em, node, xs):
    crops = [node.attrs["cropping"]] if node.op.endswith("1D") else node.attrs["cropping"]
    rank = len(crops) + 2
    begin = [0, *(lo for lo, _ in crops), 0]
    end = [0, *(-hi for _, hi in crops), 0]
    end_mask = 1 | (1 << (rank - 1))
    for i, (_, hi) in enumerate(crops):
        if hi == 0:
            end_mask |= 1 << (i + 1)
    n = node.name
    return em.op("StridedSlice", [xs[0], em.ints(begin, f"{n}/begin"), em.ints(end, f"{n}/end"),
                                  em.ints([1] * rank, f"{n}/strides")], f"{n}/StridedSlice", T=F32,
                 Index=a_type("int32"), begin_mask=a_int(1 | (1 << (rank - 1))), end_mask=a_int(end_mask),
                 ellipsis_mask=a_int(0), new_axis_mask=a_int(0), shrink_axis_mask=a_int(0))


@lowering("UpSampling1D")
def upsampling1d(em, node, xs):
    shape = em.spec(node.inputs[0]).shape
    n = node.name
    x = em.op("ExpandDims", [xs[0], em.ints(2, f"{n}/axis")], f"{n}/ExpandDims", T=F32)
    x = em.op("Tile", [x, em.ints([1, 1, node.attrs["size"], 1], f"{n}/multiples")], f"{n}/Tile", T=F32,
              Tmultiples=a_type("int32"))
    length = None if shape[1] is None else shape[1] * node.attrs["size"]
    if shape[2] is None and length is None:
        raise _unsupported(node, "UpSampling1D of an input with unknown length and channels")
    return reshape(em, x, [length, shape[2]], n)


@lowering("UpSampling2D")
def upsampling2d(em, node, xs):
    out = em.spec(node.outputs[0]).shape
    if None in out[1:3]:
        raise _unsupported(node, "UpSampling2D of an input with unknown height or width")
    bilinear = node.attrs["interpolation"] == "bilinear"
    op = "ResizeBilinear" if bilinear else "ResizeNearestNeighbor"
    # Integer factors: nearest without half-pixel centers repeats pixels; bilinear uses half-pixel centers (TF2).
    return em.op(op, [xs[0], em.ints(list(out[1:3]), f"{node.name}/size")], f"{node.name}/{op}", T=F32,
                 align_corners=a_bool(False), half_pixel_centers=a_bool(bilinear))
