"""The one form both Keras sources are read into before a Graph is built.

A live model (``live.py``) and a saved file (``files.py``) each become a
:class:`ModelRecord`: its layers (and keras.ops operations) with their config,
their saved variables in Keras' own order, and every call of them, whose
tensor arguments are :class:`Ref` to an output of another call. ``graph.py``
builds the Graph from a record, so both sources give the same Graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Ref:
    """Output ``tensor`` of call number ``node`` of layer ``layer`` (Keras' ``keras_history``)."""

    layer: str
    node: int = 0
    tensor: int = 0


@dataclass
class Call:
    """One call of a layer: positional and keyword arguments, tensors as :class:`Ref`."""

    args: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def refs(self) -> list[Ref]:
        """The tensor arguments, in call order (args first, then kwargs)."""
        return [r for r in flatten([self.args, list(self.kwargs.values())]) if isinstance(r, Ref)]


@dataclass
class LayerRecord:
    """A Keras layer or keras.ops operation of a model.

    ``weights`` are the layer's own variables in the order Keras saves them,
    each with its variable name where the source records one (None otherwise).
    ``model`` is set for a nested model (a Sequential or Functional used as a
    layer); ``is_op`` for a keras.ops operation (``keras.src.ops.numpy.Add``),
    whose class names overlap the layers'.
    """

    name: str
    class_name: str
    config: dict[str, Any]
    calls: list[Call] = field(default_factory=list)
    weights: list[tuple[str | None, np.ndarray]] = field(default_factory=list)
    is_op: bool = False
    model: ModelRecord | None = None


@dataclass
class ModelRecord:
    """A model: its layers, and which of their tensors are its inputs and outputs."""

    name: str
    class_name: str
    layers: list[LayerRecord]
    inputs: list[Ref]
    outputs: list[Ref]
    keras_version: str = ""

    def layer(self, name: str) -> LayerRecord:
        for record in self.layers:
            if record.name == name:
                return record
        raise KeyError(name)


def flatten(value: Any) -> list[Any]:
    """The leaves of nested lists, tuples and dicts (dict values in key order)."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in flatten(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in flatten(item)]
    return [value]


def map_leaves(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``value`` with ``fn`` applied to every leaf of its lists, tuples and dicts."""
    if isinstance(value, (list, tuple)):
        return [map_leaves(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_leaves(v, fn) for k, v in value.items()}
    return fn(value)


# Keys of Keras 3's serialized special objects (serialization_lib).
KERAS_TENSOR = "__keras_tensor__"
NUMPY = "__numpy__"
TENSOR = "__tensor__"  # a concrete tensor argument (a table computed while the model was built)
TUPLE = "__tuple__"


def plain(value: Any) -> Any:
    """A config as plain Python: tuples as lists, numpy scalars as numbers,
    Keras' ``__numpy__``/``__tensor__``/``__tuple__`` objects decoded, keras tensors as :class:`Ref`.

    >>> plain({"a": (1, 2), "b": {"class_name": "__tuple__", "config": {"value": [3]}}})
    {'a': [1, 2], 'b': [3]}
    """
    if isinstance(value, dict):
        kind = value.get("class_name")
        inner = value.get("config")
        if kind == KERAS_TENSOR and isinstance(inner, dict):
            return Ref(*inner["keras_history"][:3])
        if kind in (NUMPY, TENSOR) and isinstance(inner, dict):
            return np.asarray(inner["value"], dtype=inner.get("dtype"))
        if kind == TUPLE and isinstance(inner, dict):
            return plain(inner["value"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
