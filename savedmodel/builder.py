"""A small builder API for graphs whose weights come from anywhere (numpy, ...).

>>> import numpy as np
>>> b = GraphBuilder()
>>> x = b.input("x", (None, 4))
>>> h = b.op("Dense", x, units=8, activation="relu", kernel=np.ones((4, 8), "f4"), bias=np.zeros(8, "f4"))
>>> y = b.op("Dense", h, units=2, activation="softmax", kernel=np.ones((8, 2), "f4"), name="probs")
>>> graph = b.build(y)
>>> [s.name for s in graph.outputs]
['probs']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from savedmodel.errors import GraphError
from savedmodel.ir import Graph, Node, TensorSpec
from savedmodel.ops import get_op


class GraphBuilder:
    """Collects inputs and nodes; ``build`` validates and returns a Graph."""

    def __init__(self) -> None:
        self._inputs: list[TensorSpec] = []
        self._nodes: list[Node] = []
        self._weights: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}

    def input(self, name: str, shape: Sequence[int | None], dtype: str = "float32") -> str:
        """Declare a graph input; returns its tensor name."""
        self._inputs.append(TensorSpec(name, dtype, tuple(shape)))
        return name

    def op(self, op: str, *inputs: str, name: str | None = None, **kwargs: Any) -> str | tuple[str, ...]:
        """Add a node of catalogue op ``op``; returns its output tensor name(s).

        Keyword arguments naming one of the op's weight roles are weights
        (arrays); the others are attrs.
        """
        spec = get_op(op, name)
        if name is None:
            count = self._counts.get(op, 0)
            self._counts[op] = count + 1
            name = f"{op.lower()}_{count}" if count else op.lower()
        roles = set(spec.weights) | set(spec.optional_weights)
        weights, attrs = {}, {}
        for key, value in kwargs.items():
            if key in roles:
                if value is None:
                    continue
                weights[key] = f"{name}/{key}"
                self._weights[f"{name}/{key}"] = np.asarray(value)
            else:
                attrs[key] = value.tolist() if isinstance(value, np.ndarray) else _plain(value)
        count = spec.output_count(attrs)
        outputs = [name] if count == 1 else [f"{name}:{i}" for i in range(count)]
        self._nodes.append(Node(name, op, list(inputs), outputs, attrs, weights))
        return outputs[0] if count == 1 else tuple(outputs)

    def build(self, *outputs: str) -> Graph:
        """Validate and return the graph whose outputs are the given tensors."""
        if not outputs:
            raise GraphError("build() needs at least one output tensor name")
        graph = Graph(
            list(self._inputs),
            [TensorSpec(t, "float32", ()) for t in outputs],
            list(self._nodes),
            dict(self._weights),
        )
        specs = graph.validate()
        graph.outputs = [specs[t] for t in outputs]
        return graph


def _plain(value: Any) -> Any:
    """Attrs are plain JSON values: tuples become lists, numpy scalars Python ones."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
