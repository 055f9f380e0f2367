"""The IR being built (:class:`Emitter`) and the per-node view a converter gets (:class:`NodeContext`)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from onnx import NodeProto, helper, numpy_helper

from savedmodel.dtypes import as_dtype
from savedmodel.errors import GraphError, UnsupportedError
from savedmodel.importers.onnx.groups import show_dims, sym_dim
from savedmodel.importers.onnx.layout import identity, inverse, permute_shape, transpose_between
from savedmodel.importers.onnx.values import Batch, Dyn, Fill, Flat, SymShape, Value
from savedmodel.ir import Node, TensorSpec
from savedmodel.ops import OPS, infer_node


class Emitter:
    """Collects IR nodes, weights and tensor specs, and the value of every ONNX tensor name."""

    def __init__(self, inputs: list[TensorSpec], readers: dict[str, int] | None = None) -> None:
        self.inputs = inputs
        self.readers = readers or {}  # ONNX tensor name -> how many nodes and graph outputs read it
        self.nodes: list[Node] = []
        self.weights: dict[str, np.ndarray] = {}
        self.specs: dict[str, TensorSpec] = {s.name: s for s in inputs}
        self.values: dict[str, Value] = {s.name: Dyn(s.name, identity(len(s.shape))) for s in inputs}
        self._names: set[str] = set(self.specs)
        self._layouts: dict[tuple[str, tuple[int, ...]], str] = {}

    def producer(self, ir: str) -> Node | None:
        """The IR node writing tensor ``ir`` (None for graph inputs)."""
        return next((n for n in reversed(self.nodes) if ir in n.outputs), None)

    def unique(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_./:-]", "_", base.strip("/")) or "node"
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def emit(self, base: str, op: str, inputs: list[str], attrs: dict[str, Any] | None = None,
             weights: dict[str, np.ndarray] | None = None) -> str | tuple[str, ...]:
        """Add a node of catalogue op ``op``; return its output tensor name(s)."""
        if op not in OPS:
            raise UnsupportedError(f"needs the IR op {op!r}, which this build of the catalogue does not have.",
                                   what=base, kind=op)
        name = self.unique(base)
        count = OPS[op].output_count(attrs or {})
        outputs = [name] if count == 1 else [self.unique(f"{name}:{i}") for i in range(count)]
        keys = {}
        for role, array in (weights or {}).items():
            keys[role] = f"{name}/{role}"
            self.weights[keys[role]] = np.asarray(array)
        node = Node(name, op, list(inputs), outputs, dict(attrs or {}), keys)
        try:
            out_specs = infer_node(node, [self.specs[t] for t in inputs], self.weights)
        except GraphError as e:
            raise UnsupportedError(f"cannot express it as IR op {op}: {e}", what=base, kind=op) from e
        self.nodes.append(node)
        self.specs.update({s.name: s for s in out_specs})
        return outputs[0] if count == 1 else tuple(outputs)

    def onnx_shape(self, dyn: Dyn) -> tuple[int | None, ...]:
        """The ONNX-order shape of a run-time tensor (None for a dim holding the batch)."""
        if dyn.flat is not None:
            return self.specs[dyn.ir].shape
        if dyn.groups is not None:
            dims = [sym_dim(self.specs[dyn.ir].shape, g) for g in dyn.groups]
            return tuple(None if isinstance(d, Batch) else d for d in dims)
        return permute_shape(self.specs[dyn.ir].shape, inverse(dyn.perm))

    def as_layout(self, dyn: Dyn, perm: tuple[int, ...], base: str) -> str:
        """The IR tensor holding ``dyn`` transposed by ``perm`` (emitting one Permute/Transpose at most)."""
        if dyn.flat is not None:
            dyn = self._unflatten(dyn.flat, base)
        if dyn.groups is not None:
            dyn = self._ungroup(dyn.ir, dyn.groups, base)
        if dyn.perm == perm:
            return dyn.ir
        key = (dyn.ir, perm)
        if key not in self._layouts:
            step = transpose_between(dyn.perm, perm)
            if step[0] == 0:
                out = self.emit(f"{base}/permute", "Permute", [dyn.ir], {"dims": list(step[1:])})
            else:
                out = self.emit(f"{base}/transpose", "Transpose", [dyn.ir], {"perm": list(step)})
            self._layouts[key] = out  # type: ignore[assignment]
        return self._layouts[key]

    def _unflatten(self, flat: Flat, base: str) -> Dyn:
        """A lazily flattened tensor, materialised in ONNX's element order."""
        source = self.as_layout(flat.source, identity(len(flat.source.perm)), base)
        return Dyn(self.emit(f"{base}/flatten", "Flatten", [source]), (0, 1))  # type: ignore[arg-type]

    def _ungroup(self, ir: str, groups: tuple[tuple[int, ...], ...], base: str) -> Dyn:
        """A grouped tensor in ONNX's own layout: IR axes in ONNX order, then merged by a Reshape."""
        shape = self.specs[ir].shape
        first = groups[0] if groups else ()
        if not first or first[0] != 0 or any(shape[a] != 1 for a in first[1:]):
            raise UnsupportedError(
                f"tensor {ir!r} merges the batch axis with other axes (ONNX dims "
                f"{show_dims([sym_dim(shape, g) for g in groups])}), which only matrix products, softmax, "
                "layer norm, reshapes and transposes can consume", what=base)
        order = tuple(a for g in groups for a in g)
        x = self.as_layout(Dyn(ir, identity(len(shape))), order, base)
        target = [int(sym_dim(shape, g)) for g in groups[1:]]  # type: ignore[arg-type]
        out = self.emit(f"{base}/merge", "Reshape", [x], {"target_shape": target})
        return Dyn(out, identity(len(groups)))  # type: ignore[arg-type]

    def constant(self, value: np.ndarray, base: str) -> str:
        """An IR Constant node holding ``value``."""
        value = np.asarray(value)
        attrs = {"dtype": as_dtype(value.dtype), "shape": list(value.shape)}
        return self.emit(f"{base}/const", "Constant", [], attrs, {"value": value})  # type: ignore[return-value]

    def materialize(self, value: Value, perm: tuple[int, ...] | None, base: str, what: str) -> str:
        """The IR tensor of any value, in layout ``perm`` (identity when None)."""
        if isinstance(value, np.ndarray):
            return self.constant(value if perm is None else value.transpose(perm), base)
        if isinstance(value, Dyn):
            return self.as_layout(value, perm or identity(len(self.onnx_shape(value))), base)
        if isinstance(value, (SymShape, Fill)):
            raise UnsupportedError(
                f"input {what!r} depends on the batch size as a value (a shape computation that cannot be "
                "folded at import); re-export with a fixed batch size or without size-dependent arithmetic.",
                what=base)
        raise UnsupportedError(f"input {what!r} is not available", what=base)


class NodeContext:
    """One ONNX node as its converter sees it; see registry.py for the API."""

    def __init__(self, emitter: Emitter, node: NodeProto, name: str, opset: int) -> None:
        self.emitter = emitter
        self.node = node
        self.name = name
        self.op_type = node.op_type
        self.domain = node.domain
        self.opset = opset
        self.attrs: dict[str, Any] = {a.name: _attr_value(a) for a in node.attribute}

    # -- attributes and inputs -------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    @property
    def n_inputs(self) -> int:
        return len(self.node.input)

    def has_input(self, i: int) -> bool:
        return i < len(self.node.input) and self.node.input[i] != ""

    def value(self, i: int) -> Value:
        return self.emitter.values[self.node.input[i]]

    def const(self, i: int) -> np.ndarray | None:
        """Input i's value when it is a constant at import, else None (absent inputs give None too)."""
        if not self.has_input(i):
            return None
        v = self.value(i)
        return v if isinstance(v, np.ndarray) else None

    def require_const(self, i: int, what: str) -> np.ndarray:
        """Input i as a constant, or UnsupportedError naming it."""
        v = self.const(i)
        if v is None:
            raise self.unsupported(f"its {what} (input {i}, {self.node.input[i]!r}) must be a constant at import, "
                                   "it is computed at run time")
        return v

    def shape(self, i: int) -> tuple[int | None, ...]:
        v = self.value(i)
        if isinstance(v, np.ndarray):
            return v.shape
        if isinstance(v, Dyn):
            return self.emitter.onnx_shape(v)
        if isinstance(v, Fill):
            return tuple(None if isinstance(d, Batch) else d for d in v.shape)
        raise self.unsupported(f"input {self.node.input[i]!r} has no known shape")

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def dtype(self, i: int) -> str:
        v = self.value(i)
        if isinstance(v, np.ndarray):
            return as_dtype(v.dtype)
        if isinstance(v, Dyn):
            return self.emitter.specs[v.ir].dtype
        return "int64"

    def is_dynamic(self, i: int) -> bool:
        return self.has_input(i) and isinstance(self.value(i), Dyn)

    def layout(self, i: int) -> tuple[int, ...]:
        """The permutation input i is stored in (identity for constants and flattened tensors)."""
        v = self.value(i)
        if isinstance(v, Dyn) and v.flat is None and v.groups is None:
            return v.perm
        return identity(self.rank(i))

    def dyn(self, i: int) -> Dyn | None:
        """Input i as stored (a run-time tensor not flattened), for converters that handle any layout."""
        v = self.value(i)
        return v if isinstance(v, Dyn) and v.flat is None else None

    def set_dyn(self, i: int, dyn: Dyn) -> None:
        self.set_value(i, dyn)

    def input_any(self, i: int) -> tuple[str, Dyn]:
        """Input i as an IR tensor in whatever layout it is stored (perm or groups), for elementwise
        converters; pass the returned template to :meth:`set_output_like`."""
        dyn = self.dyn(i)
        if dyn is None:
            x = self.input(i)
            return x, Dyn(x, identity(self.rank(i)))
        return dyn.ir, dyn

    def set_output_like(self, i: int, ir: str, like: Dyn) -> None:
        """Bind output i to ``ir``, stored in the same layout as ``like`` (same IR axes)."""
        self.set_value(i, Dyn(ir, like.perm, None, like.groups))

    def input(self, i: int) -> str:
        """Input i as an IR tensor in ONNX's layout."""
        return self.input_as(i, None)

    def input_as(self, i: int, perm: tuple[int, ...] | None) -> str:
        """Input i as an IR tensor transposed by ``perm`` (identity when None)."""
        return self.emitter.materialize(self.value(i), perm, self.name, self.node.input[i])

    # -- building ------------------------------------------------------------------
    def emit(self, op: str, inputs: list[str], attrs: dict[str, Any] | None = None,
             weights: dict[str, np.ndarray] | None = None, suffix: str = "") -> Any:
        """Add an IR node named after this ONNX node; return its output name(s)."""
        return self.emitter.emit(self.name + suffix, op, inputs, attrs, weights)

    def ir_shape(self, ir: str) -> tuple[int | None, ...]:
        return self.emitter.specs[ir].shape

    def set_output(self, i: int, ir: str, perm: tuple[int, ...] | None = None) -> None:
        if i < len(self.node.output) and self.node.output[i]:
            rank = len(self.emitter.specs[ir].shape)
            self.emitter.values[self.node.output[i]] = Dyn(ir, perm or identity(rank))

    def set_value(self, i: int, value: Value) -> None:
        if i < len(self.node.output) and self.node.output[i]:
            self.emitter.values[self.node.output[i]] = value

    def set_const(self, i: int, array: np.ndarray) -> None:
        self.set_value(i, np.asarray(array))

    def output_used(self, i: int) -> bool:
        return i < len(self.node.output) and self.node.output[i] != ""

    def unsupported(self, problem: str) -> UnsupportedError:
        """An UnsupportedError naming this node (raise it)."""
        return UnsupportedError(f"{self.op_type} node {self.name!r}: {problem}.", what=self.name, kind=self.op_type)


def _attr_value(attr: Any) -> Any:
    """An attribute as a plain value: tensors become numpy arrays, bytes become str."""
    value = helper.get_attribute_value(attr)
    if hasattr(value, "raw_data") and hasattr(value, "dims"):
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value

