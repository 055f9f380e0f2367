"""Parse a serialized Keras model config (Keras 3 or Keras 2 JSON) into a ModelRecord.

The weights are attached afterwards by the file reader (``files.py``).
"""

from __future__ import annotations

from typing import Any

from savedmodel.errors import UnsupportedError
from savedmodel.importers.keras import formats as F
from savedmodel.importers.keras.records import Call, LayerRecord, ModelRecord, Ref, plain


def parse_model(data: dict[str, Any], version: str = "") -> ModelRecord:
    """The record of a serialized Sequential or Functional model (``{"class_name", "config"}``)."""
    class_name = data.get(F.KEY_CLASS, "")
    config = data.get(F.KEY_CONFIG)
    if class_name == "Sequential" or isinstance(config, list):
        return _sequential(data, version)
    if isinstance(config, dict) and F.KEY_LAYERS in config and F.KEY_INPUT_LAYERS in config:
        return _functional(data, version)
    raise UnsupportedError(
        f"Model class {class_name!r} was saved without its layer graph (a subclassed model). Import the "
        "live model with import_keras_model, or rebuild it as a Functional or Sequential model.",
        what=str((config or {}).get(F.KEY_NAME, class_name)) if isinstance(config, dict) else class_name,
        kind=class_name, supported=["Sequential", "Functional"],
    )


def _functional(data: dict[str, Any], version: str) -> ModelRecord:
    config = data[F.KEY_CONFIG]
    layers = [_layer(entry, version) for entry in config[F.KEY_LAYERS]]
    return ModelRecord(config.get(F.KEY_NAME, ""), data.get(F.KEY_CLASS, "Functional"), layers,
                       _refs(config[F.KEY_INPUT_LAYERS]), _refs(config[F.KEY_OUTPUT_LAYERS]), version)


def _sequential(data: dict[str, Any], version: str) -> ModelRecord:
    config = data[F.KEY_CONFIG]
    entries = config if isinstance(config, list) else config[F.KEY_LAYERS]
    name = "sequential" if isinstance(config, list) else config.get(F.KEY_NAME, "sequential")
    layers = [_layer(entry, version) for entry in entries]
    if not layers:
        raise UnsupportedError(f"Sequential model {name!r} has no layers", what=name, kind="Sequential")
    if layers[0].class_name != "InputLayer":
        # Keras 2 kept the input shape on the first layer; its input was named "<layer>_input".
        first = layers[0].config
        shape = (first.get("batch_input_shape") or first.get("batch_shape")
                 or (config.get(F.KEY_BUILD_INPUT_SHAPE) if isinstance(config, dict) else None))
        if shape is None:
            raise UnsupportedError(f"Sequential model {name!r} was saved unbuilt (no input shape); build it "
                                   "or give it a keras.Input before saving", what=name, kind="Sequential",
                                   supported=["a built Sequential model"])
        dtype = first.get("dtype")
        if isinstance(dtype, dict):
            dtype = dtype.get(F.KEY_CONFIG, {}).get(F.KEY_NAME)
        layers.insert(0, LayerRecord(f"{layers[0].name}_input", "InputLayer",
                                     {"batch_shape": list(shape), "dtype": dtype or "float32"}))
    previous = layers[0].name
    for record in layers[1:]:
        record.calls = [Call([Ref(previous)])]
        previous = record.name
    return ModelRecord(name, "Sequential", layers, [Ref(layers[0].name)], [Ref(previous)], version)


def _layer(entry: dict[str, Any], version: str) -> LayerRecord:
    class_name = entry[F.KEY_CLASS]
    raw = entry.get(F.KEY_CONFIG) or {}
    config = plain(raw) if isinstance(raw, dict) else {}
    name = entry.get(F.KEY_NAME) or config.get(F.KEY_NAME) or class_name
    module = entry.get(F.KEY_MODULE)
    if module is not None:
        is_op = str(module).startswith(F.OPS_MODULES)
    else:  # legacy h5 omits the module: every layer's config has 'trainable', an operation's does not
        is_op = class_name != "InputLayer" and "trainable" not in config
    record = LayerRecord(name, class_name, config, is_op=is_op)
    record.calls = [_call(node) for node in entry.get(F.KEY_INBOUND_NODES) or []]
    if not is_op and isinstance(raw, dict) and isinstance(raw.get(F.KEY_LAYERS), list):
        record.model = parse_model(entry, version)
    return record


def _call(node: Any) -> Call:
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        return Call(plain(node.get(F.KEY_ARGS, [])), plain(node.get(F.KEY_KWARGS) or {}))
    # Keras 2: [[layer, node_index, tensor_index, kwargs], ...], one entry per input tensor
    refs = [Ref(item[0], int(item[1]), int(item[2])) for item in node]
    kwargs = plain(node[0][3]) if node and len(node[0]) > 3 and isinstance(node[0][3], dict) else {}
    return Call([refs[0]] if len(refs) == 1 else [refs], kwargs)


def _refs(value: Any) -> list[Ref]:
    """input_layers / output_layers: one [layer, node, tensor] or a (nested) list or dict of them."""
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [Ref(value[0], int(value[1]), int(value[2]))]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    raise ValueError(f"not a layer reference: {value!r}")
