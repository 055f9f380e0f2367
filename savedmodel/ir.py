"""The graph IR: the one contract between importers, runtime and converters.

A :class:`Graph` has named inputs, named outputs, an ordered list of
:class:`Node` and a dict of weights. Tensors are referred to by name; each
node produces the tensors listed in its ``outputs``. Every attr is explicit:
:meth:`Graph.validate` fills in catalogue defaults so a stored graph never
depends on a library default.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from savedmodel.dtypes import as_dtype
from savedmodel.errors import GraphError

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor's dtype and shape; ``None`` marks an unknown dim.

    >>> TensorSpec("x", "float32", (None, 784))
    TensorSpec(name='x', dtype='float32', shape=(None, 784))
    """

    name: str
    dtype: str
    shape: Shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", as_dtype(self.dtype))
        object.__setattr__(
            self, "shape", tuple(None if d is None or d < 0 else int(d) for d in self.shape)
        )

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(data["name"], data["dtype"], tuple(data["shape"]))


@dataclass
class Node:
    """One op application: ``outputs = op(*inputs, **attrs, **weights)``."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "attrs": dict(self.attrs),
            "weights": dict(self.weights),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        return cls(
            data["name"],
            data["op"],
            list(data["inputs"]),
            list(data["outputs"]),
            dict(data.get("attrs", {})),
            dict(data.get("weights", {})),
        )


@dataclass
class Graph:
    """A dataflow graph of catalogue ops over named tensors.

    ``outputs`` are the specs of the graph's result tensors (their names are
    tensor names produced by nodes or graph inputs).
    """

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    nodes: list[Node]
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    # -- structure -----------------------------------------------------------------
    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def producers(self) -> dict[str, Node]:
        """Map every node-produced tensor name to the node producing it."""
        return {t: n for n in self.nodes for t in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for t in n.inputs:
                out.setdefault(t, []).append(n)
        return out

    def sole_producer(self, node: Node, ops: Collection[str]) -> Node | None:
        """The producer of ``node``'s single input, when it is one of ``ops``, has
        no activation of its own, and nothing else (no node, no graph output)
        reads that tensor: the node a rewrite may fuse ``node`` into."""
        if len(node.inputs) != 1:
            return None
        t = node.inputs[0]
        producer = self.producers().get(t)
        if producer is None or producer.op not in ops or producer.attrs.get("activation", "linear") != "linear":
            return None
        if len(self.consumers().get(t, [])) != 1 or any(o.name == t for o in self.outputs):
            return None
        return producer

    def bypass(self, producer: Node, node: Node) -> None:
        """Let ``producer`` write ``node``'s output tensors and drop ``node``."""
        producer.outputs = list(node.outputs)
        self.nodes = [n for n in self.nodes if n is not node]

    def topological_order(self) -> list[Node]:
        """The nodes in an order where each follows its producers.

        Raises GraphError on dangling tensors and cycles.
        """
        available = {spec.name for spec in self.inputs}
        producers = self.producers()
        for n in self.nodes:
            for t in n.inputs:
                if t not in available and t not in producers:
                    raise GraphError(f"input tensor {t!r} is produced by no node and is no graph input", node=n.name)
        order: list[Node] = []
        pending = list(self.nodes)
        while pending:
            ready = [n for n in pending if all(t in available for t in n.inputs)]
            if not ready:
                names = ", ".join(repr(n.name) for n in pending)
                raise GraphError(f"the graph has a cycle through nodes {names}", node=pending[0].name)
            for n in ready:
                order.append(n)
                available.update(n.outputs)
            ready_ids = {id(n) for n in ready}
            pending = [n for n in pending if id(n) not in ready_ids]
        return order

    def validate(self) -> dict[str, TensorSpec]:
        """Check the graph and fill in default attrs; return every tensor's spec.

        Raises GraphError naming the node on an unknown op, an unknown or
        missing attr, a duplicate node or tensor name, a dangling tensor, a
        cycle, a missing weight or a weight of the wrong shape.
        """
        from savedmodel.ops import infer_node

        seen_nodes: set[str] = set()
        specs: dict[str, TensorSpec] = {}
        for spec in self.inputs:
            if spec.name in specs:
                raise GraphError(f"duplicate graph input {spec.name!r}")
            specs[spec.name] = spec
        produced: set[str] = set(specs)
        for n in self.nodes:
            if n.name in seen_nodes:
                raise GraphError("duplicate node name", node=n.name)
            seen_nodes.add(n.name)
            for t in n.outputs:
                if t in produced:
                    raise GraphError(f"tensor {t!r} is produced twice", node=n.name)
                produced.add(t)
        for n in self.topological_order():
            out_specs = infer_node(n, [specs[t] for t in n.inputs], self.weights)
            specs.update({s.name: s for s in out_specs})
        for i, spec in enumerate(self.outputs):
            if spec.name not in specs:
                raise GraphError(f"graph output {spec.name!r} is produced by no node")
            self.outputs[i] = TensorSpec(spec.name, specs[spec.name].dtype, _merge(spec.shape, specs[spec.name].shape))
        return specs

    # -- serialisation -------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The graph without weight values (those are stored as datasets)."""
        return {
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "nodes": [n.to_json() for n in self.nodes],
            "weights": {
                k: {"dtype": as_dtype(np.asarray(v).dtype), "shape": list(np.shape(v))} for k, v in self.weights.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], weights: dict[str, np.ndarray]) -> Graph:
        return cls(
            [TensorSpec.from_json(s) for s in data["inputs"]],
            [TensorSpec.from_json(s) for s in data["outputs"]],
            [Node.from_json(n) for n in data["nodes"]],
            weights,
        )

    def ops(self) -> list[str]:
        return sorted({n.op for n in self.nodes})

    def parameter_count(self) -> int:
        return int(sum(np.asarray(w).size for w in self.weights.values()))


def _merge(declared: Iterable[int | None], inferred: Iterable[int | None]) -> Shape:
    """Prefer a known dim; the two must agree where both are known."""
    declared, inferred = tuple(declared), tuple(inferred)
    if len(declared) != len(inferred):
        return inferred
    return tuple(d if d is not None else i for d, i in zip(declared, inferred))
