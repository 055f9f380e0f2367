"""TF.js layers model (Keras-2-style topology) -> IR graph.

One small reader function per layer class, registered by class name. Config
keys may be snake_case (Keras, tensorflowjs_converter, TF.js ``model.save``)
or camelCase, and string values camelCase (``channelsLast``) as TF.js
accepts both. Activations mean what they mean in the file's Keras dialect:
``hard_sigmoid`` is 0.2x+0.5 in Keras 2 and TF.js, relu6(x+3)/6 in Keras 3.

>>> graph = read_layers_model(doc["modelTopology"], weights, path, {})    # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.web import format as fmt
from converters.web.tfjs_registry import TFJS_LAYER_CLASSES
from savedmodel.errors import FormatError, UnsupportedError
from savedmodel.ir import Graph, Node, TensorSpec

# Activation strings -> IR activation, for both dialects; hard_sigmoid is handled apart.
_ACTIVATIONS = {
    "linear": "linear", "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh",
    "softmax": "softmax", "log_softmax": "log_softmax", "elu": "elu", "selu": "selu", "softplus": "softplus",
    "softsign": "softsign", "mish": "mish", "gelu": "gelu", "gelu_new": "gelu_approximate", "swish": "silu",
    "silu": "silu", "leaky_relu": "leaky_relu", "exponential": "exponential", "hard_silu": "hard_silu",
    "hard_swish": "hard_silu",
}


def snake(name: str) -> str:
    """camelCase -> snake_case (snake_case stays)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@dataclass
class LayerInfo:
    class_name: str
    name: str
    config: dict[str, Any]
    where: str  # "modelTopology.config.layers[3]" for messages


@dataclass
class Reader:
    """What a class reader writes into: nodes, weights, and the manifest weights consumed."""

    path: Path
    manifest: dict[str, np.ndarray]
    keras3: bool
    nodes: list[Node] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def fail(self, layer: LayerInfo, problem: str) -> FormatError:
        return FormatError(self.path, f"{layer.where} (layer {layer.name!r}, {layer.class_name}): {problem}")

    def weight(self, layer: LayerInfo, name: str, required: bool = True) -> np.ndarray | None:
        """The manifest weight ``<layer>/<name>`` (also ``<layer>/<cell>/<name>``, as TF.js accepts)."""
        key = f"{layer.name}/{name}"
        if key not in self.manifest:
            nested = [k for k in self.manifest if k.startswith(f"{layer.name}/") and k.endswith(f"/{name}")
                      and k.count("/") == 2]
            key = nested[0] if len(nested) == 1 else key
        if key not in self.manifest:
            if required:
                raise self.fail(layer, f"weight {layer.name}/{name} is not in the weights manifest")
            return None
        self.used.add(key)
        return self.manifest[key]

    def add(self, op: str, inputs: list[str], name: str, attrs: dict[str, Any] | None = None,
            weights: dict[str, np.ndarray | None] | None = None) -> str:
        keys = {}
        for role, value in (weights or {}).items():
            if value is not None:
                keys[role] = f"{name}/{role}"
                self.weights[keys[role]] = np.asarray(value, np.float32) if np.asarray(value).dtype.kind == "f" \
                    else np.asarray(value)
        self.nodes.append(Node(name, op, list(inputs), [name], dict(attrs or {}), keys))
        return name

    def activation(self, layer: LayerInfo, value: Any) -> tuple[str, Callable[[str], str] | None]:
        """(IR activation to fuse, a function adding the layers that finish it, or None)."""
        if value is None:
            return "linear", None
        if isinstance(value, dict):  # {"class_name": "ReLU", "config": {...}} (Keras 3 objects)
            value = value.get("config", {}).get("name") or value.get("class_name")
        if not isinstance(value, str):
            raise self.fail(layer, f"activation {value!r} is not a string")
        act = snake(value)
        if act == "hard_sigmoid" and not self.keras3:
            # Keras 2 and TF.js: clip(0.2 x + 0.5, 0, 1); the IR's hard_sigmoid is Keras 3's.
            def finish(x: str) -> str:
                y = self.add("Rescaling", [x], f"{layer.name}/hard_sigmoid_affine", {"scale": 0.2, "offset": 0.5})
                return self.add("ReLU", [y], f"{layer.name}/hard_sigmoid", {"max_value": 1.0})

            return "linear", finish
        if act == "hard_sigmoid":
            return "hard_sigmoid", None
        if act not in _ACTIVATIONS:
            raise self.fail(layer, f"unknown activation {value!r}; known: {sorted(_ACTIVATIONS) + ['hard_sigmoid']}")
        return _ACTIVATIONS[act], None


ClassReader = Callable[[Reader, LayerInfo, list[str]], str]
CLASS_READERS: dict[str, ClassReader] = {}


def reads(*classes: str) -> Callable[[ClassReader], ClassReader]:
    def register(fn: ClassReader) -> ClassReader:
        for c in classes:
            CLASS_READERS[c] = fn
        return fn

    return register


# -- config helpers -------------------------------------------------------------------------
def _ints(value: Any, rank: int) -> list[int]:
    if isinstance(value, int):
        return [value] * rank
    return [int(v) for v in value]


def _pairs(value: Any, rank: int) -> list[list[int]]:
    """Keras padding/cropping: n, (a, b) meaning symmetric per axis, or ((t, b), (l, r))."""
    if isinstance(value, int):
        return [[value, value] for _ in range(rank)]
    value = list(value)
    if rank == 1:
        return [[int(value[0]), int(value[1])]]
    if all(isinstance(v, int) for v in value):
        return [[int(v), int(v)] for v in value]
    return [[int(a), int(b)] for a, b in value]


def _channels_last(r: Reader, layer: LayerInfo) -> None:
    data_format = layer.config.get("data_format")
    if data_format not in (None, "channels_last", "channelsLast"):
        raise UnsupportedError(f"layer {layer.name!r}: data_format {data_format!r} is not supported; the IR is "
                               "channels-last.", what=layer.name, kind=layer.class_name)


def _finish(x: str, finish: Callable[[str], str] | None) -> str:
    return finish(x) if finish else x


# -- class readers -----------------------------------------------------------------------------
@reads("Dense")
def dense(r, layer, xs):
    c = layer.config
    act, finish = r.activation(layer, c.get("activation"))
    bias = c.get("use_bias", True)
    y = r.add("Dense", xs, layer.name, {"units": int(c["units"]), "activation": act, "use_bias": bias},
              {"kernel": r.weight(layer, "kernel"), "bias": r.weight(layer, "bias") if bias else None})
    return _finish(y, finish)


def _conv_attrs(r: Reader, layer: LayerInfo, rank: int) -> tuple[dict[str, Any], Callable[[str], str] | None]:
    c = layer.config
    _channels_last(r, layer)
    act, finish = r.activation(layer, c.get("activation"))
    attrs = {"kernel_size": _ints(c["kernel_size"], rank), "strides": _ints(c.get("strides", 1), rank),
             "padding": snake(c.get("padding", "valid")), "dilation_rate": _ints(c.get("dilation_rate", 1), rank),
             "activation": act, "use_bias": c.get("use_bias", True)}
    return attrs, finish


@reads("Conv1D", "Conv2D")
def conv(r, layer, xs):
    rank = 1 if layer.class_name == "Conv1D" else 2
    attrs, finish = _conv_attrs(r, layer, rank)
    attrs.update(filters=int(layer.config["filters"]), groups=int(layer.config.get("groups", 1)))
    y = r.add(layer.class_name, xs, layer.name, attrs,
              {"kernel": r.weight(layer, "kernel"), "bias": r.weight(layer, "bias") if attrs["use_bias"] else None})
    return _finish(y, finish)


@reads("DepthwiseConv2D")
def depthwise(r, layer, xs):
    attrs, finish = _conv_attrs(r, layer, 2)
    attrs["depth_multiplier"] = int(layer.config.get("depth_multiplier", 1))
    y = r.add("DepthwiseConv2D", xs, layer.name, attrs, {
        "kernel": r.weight(layer, "depthwise_kernel"),
        "bias": r.weight(layer, "bias") if attrs["use_bias"] else None})
    return _finish(y, finish)


@reads("SeparableConv2D")
def separable(r, layer, xs):
    attrs, finish = _conv_attrs(r, layer, 2)
    attrs.update(filters=int(layer.config["filters"]), depth_multiplier=int(layer.config.get("depth_multiplier", 1)))
    y = r.add("SeparableConv2D", xs, layer.name, attrs, {
        "depthwise_kernel": r.weight(layer, "depthwise_kernel"),
        "pointwise_kernel": r.weight(layer, "pointwise_kernel"),
        "bias": r.weight(layer, "bias") if attrs["use_bias"] else None})
    return _finish(y, finish)


@reads("Conv2DTranspose")
def conv_transpose(r, layer, xs):
    attrs, finish = _conv_attrs(r, layer, 2)
    out_pad = layer.config.get("output_padding")
    attrs.update(filters=int(layer.config["filters"]), output_padding=None if out_pad is None else _ints(out_pad, 2))
    y = r.add("Conv2DTranspose", xs, layer.name, attrs,
              {"kernel": r.weight(layer, "kernel"), "bias": r.weight(layer, "bias") if attrs["use_bias"] else None})
    return _finish(y, finish)


@reads("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "MaxPool1D", "MaxPool2D",
       "AvgPool1D", "AvgPool2D")
def pooling(r, layer, xs):
    c = layer.config
    _channels_last(r, layer)
    rank = 1 if layer.class_name.endswith("1D") else 2
    op = ("MaxPooling" if layer.class_name.startswith("Max") else "AveragePooling") + f"{rank}D"
    pool = _ints(c.get("pool_size", 2), rank)
    strides = c.get("strides")
    return r.add(op, xs, layer.name, {"pool_size": pool, "strides": pool if strides is None else _ints(strides, rank),
                                      "padding": snake(c.get("padding", "valid"))})


@reads("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
       "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalAvgPool1D", "GlobalAvgPool2D")
def global_pooling(r, layer, xs):
    _channels_last(r, layer)
    kind = "Max" if "Max" in layer.class_name else "Average"
    op = f"Global{kind}Pooling{layer.class_name[-2:]}"
    # TF.js ignores keepdims (a bug); we follow the file, as Keras does.
    return r.add(op, xs, layer.name, {"keepdims": bool(layer.config.get("keepdims", False))})


def _axis(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


@reads("BatchNormalization")
def batch_norm(r, layer, xs):
    c = layer.config
    axis = _axis(c.get("axis", -1))
    if not isinstance(axis, int):
        raise UnsupportedError(f"layer {layer.name!r}: BatchNormalization over axes {axis} is not supported.",
                               what=layer.name, kind="BatchNormalization")
    center, scale = c.get("center", True), c.get("scale", True)
    return r.add("BatchNormalization", xs, layer.name,
                 {"axis": axis, "epsilon": float(c.get("epsilon", 1e-3)), "center": center, "scale": scale}, {
                     "gamma": r.weight(layer, "gamma") if scale else None,
                     "beta": r.weight(layer, "beta") if center else None,
                     "moving_mean": r.weight(layer, "moving_mean"),
                     "moving_variance": r.weight(layer, "moving_variance")})


@reads("LayerNormalization")
def layer_norm(r, layer, xs):
    c = layer.config
    axis = c.get("axis", -1)
    center, scale = c.get("center", True), c.get("scale", True)
    return r.add("LayerNormalization", xs, layer.name, {
        "axis": [axis] if isinstance(axis, int) else list(axis), "epsilon": float(c.get("epsilon", 1e-3)),
        "center": center, "scale": scale, "rms_scaling": bool(c.get("rms_scaling", False))}, {
        "gamma": r.weight(layer, "gamma") if scale else None, "beta": r.weight(layer, "beta") if center else None})


@reads("Activation")
def activation(r, layer, xs):
    act, finish = r.activation(layer, layer.config.get("activation"))
    if finish is not None:
        return finish(xs[0])
    return r.add("Activation", xs, layer.name, {"activation": act})


@reads("ReLU")
def relu(r, layer, xs):
    c = layer.config
    top = c.get("max_value")
    return r.add("ReLU", xs, layer.name, {"max_value": None if top is None else float(top),
                                          "negative_slope": float(c.get("negative_slope", 0.0)),
                                          "threshold": float(c.get("threshold", 0.0))})


@reads("LeakyReLU")
def leaky_relu(r, layer, xs):
    c = layer.config
    slope = c.get("negative_slope", c.get("alpha", 0.2 if r.keras3 else 0.3))
    return r.add("LeakyReLU", xs, layer.name, {"negative_slope": float(slope)})


@reads("ThresholdedReLU")
def thresholded_relu(r, layer, xs):
    return r.add("ReLU", xs, layer.name, {"max_value": None, "negative_slope": 0.0,
                                          "threshold": float(layer.config.get("theta", 1.0))})


@reads("ELU")
def elu(r, layer, xs):
    return r.add("ELU", xs, layer.name, {"alpha": float(layer.config.get("alpha", 1.0))})


@reads("Softmax")
def softmax(r, layer, xs):
    axis = _axis(layer.config.get("axis", -1))
    return r.add("Softmax", xs, layer.name, {"axis": axis})


@reads("PReLU")
def prelu(r, layer, xs):
    shared = layer.config.get("shared_axes")
    shared = [] if shared is None else ([shared] if isinstance(shared, int) else list(shared))
    return r.add("PReLU", xs, layer.name, {"shared_axes": shared}, {"alpha": r.weight(layer, "alpha")})


@reads("Rescaling")
def rescaling(r, layer, xs):
    c = layer.config
    return r.add("Rescaling", xs, layer.name, {"scale": c.get("scale", 1.0), "offset": c.get("offset", 0.0)})


@reads("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "Identity",
       "ActivityRegularization")
def identity(r, layer, xs):
    return r.add("Identity", xs, layer.name)


@reads("Flatten")
def flatten(r, layer, xs):
    _channels_last(r, layer)
    return r.add("Flatten", xs, layer.name)


@reads("Reshape")
def reshape(r, layer, xs):
    return r.add("Reshape", xs, layer.name, {"target_shape": [int(d) for d in layer.config["target_shape"]]})


@reads("Permute")
def permute(r, layer, xs):
    return r.add("Permute", xs, layer.name, {"dims": [int(d) for d in layer.config["dims"]]})


@reads("RepeatVector")
def repeat_vector(r, layer, xs):
    return r.add("RepeatVector", xs, layer.name, {"n": int(layer.config["n"])})


@reads("Add", "Multiply", "Average", "Maximum", "Minimum", "Subtract")
def merge(r, layer, xs):
    return r.add(layer.class_name, xs, layer.name)


@reads("Concatenate")
def concatenate(r, layer, xs):
    return r.add("Concatenate", xs, layer.name, {"axis": int(layer.config.get("axis", -1))})


@reads("Dot")
def dot(r, layer, xs):
    axes = layer.config["axes"]
    return r.add("Dot", xs, layer.name, {"axes": _ints(axes, 2), "normalize": bool(layer.config.get("normalize",
                                                                                                      False))})


@reads("ZeroPadding1D", "ZeroPadding2D")
def zero_padding(r, layer, xs):
    _channels_last(r, layer)
    rank = int(layer.class_name[-2])
    pads = _pairs(layer.config.get("padding", 1), rank)
    return r.add(layer.class_name, xs, layer.name, {"padding": pads[0] if rank == 1 else pads})


@reads("Cropping1D", "Cropping2D")
def cropping(r, layer, xs):
    _channels_last(r, layer)
    rank = int(layer.class_name[-2])
    crops = _pairs(layer.config.get("cropping", 1 if rank == 1 else 0), rank)
    return r.add(layer.class_name, xs, layer.name, {"cropping": crops[0] if rank == 1 else crops})


@reads("UpSampling1D")
def upsampling1d(r, layer, xs):
    return r.add("UpSampling1D", xs, layer.name, {"size": int(layer.config.get("size", 2))})


@reads("UpSampling2D")
def upsampling2d(r, layer, xs):
    _channels_last(r, layer)
    interpolation = snake(layer.config.get("interpolation", "nearest"))
    if interpolation not in ("nearest", "bilinear"):
        raise UnsupportedError(f"layer {layer.name!r}: UpSampling2D interpolation {interpolation!r} is not "
                               "supported.", what=layer.name, kind="UpSampling2D", supported=["nearest", "bilinear"])
    return r.add("UpSampling2D", xs, layer.name, {"size": _ints(layer.config.get("size", 2), 2),
                                                  "interpolation": interpolation})


# -- topology ---------------------------------------------------------------------------------
def _layer_info(r: Reader, entry: Any, where: str) -> LayerInfo:
    if not isinstance(entry, dict) or not isinstance(entry.get(fmt.KEY_CLASS), str) \
            or not isinstance(entry.get(fmt.KEY_CONFIG), dict):
        raise FormatError(r.path, f"{where}: a layer needs 'class_name' and a 'config' object")
    config = {snake(k): v for k, v in entry[fmt.KEY_CONFIG].items()}
    name = entry.get("name", config.get("name"))
    if not isinstance(name, str) or not name:
        raise FormatError(r.path, f"{where}: the layer has no name")
    return LayerInfo(entry[fmt.KEY_CLASS], name, config, where)


def _input_spec(r: Reader, layer: LayerInfo, name: str) -> TensorSpec:
    c = layer.config
    shape = c.get("batch_input_shape", c.get("batch_shape"))
    if shape is None and c.get("input_shape") is not None:
        shape = [None, *c["input_shape"]]
    if not isinstance(shape, list):
        raise r.fail(layer, "an input layer needs 'batch_input_shape'")
    dtype = c.get("dtype", "float32")
    if isinstance(dtype, dict):  # a Keras 3 DTypePolicy
        dtype = dtype.get("config", {}).get("name", "float32")
    dtype = "int32" if str(dtype).startswith(("int", "uint")) else "float32"
    return TensorSpec(name, dtype, tuple(None if d is None else int(d) for d in shape))


def _apply(r: Reader, layer: LayerInfo, inputs: list[str]) -> str:
    fn = CLASS_READERS.get(layer.class_name)
    if fn is not None:
        try:
            return fn(r, layer, inputs)
        except (KeyError, TypeError, ValueError) as e:
            raise r.fail(layer, f"malformed config ({type(e).__name__}: {e})") from e
    if layer.class_name in TFJS_LAYER_CLASSES or layer.class_name in (fmt.CLASS_SEQUENTIAL, *fmt.FUNCTIONAL_CLASSES):
        raise UnsupportedError(
            f"{r.path}: {layer.where}: layer {layer.name!r} of class {layer.class_name} has no op in the "
            "catalogue.", what=layer.name, kind=layer.class_name, supported=sorted(CLASS_READERS))
    raise FormatError(r.path, f"{layer.where}: layer {layer.name!r} has an unknown layer class "
                              f"{layer.class_name!r}; known classes: {', '.join(sorted(CLASS_READERS))}")


def read_layers_model(topology: dict[str, Any], manifest: dict[str, np.ndarray], path: Path,
                      ours: dict[str, Any]) -> Graph:
    """The IR graph of a layers-model topology with its (dequantized) manifest weights."""
    keras_version = str(topology.get("keras_version", ""))
    if fmt.KEY_MODEL_CONFIG in topology:  # the legacy wrapper {"model_config": {...}, "keras_version": ...}
        topology = topology[fmt.KEY_MODEL_CONFIG]
        keras_version = keras_version or str(topology.get("keras_version", ""))
    r = Reader(path, manifest, keras_version.startswith("3."))
    class_name = topology.get(fmt.KEY_CLASS)
    config = topology.get(fmt.KEY_CONFIG)
    if class_name == fmt.CLASS_SEQUENTIAL:
        layers = config.get(fmt.KEY_LAYERS) if isinstance(config, dict) else config
        inputs, outputs = _sequential(r, layers)
    elif class_name in fmt.FUNCTIONAL_CLASSES:
        if not isinstance(config, dict):
            raise FormatError(path, f"{fmt.KEY_TOPOLOGY}.config must be an object")
        inputs, outputs = _functional(r, config)
    else:
        raise FormatError(path, f"{fmt.KEY_TOPOLOGY}.class_name {class_name!r} is not one of "
                                f"{[fmt.CLASS_SEQUENTIAL, *fmt.FUNCTIONAL_CLASSES]}")
    unused = sorted(set(manifest) - r.used)
    if unused:
        raise FormatError(path, f"{fmt.KEY_MANIFEST}: weights {unused} belong to no layer of the model")
    graph = Graph(inputs, [TensorSpec(t, "float32", ()) for t in outputs], r.nodes, r.weights)
    return _rename(graph, ours)


def _sequential(r: Reader, layers: Any) -> tuple[list[TensorSpec], list[str]]:
    where = f"{fmt.KEY_TOPOLOGY}.config.layers"
    if not isinstance(layers, list) or not layers:
        raise FormatError(r.path, f"{where} must be a non-empty list")
    infos = [_layer_info(r, e, f"{where}[{i}]") for i, e in enumerate(layers)]
    if infos[0].class_name == fmt.CLASS_INPUT:
        spec = _input_spec(r, infos[0], infos[0].name)
        infos = infos[1:]
    else:
        spec = _input_spec(r, infos[0], f"{infos[0].name}_input")
    x = spec.name
    for info in infos:
        if info.class_name == fmt.CLASS_INPUT:
            raise r.fail(info, "an InputLayer may only come first in a Sequential model")
        x = _apply(r, info, [x])
    return [spec], [x]


def _inbound(r: Reader, info: LayerInfo, entry: dict[str, Any]) -> list[str]:
    nodes = entry.get(fmt.KEY_INBOUND)
    if not isinstance(nodes, list):
        raise r.fail(info, "'inbound_nodes' is missing (TF.js loops forever on this)")
    if len(nodes) > 1:
        raise UnsupportedError(f"layer {info.name!r} is called {len(nodes)} times (a shared layer); not supported.",
                               what=info.name, kind=info.class_name)
    if not nodes:
        return []
    call = nodes[0]
    if isinstance(call, dict):
        raise r.fail(info, "Keras 3 style inbound_nodes ({'args': ...}); TF.js and this reader need Keras 2 "
                           "style [[name, node_index, tensor_index, kwargs], ...]")
    refs = []
    for ref in call:
        if not isinstance(ref, list) or len(ref) < 3 or not isinstance(ref[0], str):
            raise r.fail(info, f"malformed inbound reference {ref!r}")
        if ref[1] != 0 or ref[2] != 0:
            raise UnsupportedError(f"layer {info.name!r} reads output {ref[1]}/{ref[2]} of {ref[0]!r}; only "
                                   "single-output, single-call layers are supported.", what=info.name)
        refs.append(ref[0])
    return refs


def _functional(r: Reader, config: dict[str, Any]) -> tuple[list[TensorSpec], list[str]]:
    where = f"{fmt.KEY_TOPOLOGY}.config.layers"
    layers = config.get(fmt.KEY_LAYERS)
    if not isinstance(layers, list):
        raise FormatError(r.path, f"{where} must be a list")
    infos: dict[str, tuple[LayerInfo, list[str]]] = {}
    for i, entry in enumerate(layers):
        info = _layer_info(r, entry, f"{where}[{i}]")
        if info.name in infos:
            raise r.fail(info, "two layers have this name")
        infos[info.name] = (info, _inbound(r, info, entry))
    for key in (fmt.KEY_INPUT_LAYERS, fmt.KEY_OUTPUT_LAYERS):
        refs = config.get(key)
        if not isinstance(refs, list) or not refs:
            raise FormatError(r.path, f"{fmt.KEY_TOPOLOGY}.config.{key} must be a non-empty list")
        for ref in refs:
            if not isinstance(ref, list) or not ref or ref[0] not in infos:
                raise FormatError(r.path, f"{fmt.KEY_TOPOLOGY}.config.{key}: {ref!r} names no layer")
    inputs = []
    for ref in config[fmt.KEY_INPUT_LAYERS]:
        info, _ = infos[ref[0]]
        if info.class_name != fmt.CLASS_INPUT:
            raise r.fail(info, "a model input must be an InputLayer")
        inputs.append(_input_spec(r, info, info.name))
    # Layers may be listed in any order (TF.js resolves them lazily): visit in dependency order.
    done: dict[str, str] = {spec.name: spec.name for spec in inputs}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> str:
        if name in done:
            return done[name]
        if name not in infos:
            raise FormatError(r.path, f"layer {trail[-1]!r} reads layer {name!r}, which does not exist "
                                      "(TF.js loops forever on this)")
        if state.get(name) == 1:
            raise FormatError(r.path, f"the layers {trail} form a cycle")
        info, refs = infos[name]
        if info.class_name == fmt.CLASS_INPUT:
            raise r.fail(info, f"the InputLayer is not listed in {fmt.KEY_INPUT_LAYERS}")
        if not refs:
            raise r.fail(info, "the layer has no inbound nodes")
        state[name] = 1
        xs = [visit(ref, [*trail, name]) for ref in refs]
        state[name] = 2
        done[name] = _apply(r, info, xs)
        return done[name]

    outputs = [visit(ref[0], [ref[0]]) for ref in config[fmt.KEY_OUTPUT_LAYERS]]
    for name in infos:  # layers that feed no output still need their weights checked
        if infos[name][0].class_name != fmt.CLASS_INPUT:
            visit(name, [name])
    return inputs, outputs


def _rename(graph: Graph, ours: dict[str, Any]) -> Graph:
    """Give inputs and outputs the IR names our writer recorded (when the file still matches them)."""
    pairs = [(ir, layer) for key in (fmt.META_INPUTS, fmt.META_OUTPUTS)
             for ir, layer in (p for p in ours.get(key, []) if isinstance(p, list) and len(p) == 2)]
    renames = {layer: ir for ir, layer in pairs if isinstance(ir, str) and isinstance(layer, str) and ir != layer}
    tensors = {s.name for s in graph.inputs} | {t for n in graph.nodes for t in n.outputs}
    if not renames or not set(renames) <= tensors or set(renames.values()) & (tensors - set(renames)) \
            or len(set(renames.values())) != len(renames):
        return graph

    def rn(t: str) -> str:
        return renames.get(t, t)

    graph.inputs = [TensorSpec(rn(s.name), s.dtype, s.shape) for s in graph.inputs]
    graph.outputs = [TensorSpec(rn(s.name), s.dtype, s.shape) for s in graph.outputs]
    for n in graph.nodes:
        n.inputs = [rn(t) for t in n.inputs]
        n.outputs = [rn(t) for t in n.outputs]
    return graph
