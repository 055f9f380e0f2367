"""Read a live Keras 3 model by walking its symbolic operation graph.

A Sequential or Functional model already holds that graph (its inputs and
outputs are KerasTensors whose ``_keras_history`` leads back through every
layer and keras.ops call). A subclassed model is traced: its ``call`` is run
on ``keras.Input`` tensors, so the layers and keras.ops it uses record their
calls. Keras is imported here only, when a live model is handed over.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from savedmodel.importers.keras.graph import build_graph
from savedmodel.importers.keras.records import Call, LayerRecord, ModelRecord, Ref, map_leaves, plain
from savedmodel.ir import Graph


def import_keras_model(model: Any) -> tuple[Graph, dict[str, str]]:
    """The Graph of a live, built Keras 3 model, and a description of its source.

    Sequential, Functional and subclassed models (whose ``call`` uses Keras
    layers and keras.ops) are supported; nested models are flattened.

    >>> graph, source = import_keras_model(model)     # doctest: +SKIP
    >>> source
    {'framework': 'keras', 'version': '3.15.1', 'class': 'Sequential'}   # doctest: +SKIP
    """
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    record = model_record(model)
    record.keras_version = keras.__version__
    graph = build_graph(record)
    graph.validate()
    return graph, {"framework": "keras", "version": keras.__version__, "class": type(model).__name__}


def model_record(model: Any, input_specs: list[Any] | None = None) -> ModelRecord:
    """The record of a live model; ``input_specs`` (KerasTensors) shape a traced subclassed model."""
    import keras
    from keras.src.models.functional import Functional

    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(f"Sequential model {model.name!r} is not built: give it a keras.Input first "
                             "or call it on data before exporting")
        inputs, outputs = functional.inputs, functional.outputs
    elif isinstance(model, Functional):
        inputs, outputs = model.inputs, model.outputs
    else:
        inputs, outputs = _trace(model, input_specs)
    return _walk(model.name, type(model).__name__, keras.tree.flatten(inputs), keras.tree.flatten(outputs))


def _trace(model: Any, input_specs: list[Any] | None) -> tuple[list[Any], Any]:
    """Run a subclassed model's call() on keras.Input tensors."""
    import keras

    params = [p for p in inspect.signature(model.call).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    first = params[0].name if params else "inputs"
    if input_specs is not None:
        shapes: Any = [tuple(t.shape) for t in input_specs]
        dtypes: Any = [t.dtype for t in input_specs]
        shapes, dtypes = (shapes[0], dtypes[0]) if len(shapes) == 1 else (shapes, dtypes)
    else:
        shapes, dtypes = _built_shapes(model), None

    def make(shape: Any, name: str, dtype: Any = None) -> Any:
        return keras.Input(batch_shape=(None, *tuple(shape)[1:]), dtype=dtype or "float32", name=name)

    if isinstance(shapes, dict):
        inputs: Any = {k: make(s, k) for k, s in shapes.items()}
    elif _is_shape(shapes):
        inputs = make(shapes, first, dtypes if isinstance(dtypes, str) else None)
    else:
        inputs = [make(s, f"{first}_{i}", dtypes[i] if dtypes else None) for i, s in enumerate(shapes)]
    kwargs = {"training": False} if "training" in inspect.signature(model.call).parameters else {}
    outputs = model.call(inputs, **kwargs)
    return keras.tree.flatten(inputs), outputs


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(d is None or isinstance(d, int) for d in value)


def _built_shapes(model: Any) -> Any:
    shapes = getattr(model, "_build_shapes_dict", None)
    if not model.built or not shapes:
        raise ValueError(f"model {model.name!r} ({type(model).__name__}) is not built: call it on a batch "
                         "of data before exporting, so its input shape is known")
    if len(shapes) != 1:
        raise ValueError(f"model {model.name!r} ({type(model).__name__}) was built with several call "
                         f"arguments {sorted(shapes)}; pass one tensor, a list or a dict of tensors")
    return next(iter(shapes.values()))


def _walk(name: str, class_name: str, inputs: list[Any], outputs: list[Any]) -> ModelRecord:
    """The record of the operation graph between ``inputs`` and ``outputs`` (KerasTensors)."""
    import keras

    # (id(operation), node index) of every call the outputs depend on, inputs first.
    calls: dict[tuple[int, int], tuple[Any, Any]] = {}
    stack = [(t, False) for t in reversed(outputs)]
    while stack:
        tensor, expanded = stack.pop()
        op, index, _ = tensor._keras_history
        if (id(op), index) in calls:
            continue
        node = op._inbound_nodes[index]
        if expanded:
            calls[(id(op), index)] = (op, node)
            continue
        stack.append((tensor, True))
        stack.extend((t, False) for t in reversed(node.input_tensors))
    ops: dict[int, Any] = {}
    indices: dict[int, list[int]] = {}
    for op_id, index in calls:
        ops[op_id] = calls[(op_id, index)][0]
        indices.setdefault(op_id, []).append(index)
    local = {(op_id, index): i for op_id, idx in indices.items() for i, index in enumerate(sorted(idx))}
    names: dict[str, int] = {}
    for op in ops.values():
        if names.setdefault(op.name, id(op)) != id(op):
            raise ValueError(f"two layers of model {name!r} are named {op.name!r}; give them unique names")

    def ref(tensor: Any) -> Ref:
        op, index, t = tensor._keras_history
        return Ref(op.name, local[(id(op), index)], t)

    def argument(value: Any) -> Any:
        if isinstance(value, keras.KerasTensor):
            return ref(value)
        if hasattr(value, "numpy") or isinstance(value, np.ndarray):
            return np.asarray(value)
        return plain(value)

    layers = []
    for op_id, op in ops.items():
        nodes = [calls[(op_id, i)][1] for i in sorted(indices[op_id])]
        record = LayerRecord(op.name, type(op).__name__, _config(op), is_op=not isinstance(op, keras.layers.Layer))
        for node in nodes:
            args = map_leaves(list(node.arguments.args), argument)
            kwargs = map_leaves(dict(node.arguments.kwargs), argument)
            record.calls.append(Call(args, kwargs))
        if isinstance(op, keras.Model):
            record.model = model_record(op, [t for t in nodes[0].input_tensors])
        elif not record.is_op:
            record.weights = _weights(op)
        layers.append(record)
    return ModelRecord(name, class_name, layers, [ref(t) for t in inputs], [ref(t) for t in outputs])


def _config(op: Any) -> dict[str, Any]:
    if type(op).__name__ == "InputLayer":
        return {"batch_shape": list(op.batch_shape), "dtype": op.dtype, "name": op.name}
    try:
        return plain(op.get_config())
    except NotImplementedError:
        return {"name": op.name}


def _weights(layer: Any) -> list[tuple[str | None, np.ndarray]]:
    """The layer's own variables in Keras' save order, by name; for a layer that only wraps sublayers (an RNN
    and its cell, Bidirectional, TimeDistributed, MultiHeadAttention), the sublayers' variables in Keras' order."""
    own = list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", []))
    if not own:
        own = list(layer.weights)
    if getattr(layer, "lora_enabled", False) and hasattr(layer, "kernel"):
        # The kernel property merges the LoRA factors, as Keras does when saving.
        merged = np.asarray(layer.kernel)
        return [("kernel", merged)] + [(v.name, np.asarray(v)) for v in own
                                       if v.name not in ("kernel", "lora_kernel_a", "lora_kernel_b")]
    return [(v.name, np.asarray(v)) for v in own]
