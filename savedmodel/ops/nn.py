"""Neural-network ops: dense, convolutions, pooling, normalisation, activations.

Layout is channels-last. Spatial attrs (``kernel_size``, ``strides``,
``dilation_rate``, ``pool_size``) are lists with one entry per spatial axis.
"""

from __future__ import annotations

import math
from typing import Any

from savedmodel.ir import Shape, TensorSpec
from savedmodel.ops import ACTIVATIONS, Attr, op

ACT = Attr("str", "linear", ACTIVATIONS)


def _out_len(n: int | None, k: int, s: int, d: int, padding: str) -> int | None:
    """Output length of a window of size k, stride s, dilation d over n."""
    if n is None:
        return None
    if padding == "valid":
        size = (n - d * (k - 1) - 1) // s + 1
    else:  # same, causal
        size = math.ceil(n / s)
    if size < 0:
        raise ValueError(f"window {k} (dilation {d}) is larger than the input dim {n}")
    return size


def _spatial(x: TensorSpec, rank: int) -> Shape:
    if len(x.shape) != rank + 2:
        raise ValueError(f"expected a rank-{rank + 2} input (batch, {rank} spatial dims, channels)")
    return x.shape[1:-1]


def _conv_attrs(rank: int, paddings: tuple[str, ...]) -> dict[str, Attr]:
    return {
        "filters": Attr("int", 1),
        "kernel_size": Attr("ints", [1] * rank),
        "strides": Attr("ints", [1] * rank),
        "padding": Attr("str", "valid", paddings),
        "dilation_rate": Attr("ints", [1] * rank),
        "groups": Attr("int", 1),
        "activation": ACT,
        "use_bias": Attr("bool", True),
    }


def _conv_shape(rank: int):
    def rule(inputs: list[TensorSpec], a: dict[str, Any]) -> list[Shape]:
        x = inputs[0]
        spatial = _spatial(x, rank)
        if x.shape[-1] is not None and x.shape[-1] % a["groups"]:
            raise ValueError(f"input channels {x.shape[-1]} are not divisible by groups={a['groups']}")
        dims = [
            _out_len(n, k, s, d, a["padding"])
            for n, k, s, d in zip(spatial, a["kernel_size"], a["strides"], a["dilation_rate"])
        ]
        return [(x.shape[0], *dims, a["filters"])]

    return rule


def _conv_weights(inputs: list[TensorSpec], a: dict[str, Any]) -> dict[str, Shape]:
    cin = inputs[0].shape[-1]
    per_group = None if cin is None else cin // a["groups"]
    return {"kernel": (*a["kernel_size"], per_group, a["filters"]), "bias": (a["filters"],)}


@op("Dense", attrs={"units": Attr("int", 1), "activation": ACT, "use_bias": Attr("bool", True)},
    weights=("kernel",), optional_weights=("bias",),
    weight_shapes=lambda i, a: {"kernel": (i[0].shape[-1], a["units"]), "bias": (a["units"],)})
def dense(inputs, a):
    """x @ kernel + bias over the last axis, then the activation."""
    return [(*inputs[0].shape[:-1], a["units"])]


op("Conv1D", attrs=_conv_attrs(1, ("valid", "same", "causal")), weights=("kernel",),
   optional_weights=("bias",), weight_shapes=_conv_weights)(_conv_shape(1))
op("Conv2D", attrs=_conv_attrs(2, ("valid", "same")), weights=("kernel",),
   optional_weights=("bias",), weight_shapes=_conv_weights)(_conv_shape(2))


def _depthwise_attrs() -> dict[str, Attr]:
    a = _conv_attrs(2, ("valid", "same"))
    del a["filters"], a["groups"]
    a["depth_multiplier"] = Attr("int", 1)
    return a


@op("DepthwiseConv2D", attrs=_depthwise_attrs(), weights=("kernel",), optional_weights=("bias",),
    weight_shapes=lambda i, a: {
        "kernel": (*a["kernel_size"], i[0].shape[-1], a["depth_multiplier"]),
        "bias": (None if i[0].shape[-1] is None else i[0].shape[-1] * a["depth_multiplier"],),
    })
def depthwise_conv2d(inputs, a):
    """Each input channel convolved with its own depth_multiplier filters."""
    x = inputs[0]
    cin = x.shape[-1]
    return _conv_shape(2)(inputs, {**a, "groups": 1,
                                    "filters": None if cin is None else cin * a["depth_multiplier"]})


def _separable_attrs() -> dict[str, Attr]:
    a = _depthwise_attrs()
    a["filters"] = Attr("int", 1)
    return a


@op("SeparableConv2D", attrs=_separable_attrs(), weights=("depthwise_kernel", "pointwise_kernel"),
    optional_weights=("bias",),
    weight_shapes=lambda i, a: {
        "depthwise_kernel": (*a["kernel_size"], i[0].shape[-1], a["depth_multiplier"]),
        "pointwise_kernel": (1, 1, None if i[0].shape[-1] is None else i[0].shape[-1] * a["depth_multiplier"],
                             a["filters"]),
        "bias": (a["filters"],),
    })
def separable_conv2d(inputs, a):
    """A depthwise convolution followed by a 1x1 convolution, bias and activation."""
    return _conv_shape(2)(inputs, {**a, "groups": 1})


def _transpose_len(n: int | None, k: int, s: int, d: int, padding: str, out_pad: int | None) -> int | None:
    if n is None:
        return None
    k = k + (k - 1) * (d - 1)
    if out_pad is None:
        return n * s + max(k - s, 0) if padding == "valid" else n * s
    pad = k // 2 if padding == "same" else 0
    return (n - 1) * s + k - 2 * pad + out_pad


@op("Conv2DTranspose",
    attrs={**_conv_attrs(2, ("valid", "same")), "output_padding": Attr("ints", None, nullable=True)},
    weights=("kernel",), optional_weights=("bias",),
    weight_shapes=lambda i, a: {"kernel": (*a["kernel_size"], a["filters"], i[0].shape[-1]),
                                "bias": (a["filters"],)})
def conv2d_transpose(inputs, a):
    """The gradient of Conv2D with respect to its input (a 'deconvolution')."""
    x = inputs[0]
    if a["groups"] != 1:
        raise ValueError("Conv2DTranspose supports groups=1 only")
    pads = a["output_padding"] or [None, None]
    dims = [
        _transpose_len(n, k, s, d, a["padding"], p)
        for n, k, s, d, p in zip(_spatial(x, 2), a["kernel_size"], a["strides"], a["dilation_rate"], pads)
    ]
    return [(x.shape[0], *dims, a["filters"])]


def _pool(rank: int):
    attrs = {
        "pool_size": Attr("ints", [2] * rank),
        "strides": Attr("ints", [2] * rank),
        "padding": Attr("str", "valid", ("valid", "same")),
    }

    def rule(inputs: list[TensorSpec], a: dict[str, Any]) -> list[Shape]:
        x = inputs[0]
        dims = [_out_len(n, k, s, 1, a["padding"]) for n, k, s in zip(_spatial(x, rank), a["pool_size"], a["strides"])]
        return [(x.shape[0], *dims, x.shape[-1])]

    return attrs, rule


for _rank in (1, 2):
    _attrs, _rule = _pool(_rank)
    op(f"MaxPooling{_rank}D", attrs=_attrs, keeps_dtype=True)(_rule)
    op(f"AveragePooling{_rank}D", attrs=_attrs)(_rule)


def _global_pool(rank: int):
    def rule(inputs: list[TensorSpec], a: dict[str, Any]) -> list[Shape]:
        x = inputs[0]
        _spatial(x, rank)
        return [(x.shape[0], *([1] * rank), x.shape[-1]) if a["keepdims"] else (x.shape[0], x.shape[-1])]

    return rule


for _rank in (1, 2):
    op(f"GlobalMaxPooling{_rank}D", attrs={"keepdims": Attr("bool", False)}, keeps_dtype=True)(
        _global_pool(_rank))
    op(f"GlobalAveragePooling{_rank}D", attrs={"keepdims": Attr("bool", False)})(_global_pool(_rank))


def _same(inputs, a):
    return [inputs[0].shape]


def _channels(inputs: list[TensorSpec], a: dict[str, Any]) -> dict[str, Shape]:
    c = inputs[0].shape[a["axis"]]
    return {r: (c,) for r in ("gamma", "beta", "moving_mean", "moving_variance")}


op("BatchNormalization",
   attrs={"axis": Attr("int", -1), "epsilon": Attr("float", 1e-3),
          "center": Attr("bool", True), "scale": Attr("bool", True)},
   weights=("moving_mean", "moving_variance"), optional_weights=("gamma", "beta"),
   weight_shapes=_channels)(_same)


def _ln_weights(inputs: list[TensorSpec], a: dict[str, Any]) -> dict[str, Shape]:
    shape = inputs[0].shape
    dims = tuple(shape[ax] for ax in sorted(ax % len(shape) for ax in a["axis"]))
    return {"gamma": dims, "beta": dims}


op("LayerNormalization",
   attrs={"axis": Attr("ints", [-1]), "epsilon": Attr("float", 1e-3), "center": Attr("bool", True),
          "scale": Attr("bool", True), "rms_scaling": Attr("bool", False)},
   optional_weights=("gamma", "beta"), weight_shapes=_ln_weights)(_same)

op("Activation", attrs={"activation": ACT})(_same)
op("ReLU", attrs={"max_value": Attr("float", None, nullable=True), "negative_slope": Attr("float", 0.0),
                  "threshold": Attr("float", 0.0)})(_same)
op("LeakyReLU", attrs={"negative_slope": Attr("float", 0.3)})(_same)
op("ELU", attrs={"alpha": Attr("float", 1.0)})(_same)
op("Softmax", attrs={"axis": Attr("int_or_ints", -1)})(_same)


def _prelu_weights(inputs: list[TensorSpec], a: dict[str, Any]) -> dict[str, Shape]:
    shape = list(inputs[0].shape[1:])
    for ax in a["shared_axes"]:
        shape[ax - 1] = 1
    return {"alpha": tuple(shape)}


op("PReLU", attrs={"shared_axes": Attr("ints", [])}, weights=("alpha",),
   weight_shapes=_prelu_weights)(_same)


@op("Normalization", attrs={"invert": Attr("bool", False), "epsilon": Attr("float", 1e-7)},
    weights=("mean", "variance"))
def normalization(inputs, a):
    """(x - mean) / max(sqrt(variance), epsilon); inverted: x * sqrt(variance) + mean."""
    return [inputs[0].shape]


op("Rescaling", attrs={"scale": Attr("float_or_floats", 1.0), "offset": Attr("float_or_floats", 0.0)})(_same)
op("Identity", keeps_dtype=True)(_same)
