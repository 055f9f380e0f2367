"""IR op -> TF.js layers: one small mapping function per catalogue op.

A mapping gets the emitter, the node and the layer names of its inputs, adds
one or more Keras-2-style layers and returns the layer holding the node's
output. Every attr is written, also where TF.js' default equals Keras'.
Where TF.js has no faithful layer (an activation it lacks or computes
differently, grouped convolutions, Conv2DTranspose output_padding, bilinear
upsampling with half-pixel centers, ...) the mapping raises NotExpressible
and the converter writes a graph model instead.

>>> sorted(LAYER_MAPPINGS)[:3]
['Activation', 'Add', 'Average']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from converters.web.errors import NotExpressible
from savedmodel.ir import Node

if TYPE_CHECKING:
    from converters.web.layers_writer import LayerEmitter

Mapping = Callable[["LayerEmitter", Node, list[str]], str]
LAYER_MAPPINGS: dict[str, Mapping] = {}

# IR activation -> the string TF.js computes identically (values are camelCased by TF.js on load).
TFJS_ACTIVATIONS = {
    "linear": "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh",
    "softmax": "softmax", "log_softmax": "log_softmax", "elu": "elu", "selu": "selu",
    "softplus": "softplus", "softsign": "softsign", "mish": "mish", "gelu": "gelu", "silu": "swish",
}
# Why the others are not written as strings (docs/WEB.md lists them too).
UNSUPPORTED_ACTIVATIONS = {
    "hard_sigmoid": "TF.js' hard_sigmoid is 0.2x+0.5 (Keras 2), Keras 3's is relu6(x+3)/6",
    "hard_silu": "TF.js has no hard_silu activation",
    "gelu_approximate": "TF.js does not accept the tanh-approximated gelu ('gelu_new') as an activation string",
    "exponential": "TF.js has no exponential activation",
}


def mapping(*ops: str) -> Callable[[Mapping], Mapping]:
    """Register the decorated function as the layers mapping of ``ops``."""

    def register(fn: Mapping) -> Mapping:
        for name in ops:
            if name in LAYER_MAPPINGS:
                raise ValueError(f"layers mapping {name!r} is registered twice")
            LAYER_MAPPINGS[name] = fn
        return fn

    return register


def fused_activation(em: LayerEmitter, node: Node) -> tuple[str, str | None]:
    """(activation string for the layer's config, activation left to apply as its own layer)."""
    act = node.attrs["activation"]
    if act in TFJS_ACTIVATIONS:
        return TFJS_ACTIVATIONS[act], None
    if act == "leaky_relu":
        return "linear", act
    raise NotExpressible(node.name, f"activation {act!r}: {UNSUPPORTED_ACTIVATIONS.get(act, 'not in TF.js')}")


def linear_suffix(rest: str | None) -> str:
    """The name suffix of a layer whose activation follows as its own layer (that one takes the node's name)."""
    return "" if rest is None else "_linear"


def apply_activation(em: LayerEmitter, node: Node, x: str, act: str | None) -> str:
    if act is None:
        return x
    if act == "leaky_relu":  # Keras 3's leaky_relu activation has slope 0.2
        return em.layer("LeakyReLU", {"alpha": 0.2}, [x], base=node.name)
    raise NotExpressible(node.name, f"activation {act!r}")  # pragma: no cover - fused_activation filters


def _bias(node: Node) -> bool:
    return "bias" in node.weights


@mapping("Dense")
def dense(em, node, xs):
    act, rest = fused_activation(em, node)
    y = em.layer("Dense", {"units": node.attrs["units"], "activation": act, "use_bias": _bias(node)}, xs,
                 node=node, suffix=linear_suffix(rest), weights=["kernel", "bias"])
    return apply_activation(em, node, y, rest)


def _conv_common(node: Node, act: str) -> dict[str, Any]:
    a = node.attrs
    if a.get("groups", 1) != 1:
        raise NotExpressible(node.name, f"groups={a['groups']}: TF.js convolution layers ignore 'groups'")
    return {"kernel_size": a["kernel_size"], "strides": a["strides"], "padding": a["padding"],
            "dilation_rate": a["dilation_rate"], "data_format": "channels_last", "activation": act,
            "use_bias": _bias(node)}


@mapping("Conv1D", "Conv2D")
def conv(em, node, xs):
    act, rest = fused_activation(em, node)
    config = {"filters": node.attrs["filters"], **_conv_common(node, act)}
    if config["padding"] == "causal":  # TF.js' Conv1D does not implement it: pad on the left, then 'valid'
        left = node.attrs["dilation_rate"][0] * (node.attrs["kernel_size"][0] - 1)
        xs = [_pad_sequence(em, node, xs[0], [left, 0])]
        config["padding"] = "valid"
    y = em.layer(node.op, config, xs, node=node, suffix=linear_suffix(rest), weights=["kernel", "bias"])
    return apply_activation(em, node, y, rest)


@mapping("DepthwiseConv2D")
def depthwise(em, node, xs):
    act, rest = fused_activation(em, node)
    config = {"depth_multiplier": node.attrs["depth_multiplier"], **_conv_common(node, act)}
    y = em.layer("DepthwiseConv2D", config, xs, node=node, suffix=linear_suffix(rest),
                 weights=[("kernel", "depthwise_kernel"), "bias"])
    return apply_activation(em, node, y, rest)


@mapping("SeparableConv2D")
def separable(em, node, xs):
    act, rest = fused_activation(em, node)
    config = {"filters": node.attrs["filters"], "depth_multiplier": node.attrs["depth_multiplier"],
              **_conv_common(node, act)}
    y = em.layer("SeparableConv2D", config, xs, node=node, suffix=linear_suffix(rest),
                 weights=["depthwise_kernel", "pointwise_kernel", "bias"])
    return apply_activation(em, node, y, rest)


@mapping("Conv2DTranspose")
def conv_transpose(em, node, xs):
    a = node.attrs
    if a["output_padding"] is not None:
        raise NotExpressible(node.name, "Conv2DTranspose output_padding: TF.js' Conv2DTranspose has none")
    if a["dilation_rate"] != [1, 1]:
        raise NotExpressible(node.name, "Conv2DTranspose with dilation: TF.js does not support it")
    act, rest = fused_activation(em, node)
    config = {"filters": a["filters"], **_conv_common(node, act)}
    y = em.layer("Conv2DTranspose", config, xs, node=node, suffix=linear_suffix(rest), weights=["kernel", "bias"])
    return apply_activation(em, node, y, rest)


@mapping("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D")
def pooling(em, node, xs):
    a = node.attrs
    config = {"pool_size": a["pool_size"], "strides": a["strides"], "padding": a["padding"],
              "data_format": "channels_last"}
    return em.layer(node.op, config, xs, node=node)


@mapping("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D")
def global_pooling(em, node, xs):
    # TF.js silently ignores keepdims: pool, then reshape to the kept shape.
    keep = node.attrs["keepdims"]
    y = em.layer(node.op, {"data_format": "channels_last", "keepdims": False}, xs,
                 node=None if keep else node, base=f"{node.name}_pool" if keep else None)
    if not node.attrs["keepdims"]:
        return y
    rank = 1 if node.op.endswith("1D") else 2
    return em.layer("Reshape", {"target_shape": [1] * rank + [-1]}, [y], node=node)


def _last_axis(em, node: Node, axis: int) -> int:
    rank = len(em.spec(node.inputs[0]).shape)
    if axis % rank != rank - 1:
        raise NotExpressible(node.name, f"{node.op} along axis {axis} of a rank-{rank} input: TF.js' "
                                        "BatchNormalization computes wrong values off the last axis")
    return -1


@mapping("BatchNormalization")
def batch_norm(em, node, xs):
    a = node.attrs
    _last_axis(em, node, a["axis"])
    config = {"axis": a["axis"], "momentum": 0.99, "epsilon": a["epsilon"], "center": "beta" in node.weights,
              "scale": "gamma" in node.weights}
    return em.layer("BatchNormalization", config, xs, node=node,
                    weights=["gamma", "beta", "moving_mean", "moving_variance"])


@mapping("LayerNormalization")
def layer_norm(em, node, xs):
    a = node.attrs
    if a["rms_scaling"]:
        raise NotExpressible(node.name, "LayerNormalization rms_scaling: TF.js' LayerNormalization has none")
    rank = len(em.spec(node.inputs[0]).shape)
    axes = [ax % rank for ax in a["axis"]]
    config = {"axis": axes, "epsilon": a["epsilon"], "center": "beta" in node.weights,
              "scale": "gamma" in node.weights}
    return em.layer("LayerNormalization", config, xs, node=node, weights=["gamma", "beta"])


@mapping("Normalization")
def normalization(em, node, xs):
    # TF.js registers no Normalization layer. (x - mean) / std is a BatchNormalization with
    # epsilon 0 and moving_variance = std**2, when mean and variance vary along one axis at most.
    shape = em.spec(node.inputs[0]).shape
    mean = np.asarray(em.weight(node, "mean"), np.float64)
    var = np.asarray(em.weight(node, "variance"), np.float64)
    stat_shape = np.broadcast_shapes(mean.shape, var.shape)
    axis, size = _single_axis(node, shape, stat_shape)
    std = np.maximum(np.sqrt(var), node.attrs["epsilon"]).astype(np.float32).astype(np.float64)
    # At most one axis varies, so the flattened statistic is that axis' vector (or a single value).
    mean = np.broadcast_to(np.broadcast_to(mean, stat_shape).reshape(-1), (size,))
    std = np.broadcast_to(np.broadcast_to(std, stat_shape).reshape(-1), (size,))
    if node.attrs["invert"]:  # x * std + mean
        values = {"gamma": std, "beta": mean, "moving_mean": np.zeros(size), "moving_variance": np.ones(size)}
    else:
        values = {"gamma": np.ones(size), "beta": np.zeros(size), "moving_mean": mean, "moving_variance": std * std}
    config = {"axis": _last_axis(em, node, axis), "momentum": 0.99, "epsilon": 0.0, "center": True, "scale": True}
    arrays = [(k, np.ascontiguousarray(values[k], np.float32))
              for k in ("gamma", "beta", "moving_mean", "moving_variance")]
    return em.layer("BatchNormalization", config, xs, node=node, arrays=arrays)


def _single_axis(node: Node, shape: tuple, stat_shape: tuple) -> tuple[int, int]:
    rank = len(shape)
    if len(stat_shape) > rank:
        raise NotExpressible(node.name, "Normalization statistics of higher rank than the input")
    padded = (1,) * (rank - len(stat_shape)) + tuple(stat_shape)
    varying = [i for i, d in enumerate(padded) if d != 1]
    if len(varying) > 1 or (varying and varying[0] == 0):
        raise NotExpressible(node.name, "Normalization over more than one axis: TF.js has no such layer")
    axis = varying[0] if varying else rank - 1
    size = padded[axis] if varying else shape[axis]
    if size is None:
        raise NotExpressible(node.name, "Normalization of a scalar statistic over an axis of unknown size")
    return axis, int(size)


@mapping("Activation")
def activation(em, node, xs):
    act = node.attrs["activation"]
    if act == "leaky_relu":
        return em.layer("LeakyReLU", {"alpha": 0.2}, xs, node=node)
    if act not in TFJS_ACTIVATIONS:
        raise NotExpressible(node.name, f"activation {act!r}: {UNSUPPORTED_ACTIVATIONS.get(act, 'not in TF.js')}")
    return em.layer("Activation", {"activation": TFJS_ACTIVATIONS[act]}, xs, node=node)


@mapping("ReLU")
def relu(em, node, xs):
    a = node.attrs
    if a["negative_slope"] == 0 and a["threshold"] == 0:
        return em.layer("ReLU", {"max_value": a["max_value"], "negative_slope": 0.0, "threshold": 0.0}, xs,
                        node=node)
    if a["max_value"] is None and a["threshold"] == 0:
        return em.layer("LeakyReLU", {"alpha": a["negative_slope"]}, xs, node=node)
    if a["max_value"] is None and a["negative_slope"] == 0:
        return em.layer("ThresholdedReLU", {"theta": a["threshold"]}, xs, node=node)
    raise NotExpressible(node.name, "ReLU with a threshold and a slope or cap: TF.js' ReLU has max_value only")


@mapping("LeakyReLU")
def leaky_relu(em, node, xs):
    return em.layer("LeakyReLU", {"alpha": node.attrs["negative_slope"]}, xs, node=node)


@mapping("ELU")
def elu(em, node, xs):
    if node.attrs["alpha"] != 1:
        raise NotExpressible(node.name, "ELU with alpha != 1: TF.js' ELU layer refuses other alphas")
    return em.layer("ELU", {"alpha": node.attrs["alpha"]}, xs, node=node)


@mapping("Softmax")
def softmax(em, node, xs):
    axis = node.attrs["axis"]
    if isinstance(axis, list):
        if len(axis) != 1:
            raise NotExpressible(node.name, "Softmax over several axes: TF.js' Softmax takes one axis")
        axis = axis[0]
    rank = len(em.spec(node.inputs[0]).shape)
    if axis % rank != rank - 1:
        raise NotExpressible(node.name, "Softmax off the last axis: TF.js supports the last axis only")
    return em.layer("Softmax", {"axis": -1}, xs, node=node)


@mapping("PReLU")
def prelu(em, node, xs):
    shared = node.attrs["shared_axes"]
    return em.layer("PReLU", {"shared_axes": shared or None}, xs, node=node, weights=["alpha"])


@mapping("Rescaling")
def rescaling(em, node, xs):
    return em.layer("Rescaling", {"scale": node.attrs["scale"], "offset": node.attrs["offset"]}, xs, node=node)


@mapping("Identity")
def identity(em, node, xs):
    return em.layer("Activation", {"activation": "linear"}, xs, node=node)


@mapping("Flatten")
def flatten(em, node, xs):
    return em.layer("Flatten", {"data_format": "channels_last"}, xs, node=node)


@mapping("Reshape")
def reshape(em, node, xs):
    return em.layer("Reshape", {"target_shape": node.attrs["target_shape"]}, xs, node=node)


@mapping("Permute")
def permute(em, node, xs):
    return em.layer("Permute", {"dims": node.attrs["dims"]}, xs, node=node)


@mapping("RepeatVector")
def repeat_vector(em, node, xs):
    return em.layer("RepeatVector", {"n": node.attrs["n"]}, xs, node=node)


@mapping("Add", "Multiply", "Average", "Maximum", "Minimum")
def merge(em, node, xs):
    shapes = [em.spec(t).shape for t in node.inputs]
    if len({len(s) for s in shapes}) > 1:
        raise NotExpressible(node.name, f"{node.op} of inputs of different ranks: TF.js merge layers need one rank")
    if len(xs) == 1:
        return em.layer("Activation", {"activation": "linear"}, xs, node=node)
    return em.layer(node.op, {}, xs, node=node)


@mapping("Subtract")
def subtract(em, node, xs):
    # TF.js registers no Subtract layer: x - y == x + (-1 * y) exactly in IEEE arithmetic.
    if len(em.spec(node.inputs[0]).shape) != len(em.spec(node.inputs[1]).shape):
        raise NotExpressible(node.name, "Subtract of inputs of different ranks")
    negated = em.layer("Rescaling", {"scale": -1.0, "offset": 0.0}, [xs[1]], base=f"{node.name}_neg")
    return em.layer("Add", {}, [xs[0], negated], node=node)


@mapping("Concatenate")
def concatenate(em, node, xs):
    return em.layer("Concatenate", {"axis": node.attrs["axis"]}, xs, node=node)


@mapping("Dot")
def dot(em, node, xs):
    ranks = [len(em.spec(t).shape) for t in node.inputs]
    if ranks != [2, 2] and ranks != [3, 3]:
        raise NotExpressible(node.name, f"Dot of ranks {ranks}: TF.js' Dot is checked for rank 2 and 3 only")
    return em.layer("Dot", {"axes": node.attrs["axes"], "normalize": node.attrs["normalize"]}, xs, node=node)


def _as_2d(em, node, x: str, what: str) -> tuple[str, int]:
    """(N, L, C) viewed as (N, L, 1, C); TF.js' shape inference needs L for cropping, C always."""
    _, length, channels = em.spec(node.inputs[0]).shape
    if channels is None or (length is None and what == "Cropping1D"):
        raise NotExpressible(node.name, f"{what} of a sequence of unknown length or channels")
    target = [-1 if length is None else length, 1, channels]
    return em.layer("Reshape", {"target_shape": target}, [x], base=f"{node.name}_2d"), channels


def _as_1d(em, node, y: str, channels: int) -> str:
    return em.layer("Reshape", {"target_shape": [-1, channels]}, [y], node=node)


@mapping("ZeroPadding2D")
def zero_padding2d(em, node, xs):
    return em.layer("ZeroPadding2D", {"padding": node.attrs["padding"], "data_format": "channels_last"}, xs,
                    node=node)


@mapping("Cropping2D")
def cropping2d(em, node, xs):
    return em.layer("Cropping2D", {"cropping": node.attrs["cropping"], "data_format": "channels_last"}, xs,
                    node=node)


# TF.js has no 1D padding, cropping or upsampling layers: run the 2D layer on (N, L, 1, C).
def _pad_sequence(em, node: Node, x: str, padding: list[int], out: Node | None = None) -> str:
    x, c = _as_2d(em, node, x, "ZeroPadding1D")
    y = em.layer("ZeroPadding2D", {"padding": [padding, [0, 0]], "data_format": "channels_last"},
                 [x], base=f"{node.name}_pad")
    if out is not None:
        return _as_1d(em, out, y, c)
    return em.layer("Reshape", {"target_shape": [-1, c]}, [y], base=f"{node.name}_padded")


@mapping("ZeroPadding1D")
def zero_padding1d(em, node, xs):
    return _pad_sequence(em, node, xs[0], node.attrs["padding"], out=node)


@mapping("Cropping1D")
def cropping1d(em, node, xs):
    x, c = _as_2d(em, node, xs[0], "Cropping1D")
    y = em.layer("Cropping2D", {"cropping": [node.attrs["cropping"], [0, 0]], "data_format": "channels_last"},
                 [x], base=f"{node.name}_crop")
    return _as_1d(em, node, y, c)


@mapping("UpSampling1D")
def upsampling1d(em, node, xs):
    x, c = _as_2d(em, node, xs[0], "UpSampling1D")
    y = em.layer("UpSampling2D", {"size": [node.attrs["size"], 1], "interpolation": "nearest",
                                  "data_format": "channels_last"}, [x], base=f"{node.name}_up")
    return _as_1d(em, node, y, c)


@mapping("UpSampling2D")
def upsampling2d(em, node, xs):
    if node.attrs["interpolation"] != "nearest":
        raise NotExpressible(node.name, "bilinear UpSampling2D: TF.js resizes without half-pixel centers, "
                                        "unlike Keras 2.x+ and our runtime")
    return em.layer("UpSampling2D", {"size": node.attrs["size"], "interpolation": "nearest",
                                     "data_format": "channels_last"}, xs, node=node)
