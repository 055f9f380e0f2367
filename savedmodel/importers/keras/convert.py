"""The machinery of the conversion tables: what a converter is given and returns.

A converter turns one call of a Keras layer (``layers.py``, ``sequence.py``)
or keras.ops operation (``operations.py``) into catalogue nodes. It sees a
:class:`LayerCall` (config, weights by role, the specs of its input tensors
and of their Keras masks) and returns a list of :class:`Emit`. By default
they form a chain: the first takes the call's tensor inputs, each next one
the previous one's output, and the last one's output is the call's. An emit
may instead name its inputs (a DAG: a Bidirectional layer's two RNNs and
their merge), and a final :class:`Outputs` may name the call's outputs and
their masks. An empty list means the layer does nothing at inference and is
dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from savedmodel.errors import UnsupportedError
from savedmodel.ir import TensorSpec


@dataclass
class Emit:
    """One catalogue node to create.

    ``suffix`` names it when it is not the call's last node. ``inputs``, when
    given, lists its inputs, each a :data:`Source`; otherwise the first node
    takes the call's positional tensors and the others the previous node's
    first output.
    """

    op: str
    attrs: dict[str, Any]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    suffix: str = ""
    inputs: list[Source] | None = None


# Where an emit's input (or a call's output) comes from: an int is the call's positional tensor of that index,
# a str the output of an earlier emit of the same call by its suffix ("suffix" or "suffix:k" for output k), a
# TensorSpec a tensor of the graph (a keyword argument of the call, an input's mask).
Source = int | str | TensorSpec


@dataclass
class Outputs:
    """The last entry of a converter's list when the call's outputs are not just the last node's first
    output: one :data:`Source` per output of the Keras call, and (optionally) one mask per output (None: no
    mask). Without ``masks`` the graph applies the layer's default mask rule (``masks.py``)."""

    tensors: list[Source]
    masks: list[Source | None] | None = None


@dataclass
class LayerCall:
    """One call of a layer or operation, as its converter sees it.

    ``args``/``kwargs`` are the call's arguments with every tensor replaced by
    its TensorSpec; ``inputs`` are the positional tensors' specs in order.
    ``tensor_masks`` maps the name of each tensor argument that carries a
    Keras mask to the spec of its mask tensor.
    """

    name: str
    class_name: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    inputs: list[TensorSpec]
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    keras_version: str = ""
    tensor_masks: dict[str, TensorSpec] = field(default_factory=dict)

    def mask(self, i: int = 0) -> TensorSpec | None:
        """The Keras mask of positional tensor ``i`` (None when it has none)."""
        return self.mask_of(self.inputs[i]) if i < len(self.inputs) else None

    def mask_of(self, tensor: Any) -> TensorSpec | None:
        """The Keras mask of a tensor argument (None for a tensor without one, or a non-tensor)."""
        return self.tensor_masks.get(tensor.name) if isinstance(tensor, TensorSpec) else None

    @property
    def x(self) -> TensorSpec:
        return self.inputs[0]

    def unsupported(self, problem: str, supported: Sequence[str] = ()) -> UnsupportedError:
        """An UnsupportedError naming this layer: ``Layer 'x' (Class) <problem>.``"""
        return UnsupportedError(
            f"Layer {self.name!r} ({self.class_name}) {problem}.",
            what=self.name, kind=self.class_name, supported=list(supported),
        )


Convert = Callable[[LayerCall], list[Emit]]


@dataclass(frozen=True)
class Converter:
    """A table entry: the conversion, and the roles of the layer's saved
    variables in Keras' own order for a given config."""

    convert: Convert
    roles: Callable[[dict[str, Any]], list[str]]


def registrar(table: dict[str, Converter]):
    """A decorator registering a converter in ``table`` under one or more class names."""

    def register(*class_names: str, roles: Callable[[dict[str, Any]], list[str]] | None = None):
        def add(fn: Convert) -> Convert:
            for name in class_names:
                if name in table:
                    raise ValueError(f"{name!r} is registered twice")
                table[name] = Converter(fn, roles or (lambda config: []))
            return fn

        return add

    return register


# -- config helpers --------------------------------------------------------------------

def ints(call: LayerCall, key: str, rank: int, default: Any = None) -> list[int]:
    """Config ``key`` as one int per spatial axis (Keras accepts an int for all)."""
    value = call.config.get(key, default)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return [int(value)] * rank
    if isinstance(value, (list, tuple)) and len(value) == rank and all(isinstance(v, (int, np.integer)) for v in value):
        return [int(v) for v in value]
    raise call.unsupported(f"has {key}={value!r}; expected an int or {rank} ints")


def pair(call: LayerCall, key: str) -> list[int]:
    """A 1D padding/cropping config (``p`` or ``(lo, hi)``) as ``[lo, hi]``."""
    value = call.config.get(key)
    if isinstance(value, int):
        return [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [int(v) for v in value]
    raise call.unsupported(f"has {key}={value!r}; expected an int or a pair of ints")


def pairs(call: LayerCall, key: str) -> list[list[int]]:
    """A 2D padding/cropping config (``p``, ``(h, w)`` or ``((t, b), (l, r))``) as ``[[t, b], [l, r]]``."""
    value = call.config.get(key)
    if isinstance(value, int):
        return [[value, value], [value, value]]
    if isinstance(value, (list, tuple)) and len(value) == 2:
        out = []
        for v in value:
            if isinstance(v, int):
                out.append([v, v])
            elif isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) for i in v):
                out.append([int(i) for i in v])
            else:
                break
        else:
            return out
    raise call.unsupported(f"has {key}={value!r}; expected an int, two ints or two pairs of ints")


def channels_last(call: LayerCall) -> None:
    """Refuse data_format='channels_first' (the IR is channels-last)."""
    fmt = call.config.get("data_format") or "channels_last"
    if fmt != "channels_last":
        raise call.unsupported(
            f"uses data_format={fmt!r}; the IR is channels-last. Rebuild the model with "
            "data_format='channels_last' (the weights are the same)",
            ["data_format='channels_last'"],
        )


def choice(call: LayerCall, key: str, allowed: Sequence[str], default: str | None = None) -> str:
    value = call.config.get(key, default)
    if isinstance(value, str):
        value = value.lower()
    if value not in allowed:
        raise call.unsupported(f"has {key}={value!r}, which the op catalogue cannot express",
                               [f"{key}={a!r}" for a in allowed])
    return value


def float_or_floats(call: LayerCall, key: str, value: Any) -> float | list[float]:
    """A scalar, or a vector along the last axis, as the catalogue's float_or_floats."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    if all(d == 1 for d in arr.shape[:-1]):
        return [float(v) for v in arr.reshape(-1)]
    raise call.unsupported(f"has a {key} of shape {list(arr.shape)}; only a scalar or a vector over the "
                           "last axis can be expressed", ["a scalar", "a vector over the last axis"])
