"""The layer table: Keras layer class + config + weights -> catalogue nodes.

Every attr of the op is written from the Keras config (no reliance on
catalogue defaults). A config the catalogue cannot express faithfully raises
UnsupportedError naming the layer. ``roles`` give the saved variables' roles
in Keras' own order (``save_own_variables``: trainable, then non-trainable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from savedmodel.importers.keras import activations
from savedmodel.importers.keras.convert import (
    Converter,
    Emit,
    LayerCall,
    channels_last,
    choice,
    float_or_floats,
    ints,
    pair,
    pairs,
    registrar,
)

LAYERS: dict[str, Converter] = {}
layer = registrar(LAYERS)

# Layers that do nothing at inference: their consumers read their input.
DROPPED = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
    # Augmentation layers pass their input through unless training=True.
    "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "RandomContrast", "RandomBrightness",
)

# Keras' default fuzz factor (keras.config.epsilon()), used by Normalization.
KERAS_EPSILON = 1e-7


@layer(*DROPPED)
def dropped(call: LayerCall) -> list[Emit]:
    return []


def _bias(config: dict[str, Any]) -> bool:
    return bool(config.get("use_bias", True))


def _kernel_bias(config: dict[str, Any]) -> list[str]:
    return ["kernel", "bias"] if _bias(config) else ["kernel"]


def with_activation(call: LayerCall, emit: Emit) -> list[Emit]:
    """``emit`` with the layer's activation fused, or followed by an activation layer's node."""
    act = activations.resolve(call.config.get("activation"), what=call.name, kind=call.class_name,
                              keras_version=call.keras_version)
    if isinstance(act, str):
        emit.attrs["activation"] = act
        return [emit]
    class_name, config = act
    emit.attrs["activation"] = "linear"
    emit.suffix = "preactivation"
    inner = LayerCall(call.name, class_name, config, {}, [], keras_version=call.keras_version)
    return [emit, *LAYERS[class_name].convert(inner)]


# -- core ------------------------------------------------------------------------------

@layer("Dense", roles=_kernel_bias)
def dense(call: LayerCall) -> list[Emit]:
    attrs = {"units": int(call.config["units"]), "activation": "linear", "use_bias": _bias(call.config)}
    return with_activation(call, Emit("Dense", attrs, call.weights))


@layer("Activation")
def activation(call: LayerCall) -> list[Emit]:
    act = activations.resolve(call.config.get("activation"), what=call.name, kind=call.class_name,
                              keras_version=call.keras_version)
    if isinstance(act, str):
        return [Emit("Activation", {"activation": act})]
    class_name, config = act
    return LAYERS[class_name].convert(LayerCall(call.name, class_name, config, {}, call.inputs,
                                                keras_version=call.keras_version))


@layer("ReLU")
def relu(call: LayerCall) -> list[Emit]:
    c = call.config
    max_value = c.get("max_value")
    return [Emit("ReLU", {"max_value": None if max_value is None else float(max_value),
                          "negative_slope": float(c.get("negative_slope", 0.0)),
                          "threshold": float(c.get("threshold", 0.0))})]


@layer("LeakyReLU")
def leaky_relu(call: LayerCall) -> list[Emit]:
    # Keras 3 calls it negative_slope, Keras 2 alpha.
    slope = call.config.get("negative_slope", call.config.get("alpha", 0.3))
    return [Emit("LeakyReLU", {"negative_slope": float(slope)})]


@layer("ELU")
def elu(call: LayerCall) -> list[Emit]:
    return [Emit("ELU", {"alpha": float(call.config.get("alpha", 1.0))})]


@layer("Softmax")
def softmax(call: LayerCall) -> list[Emit]:
    if call.mask(0) is not None:
        raise call.unsupported("receives a Keras mask, which it would add to its input as -1e9 at masked "
                               "positions; the Softmax op has no mask input", ["an unmasked input"])
    axis = call.config.get("axis", -1)
    return [Emit("Softmax", {"axis": [int(a) for a in axis] if isinstance(axis, list) else int(axis)})]


@layer("PReLU", roles=lambda c: ["alpha"])
def prelu(call: LayerCall) -> list[Emit]:
    shared = call.config.get("shared_axes")
    shared = [] if shared is None else [int(shared)] if isinstance(shared, int) else [int(a) for a in shared]
    return [Emit("PReLU", {"shared_axes": shared}, call.weights)]


# -- convolutions ----------------------------------------------------------------------

def _window(call: LayerCall, rank: int) -> dict[str, Any]:
    channels_last(call)
    strides = ints(call, "strides", rank, 1)
    dilation = ints(call, "dilation_rate", rank, 1)
    if max(strides) > 1 and max(dilation) > 1:
        raise call.unsupported(f"combines strides={strides} with dilation_rate={dilation}, which Keras "
                               "itself refuses", ["strides > 1 or dilation_rate > 1, not both"])
    return {"kernel_size": ints(call, "kernel_size", rank), "strides": strides, "dilation_rate": dilation}


@layer("Conv1D", roles=_kernel_bias)
def conv1d(call: LayerCall) -> list[Emit]:
    return _conv(call, 1, "Conv1D", ("valid", "same", "causal"))


@layer("Conv2D", roles=_kernel_bias)
def conv2d(call: LayerCall) -> list[Emit]:
    return _conv(call, 2, "Conv2D", ("valid", "same"))


def _conv(call: LayerCall, rank: int, op: str, paddings: tuple[str, ...]) -> list[Emit]:
    c = call.config
    attrs = {"filters": int(c["filters"]), **_window(call, rank), "padding": choice(call, "padding", paddings),
             "groups": int(c.get("groups", 1)), "activation": "linear", "use_bias": _bias(c)}
    return with_activation(call, Emit(op, attrs, call.weights))


@layer("DepthwiseConv2D", roles=_kernel_bias)
def depthwise_conv2d(call: LayerCall) -> list[Emit]:
    c = call.config
    attrs = {"depth_multiplier": int(c.get("depth_multiplier", 1)), **_window(call, 2),
             "padding": choice(call, "padding", ("valid", "same")), "activation": "linear", "use_bias": _bias(c)}
    return with_activation(call, Emit("DepthwiseConv2D", attrs, call.weights))


@layer("SeparableConv2D",
       roles=lambda c: ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if _bias(c) else []))
def separable_conv2d(call: LayerCall) -> list[Emit]:
    c = call.config
    attrs = {"filters": int(c["filters"]), "depth_multiplier": int(c.get("depth_multiplier", 1)),
             **_window(call, 2), "padding": choice(call, "padding", ("valid", "same")),
             "activation": "linear", "use_bias": _bias(c)}
    return with_activation(call, Emit("SeparableConv2D", attrs, call.weights))


@layer("Conv2DTranspose", roles=_kernel_bias)
def conv2d_transpose(call: LayerCall) -> list[Emit]:
    c = call.config
    if int(c.get("groups", 1)) != 1:
        raise call.unsupported(f"has groups={c.get('groups')}", ["groups=1"])
    out_pad = c.get("output_padding")
    attrs = {"filters": int(c["filters"]), **_window(call, 2), "padding": choice(call, "padding", ("valid", "same")),
             "groups": 1, "activation": "linear", "use_bias": _bias(c),
             "output_padding": None if out_pad is None else ints(call, "output_padding", 2)}
    return with_activation(call, Emit("Conv2DTranspose", attrs, call.weights))


# -- pooling ---------------------------------------------------------------------------

def _pool(rank: int, op: str):
    def convert(call: LayerCall) -> list[Emit]:
        channels_last(call)
        size = ints(call, "pool_size", rank)
        strides = size if call.config.get("strides") is None else ints(call, "strides", rank)
        return [Emit(op, {"pool_size": size, "strides": strides,
                          "padding": choice(call, "padding", ("valid", "same"))})]

    return convert


def _global_pool(op: str):
    def convert(call: LayerCall) -> list[Emit]:
        channels_last(call)
        return [Emit(op, {"keepdims": bool(call.config.get("keepdims", False))})]

    return convert


for _rank in (1, 2):
    for _kind in ("Max", "Average"):
        _op = f"{_kind}Pooling{_rank}D"
        layer(_op)(_pool(_rank, _op))
        if _op != "AveragePooling1D":  # GlobalAveragePooling1D honours masks: sequence.py
            layer(f"Global{_op}")(_global_pool(f"Global{_op}"))


# -- normalisation ---------------------------------------------------------------------

def _bn_roles(c: dict[str, Any]) -> list[str]:
    return ((["gamma"] if c.get("scale", True) else []) + (["beta"] if c.get("center", True) else [])
            + ["moving_mean", "moving_variance"])


@layer("BatchNormalization", roles=_bn_roles)
def batch_normalization(call: LayerCall) -> list[Emit]:
    c = call.config
    if c.get("renorm"):
        raise call.unsupported("uses batch renormalization (renorm=True)", ["renorm=False"])
    axis = c.get("axis", -1)
    if isinstance(axis, list):
        if len(axis) != 1:
            raise call.unsupported(f"normalizes over several axes {axis}", ["a single axis"])
        axis = axis[0]
    attrs = {"axis": int(axis), "epsilon": float(c.get("epsilon", 1e-3)), "center": bool(c.get("center", True)),
             "scale": bool(c.get("scale", True))}
    return [Emit("BatchNormalization", attrs, call.weights)]


def _ln_roles(c: dict[str, Any]) -> list[str]:
    rms = bool(c.get("rms_scaling", False))
    return ((["gamma"] if c.get("scale", True) or rms else [])
            + (["beta"] if c.get("center", True) and not rms else []))


@layer("LayerNormalization", roles=_ln_roles)
def layer_normalization(call: LayerCall) -> list[Emit]:
    c = call.config
    axis = c.get("axis", -1)
    attrs = {"axis": [int(a) for a in axis] if isinstance(axis, list) else [int(axis)],
             "epsilon": float(c.get("epsilon", 1e-3)), "center": bool(c.get("center", True)),
             "scale": bool(c.get("scale", True)), "rms_scaling": bool(c.get("rms_scaling", False))}
    return [Emit("LayerNormalization", attrs, call.weights)]


@layer("Rescaling")
def rescaling(call: LayerCall) -> list[Emit]:
    c = call.config
    return [Emit("Rescaling", {"scale": float_or_floats(call, "scale", c.get("scale", 1.0)),
                               "offset": float_or_floats(call, "offset", c.get("offset", 0.0))})]


@layer("Normalization", roles=lambda c: ["mean", "variance", "count"] if c.get("mean") is None else [])
def normalization(call: LayerCall) -> list[Emit]:
    c = call.config
    rank = len(call.x.shape)
    axis = c.get("axis", -1)
    axis = [] if axis is None else [axis] if isinstance(axis, int) else list(axis)
    keep = sorted(a % rank for a in axis)
    if 0 in keep:
        raise call.unsupported("keeps statistics per batch item (axis includes 0)", ["axes other than the batch axis"])
    broadcast = [call.x.shape[d] if d in keep else 1 for d in range(rank)]
    if c.get("mean") is not None:
        mean, variance = (_expand(np.asarray(c[k], np.float32), keep, rank) for k in ("mean", "variance"))
    else:
        mean, variance = call.weights["mean"], call.weights["variance"]
        if not np.any(mean) and np.all(variance == 1):
            raise call.unsupported("has the initial mean 0 and variance 1: it was never adapted. Call "
                                   "layer.adapt(data) (or pass mean= and variance=) before exporting",
                                   ["an adapted Normalization", "mean= and variance= given"])
    try:
        shape = broadcast[1:]
        mean = np.broadcast_to(np.reshape(mean, broadcast), broadcast).reshape(shape).astype(np.float32)
        variance = np.broadcast_to(np.reshape(variance, broadcast), broadcast).reshape(shape).astype(np.float32)
    except ValueError as e:
        raise call.unsupported(f"has statistics that do not fit its input {list(call.x.shape)}: {e}") from e
    return [Emit("Normalization", {"invert": bool(c.get("invert", False)), "epsilon": KERAS_EPSILON},
                 {"mean": mean, "variance": variance})]


def _expand(value: np.ndarray, keep: list[int], rank: int) -> np.ndarray:
    """Keras' alignment of a given mean/variance to the kept axes, right to left."""
    if value.ndim == 0:
        return value.reshape([1] * rank)
    shape = [1] * rank
    for i in range(1, value.ndim + 1):
        shape[keep[-i]] = value.shape[-i]
    return value.reshape(shape)


# -- reshaping and merging -------------------------------------------------------------

@layer("Flatten")
def flatten(call: LayerCall) -> list[Emit]:
    if len(call.x.shape) > 2:
        channels_last(call)
    return [Emit("Flatten", {})]


@layer("Reshape")
def reshape(call: LayerCall) -> list[Emit]:
    return [Emit("Reshape", {"target_shape": [int(d) for d in call.config["target_shape"]]})]


@layer("Permute")
def permute(call: LayerCall) -> list[Emit]:
    return [Emit("Permute", {"dims": [int(d) for d in call.config["dims"]]})]


@layer("RepeatVector")
def repeat_vector(call: LayerCall) -> list[Emit]:
    return [Emit("RepeatVector", {"n": int(call.config["n"])})]


@layer("Concatenate")
def concatenate(call: LayerCall) -> list[Emit]:
    return [Emit("Concatenate", {"axis": int(call.config.get("axis", -1))})]


def _merge(op: str):
    def convert(call: LayerCall) -> list[Emit]:
        return [Emit(op, {})]

    return convert


for _op in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
    layer(_op)(_merge(_op))


@layer("Dot")
def dot(call: LayerCall) -> list[Emit]:
    axes = call.config.get("axes", -1)
    axes = [int(axes), int(axes)] if isinstance(axes, int) else [int(a) for a in axes]
    return [Emit("Dot", {"axes": axes, "normalize": bool(call.config.get("normalize", False))})]


# -- padding, cropping, resampling -----------------------------------------------------

@layer("ZeroPadding1D")
def zero_padding1d(call: LayerCall) -> list[Emit]:
    return [Emit("ZeroPadding1D", {"padding": pair(call, "padding")})]


@layer("ZeroPadding2D")
def zero_padding2d(call: LayerCall) -> list[Emit]:
    channels_last(call)
    return [Emit("ZeroPadding2D", {"padding": pairs(call, "padding")})]


@layer("Cropping1D")
def cropping1d(call: LayerCall) -> list[Emit]:
    return [Emit("Cropping1D", {"cropping": pair(call, "cropping")})]


@layer("Cropping2D")
def cropping2d(call: LayerCall) -> list[Emit]:
    channels_last(call)
    return [Emit("Cropping2D", {"cropping": pairs(call, "cropping")})]


@layer("UpSampling1D")
def upsampling1d(call: LayerCall) -> list[Emit]:
    return [Emit("UpSampling1D", {"size": int(call.config.get("size", 2))})]


@layer("UpSampling2D")
def upsampling2d(call: LayerCall) -> list[Emit]:
    channels_last(call)
    return [Emit("UpSampling2D", {"size": ints(call, "size", 2, 2),
                                  "interpolation": choice(call, "interpolation", ("nearest", "bilinear"), "nearest")})]
