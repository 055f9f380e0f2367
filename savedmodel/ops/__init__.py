"""The op catalogue: each op's attrs (type and default), weights and shape rule.

An op is declared once, here, with :func:`op`; the runtime registers a kernel
under the same name and the converters a mapping. ``infer_node`` is the one
place that checks a node against its declaration.

>>> OPS["Dense"].attrs["units"].type
'int'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from savedmodel.dtypes import FLOATS
from savedmodel.errors import GraphError
from savedmodel.ir import Node, Shape, TensorSpec

# Activation names accepted by the ``activation`` attr of Activation, Dense and
# the convolutions. Parametrised forms have their own ops (ReLU, ELU, ...).
ACTIVATIONS = (
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "softmax",
    "log_softmax", "gelu", "gelu_approximate", "silu", "hard_silu", "elu",
    "selu", "leaky_relu", "softplus", "softsign", "exponential", "mish",
)

_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "ints": lambda v: isinstance(v, list) and all(_CHECKS["int"](i) for i in v),
    "floats": lambda v: isinstance(v, list) and all(_CHECKS["float"](i) for i in v),
    "int_or_ints": lambda v: _CHECKS["int"](v) or _CHECKS["ints"](v),
    "float_or_floats": lambda v: _CHECKS["float"](v) or _CHECKS["floats"](v),
    "pairs": lambda v: isinstance(v, list) and all(_CHECKS["ints"](p) and len(p) == 2 for p in v),
}


@dataclass(frozen=True)
class Attr:
    """An attr's type (a key of ``_CHECKS``), default, and optional choices."""

    type: str
    default: Any
    choices: tuple[Any, ...] | None = None
    nullable: bool = False

    def check(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if not _CHECKS[self.type](value):
            return False
        return self.choices is None or value in self.choices


ShapeRule = Callable[[list[TensorSpec], dict[str, Any]], list[Shape]]
DtypeRule = Callable[[list[TensorSpec], dict[str, Any]], list[str]]
WeightRule = Callable[[list[TensorSpec], dict[str, Any]], dict[str, Shape]]


@dataclass(frozen=True)
class OpDef:
    """One op of the catalogue."""

    name: str
    attrs: dict[str, Attr]
    shape: ShapeRule
    weights: tuple[str, ...] = ()
    optional_weights: tuple[str, ...] = ()
    weight_shapes: WeightRule | None = None
    inputs: tuple[int, int | None] = (1, 1)
    outputs: int | Callable[[dict[str, Any]], int] = 1
    keeps_dtype: bool = False
    dtypes: DtypeRule | None = None
    doc: str = field(default="", compare=False)

    def output_count(self, attrs: dict[str, Any]) -> int:
        """How many outputs a node with ``attrs`` has (an RNN's return_state adds its states).

        ``attrs`` may leave out attrs that keep their default.
        """
        if not callable(self.outputs):
            return self.outputs
        return self.outputs({k: attrs.get(k, a.default) for k, a in self.attrs.items()})


OPS: dict[str, OpDef] = {}


def op(
    name: str,
    *,
    attrs: dict[str, Attr] | None = None,
    weights: tuple[str, ...] = (),
    optional_weights: tuple[str, ...] = (),
    weight_shapes: WeightRule | None = None,
    inputs: tuple[int, int | None] = (1, 1),
    outputs: int | Callable[[dict[str, Any]], int] = 1,
    keeps_dtype: bool = False,
    dtypes: DtypeRule | None = None,
) -> Callable[[ShapeRule], ShapeRule]:
    """Declare op ``name`` with the decorated function as its shape rule.

    An op computes in float32 and outputs float32 for integer inputs, unless
    it only moves data (``keeps_dtype``: reshapes, padding, max pooling...).
    An op whose output dtypes follow another rule (Cast, ArgMax, Shape...)
    gives ``dtypes``: input specs and attrs -> one dtype per output (the
    runtime then hands it its inputs uncast). An op whose number of outputs
    depends on its attrs gives ``outputs`` as a function of the attrs
    (defaults filled in).
    """

    def register(rule: ShapeRule) -> ShapeRule:
        if name in OPS:
            raise ValueError(f"op {name!r} is declared twice")
        OPS[name] = OpDef(
            name, dict(attrs or {}), rule, weights, optional_weights, weight_shapes,
            inputs, outputs, keeps_dtype, dtypes, (rule.__doc__ or "").strip(),
        )
        return rule

    return register


def get_op(name: str, node: str | None = None) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise GraphError(
            f"unknown op {name!r}; the catalogue has: {', '.join(sorted(OPS))}", node=node
        ) from None


def infer_node(node: Node, inputs: list[TensorSpec], weights: dict[str, np.ndarray]) -> list[TensorSpec]:
    """Check ``node`` against its declaration, fill default attrs in place,
    and return the specs of its outputs."""
    spec = get_op(node.op, node.name)
    lo, hi = spec.inputs
    if len(inputs) < lo or (hi is not None and len(inputs) > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any number'}"
        raise GraphError(f"op {node.op} takes {want} inputs, got {len(inputs)}", node=node.name)
    unknown = set(node.attrs) - set(spec.attrs)
    if unknown:
        raise GraphError(
            f"unknown attrs {sorted(unknown)} for op {node.op}; it takes {sorted(spec.attrs)}", node=node.name
        )
    for key, attr in spec.attrs.items():
        if key not in node.attrs:
            node.attrs[key] = attr.default
        value = node.attrs[key]
        if not attr.check(value):
            want = f"one of {list(attr.choices)}" if attr.choices else attr.type
            raise GraphError(f"attr {key!r} of op {node.op} must be {want}, got {value!r}", node=node.name)
    count = spec.output_count(node.attrs)
    if len(node.outputs) != count:
        raise GraphError(f"op {node.op} has {count} outputs, the node lists {len(node.outputs)}", node=node.name)
    roles = set(node.weights)
    missing = [r for r in spec.weights if r not in roles]
    extra = roles - set(spec.weights) - set(spec.optional_weights)
    if missing or extra:
        raise GraphError(
            f"op {node.op} needs weights {list(spec.weights)} (optional {list(spec.optional_weights)}), "
            f"the node has {sorted(roles)}",
            node=node.name,
        )
    for role, key in node.weights.items():
        if key not in weights:
            raise GraphError(f"weight {key!r} (role {role}) is not in the graph's weights", node=node.name)
    try:
        shapes = spec.shape(inputs, node.attrs)
        expected = spec.weight_shapes(inputs, node.attrs) if spec.weight_shapes else {}
    except (ValueError, IndexError, ZeroDivisionError) as e:
        shown = ", ".join(f"{s.name}{list(s.shape)}" for s in inputs)
        raise GraphError(f"op {node.op} cannot take inputs {shown}: {e}", node=node.name) from e
    for role, key in node.weights.items():
        want = expected.get(role)
        got = tuple(np.shape(weights[key]))
        if want is not None and not _shape_matches(got, want):
            raise GraphError(
                f"weight {key!r} (role {role}) has shape {list(got)}, expected {list(want)}", node=node.name
            )
    if spec.dtypes is not None:
        dtypes = spec.dtypes(inputs, node.attrs)
    else:
        dtype = inputs[0].dtype if inputs else "float32"
        if not spec.keeps_dtype and dtype not in FLOATS:
            dtype = "float32"
        dtypes = [dtype] * len(shapes)
    return [TensorSpec(t, d, s) for t, d, s in zip(node.outputs, dtypes, shapes)]


def _shape_matches(got: tuple[int, ...], want: Shape) -> bool:
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def fused_activation(node: Node) -> str | None:
    """The ``activation`` attr value equivalent to a standalone activation node
    (Activation, a plain ReLU / ReLU6, a last-axis Softmax), else None."""
    a = node.attrs
    if node.op == "Activation":
        return a["activation"]
    if node.op == "ReLU" and a["negative_slope"] == 0 and a["threshold"] == 0:
        if a["max_value"] is None:
            return "relu"
        if a["max_value"] == 6:
            return "relu6"
    if node.op == "Softmax" and a["axis"] in (-1, [-1]):
        return "softmax"
    return None


# The declarations live in these modules; importing them fills OPS.
from savedmodel.ops import nn, numeric, sequence, tensor  # noqa: E402,F401
