"""IR graph -> TF.js graph model: a GraphDef in proto3 JSON whose Consts live in the weights manifest.

The fallback for graphs no TF.js layer expresses. Each IR weight becomes one
``Const`` node named after the weight key, so the file holds the weights
unchanged (quantizable like a layers model's); the values a lowering derives
(shapes, scalars) are int32 or float32 Consts of their own. Attr strings are
base64, as TF.js decodes them, and ``versions`` is present (TF.js needs it).

>>> model = graph_model(graph, specs)       # doctest: +SKIP
>>> model.topology["node"][0]["op"]         # doctest: +SKIP
'Placeholder'
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from converters.web import format as fmt
from converters.web.names import sanitize
from savedmodel.errors import UnsupportedError
from savedmodel.ir import Graph, Node, TensorSpec

DT = {"float32": "DT_FLOAT", "int32": "DT_INT32", "bool": "DT_BOOL"}


# -- attr encoding (proto3 JSON of AttrValue) ----------------------------------------------
def a_type(dtype: str) -> dict[str, Any]:
    return {"type": DT[dtype]}


def a_int(value: int) -> dict[str, Any]:
    return {"i": str(int(value))}


def a_float(value: float) -> dict[str, Any]:
    return {"f": float(value)}


def a_bool(value: bool) -> dict[str, Any]:
    return {"b": bool(value)}


def a_str(value: str) -> dict[str, Any]:
    return {"s": base64.b64encode(value.encode()).decode()}


def a_ints(values: Sequence[int]) -> dict[str, Any]:
    return {"list": {"i": [str(int(v)) for v in values]}}


def a_strs(values: Sequence[str]) -> dict[str, Any]:
    return {"list": {"s": [base64.b64encode(v.encode()).decode() for v in values]}}


def a_shape(shape: Sequence[int | None]) -> dict[str, Any]:
    return {"shape": {"dim": [{"size": str(-1 if d is None else int(d))} for d in shape]}}


@dataclass
class GraphModel:
    """The parts of a graph model.json, before weights are packed."""

    topology: dict[str, Any]
    weights: list[tuple[str, np.ndarray]]
    quantizable: set[str]  # the Consts holding IR weights (derived constants are never quantized)
    signature: dict[str, Any]
    inputs: list[tuple[str, str]]  # (IR input name, Placeholder name)
    outputs: list[tuple[str, str]]  # (IR output name, node name)
    weight_nodes: dict[str, str]  # IR weight key -> Const node name


class GraphEmitter:
    """What a lowering in ``graph_map`` writes into: nodes, Consts and unique names."""

    def __init__(self, graph: Graph, specs: dict[str, TensorSpec]) -> None:
        self.graph = graph
        self.specs = specs
        self.nodes: list[dict[str, Any]] = []
        self.consts: list[tuple[str, np.ndarray]] = []
        self._names: set[str] = set()
        self._scalars: dict[tuple[str, float], str] = {}
        self.weight_nodes: dict[str, str] = {}

    def name(self, wanted: str) -> str:
        base = "/".join(sanitize(part) for part in wanted.split("/"))
        name, i = base, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        self._names.add(name)
        return name

    def spec(self, tensor: str) -> TensorSpec:
        return self.specs[tensor]

    def op(self, op: str, inputs: Sequence[str], base: str, **attrs: dict[str, Any]) -> str:
        """Add a node; returns its name (its first output)."""
        name = self.name(base)
        node: dict[str, Any] = {fmt.KEY_NAME: name, fmt.KEY_OP: op}
        if inputs:
            node[fmt.KEY_INPUT] = list(inputs)
        if attrs:
            node[fmt.KEY_ATTR] = attrs
        self.nodes.append(node)
        return name

    def const(self, value: Any, base: str, dtype: str = "float32") -> str:
        """A Const node holding ``value`` (its bytes go to the manifest)."""
        array = np.asarray(value, dtype=np.float32 if dtype == "float32" else np.int32)
        name = self.name(base)
        self.nodes.append({fmt.KEY_NAME: name, fmt.KEY_OP: fmt.OP_CONST, fmt.KEY_ATTR: {
            "value": {"tensor": {"dtype": DT[dtype], "tensorShape": a_shape(array.shape)["shape"]}},
            "dtype": a_type(dtype)}})
        self.consts.append((name, array))
        return name

    def scalar(self, value: float, dtype: str = "float32") -> str:
        """A shared scalar Const."""
        key = (dtype, float(value))
        if key not in self._scalars:
            self._scalars[key] = self.const(value, f"const/{dtype}_{len(self._scalars)}", dtype)
        return self._scalars[key]

    def ints(self, values: Sequence[int], base: str) -> str:
        return self.const(np.asarray(values, np.int32), base, "int32")

    def weight(self, node: Node, role: str) -> str:
        """The Const node of one of the node's IR weights (created once per weight key)."""
        key = node.weights[role]
        if key not in self.weight_nodes:
            self.weight_nodes[key] = self.const(np.asarray(self.graph.weights[key], np.float32), key)
        return self.weight_nodes[key]


def graph_model(graph: Graph, specs: dict[str, TensorSpec]) -> GraphModel:
    """Lower every node of the validated ``graph``; UnsupportedError names a node with no lowering."""
    from converters.web.graph_map import GRAPH_MAPPINGS

    em = GraphEmitter(graph, specs)
    refs: dict[str, str] = {}
    inputs = []
    for spec in graph.inputs:
        dtype = "int32" if spec.dtype.startswith(("int", "uint")) else "float32"
        name = em.op(fmt.OP_PLACEHOLDER, [], spec.name, dtype=a_type(dtype), shape=a_shape(spec.shape))
        refs[spec.name] = name
        inputs.append((spec.name, name))
    for node in graph.topological_order():
        fn = GRAPH_MAPPINGS.get(node.op)
        if fn is None:
            raise UnsupportedError(f"node {node.name!r}: op {node.op} has no TF.js graph lowering.",
                                   what=node.name, kind=node.op, supported=sorted(GRAPH_MAPPINGS))
        out = fn(em, node, [refs[t] for t in node.inputs])
        for t in node.outputs:
            refs[t] = out
    for node in graph.nodes:  # weights a lowering did not need still travel, so the IR graph reads back whole
        for role in node.weights:
            em.weight(node, role)
    outputs = []
    for spec in graph.outputs:
        # A final Identity named after the IR output, so that TF.js reports a meaningful output name.
        name = em.op("Identity", [refs[spec.name]], spec.name, T=a_type("float32"))
        outputs.append((spec.name, name))
    signature = {
        "inputs": {f"{n}:0": _tensor_info(n, specs[ir]) for ir, n in inputs},
        "outputs": {f"{n}:0": _tensor_info(n, specs[ir]) for ir, n in outputs},
    }
    topology = {fmt.KEY_NODE: em.nodes, "library": {}, fmt.KEY_VERSIONS: {"producer": 1982}}
    return GraphModel(topology, em.consts, set(em.weight_nodes.values()), signature, inputs, outputs,
                      dict(em.weight_nodes))


def _tensor_info(node: str, spec: TensorSpec) -> dict[str, Any]:
    dtype = "int32" if spec.dtype.startswith(("int", "uint")) else "float32"
    return {"name": f"{node}:0", "dtype": DT[dtype], "tensorShape": a_shape(spec.shape)["shape"]}
