"""Planning: turn a validated Graph into a flat list of kernel calls, once.

The planner rewrites a copy of the graph (BatchNormalization folded into the
preceding dense or convolution, activations fused into their producer), binds
each node's attrs and float32 weights (a Constant's value in its own dtype)
to its kernel, numbers the tensors into slots and records after which step
each slot can be released. ``Plan.run`` then only calls kernels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.kernels import get_kernel
from runtime.kernels.conv import conv2d_maxpool
from savedmodel.dtypes import to_numpy
from savedmodel.ir import Graph, Node, TensorSpec
from savedmodel.ops import OPS, fused_activation

# Ops whose output channels are the last axis and that take an `activation` attr.
_FUSIBLE = {"Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"}


@dataclass(frozen=True)
class Step:
    name: str
    fn: Callable[..., Any]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    kwargs: dict[str, Any]
    release: tuple[int, ...]


class Plan:
    """An executable schedule of a graph: slots, steps and their lifetimes."""

    def __init__(self, graph: Graph) -> None:
        specs = graph.validate()
        graph = optimize(graph, specs)
        self.specs: dict[str, TensorSpec] = specs
        slots: dict[str, int] = {}

        def slot(name: str) -> int:
            return slots.setdefault(name, len(slots))

        self.input_slots = {s.name: slot(s.name) for s in graph.inputs}
        order = graph.topological_order()
        for n in order:
            for t in n.outputs:
                slot(t)
        self.output_slots = {s.name: slots[s.name] for s in graph.outputs}
        last_use: dict[int, int] = {}
        for i, n in enumerate(order):
            for t in n.inputs:
                last_use[slots[t]] = i
        keep = set(self.output_slots.values())
        steps = []
        for i, n in enumerate(order):
            release = tuple(s for t in set(n.inputs) if (s := slots[t]) not in keep and last_use[s] == i)
            kwargs = dict(n.attrs)
            kwargs.update(_bind_weights(n, graph.weights))
            fn = conv2d_maxpool if n.op == "Conv2D" and "pool" in kwargs else get_kernel(n.op)
            op = OPS[n.op]
            # Ops with a dtypes rule (Cast, Gather, Divide...) take their inputs as they are.
            if not op.keeps_dtype and op.dtypes is None and any(specs[t].dtype != "float32" for t in n.inputs):
                fn = _float32_inputs(fn)
            steps.append(Step(n.name, fn, tuple(slots[t] for t in n.inputs),
                              tuple(slots[t] for t in n.outputs), kwargs, release))
        self.steps = steps
        self.n_slots = len(slots)
        self.nodes = order

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run every step on ``feeds`` (tensor name -> array, already checked)."""
        values: list[Any] = [None] * self.n_slots
        for name, s in self.input_slots.items():
            values[s] = feeds[name]
        for step in self.steps:
            result = step.fn(*[values[s] for s in step.inputs], **step.kwargs)
            if len(step.outputs) == 1:
                values[step.outputs[0]] = result
            else:
                for s, r in zip(step.outputs, result):
                    values[s] = r
            for s in step.release:
                values[s] = None
        return {name: values[s] for name, s in self.output_slots.items()}


def _float32_inputs(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` computing in float32 on integer (or float64) inputs, as Keras layers do."""

    def cast_then_run(*inputs: np.ndarray, **kwargs: Any) -> Any:
        return fn(*(x.astype(np.float32, copy=False) for x in inputs), **kwargs)

    return cast_then_run


def _bind_weights(node: Node, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The node's weights by role: a Constant's value in its declared dtype, other float weights as float32."""
    if node.op == "Constant":
        return {"value": np.array(weights[node.weights["value"]], to_numpy(node.attrs["dtype"]), order="C")}
    return {role: _as_float32(weights[key]) for role, key in node.weights.items()}


def _as_float32(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w)
    if w.dtype.kind == "f" and w.dtype != np.float32:
        w = w.astype(np.float32)
    return np.ascontiguousarray(w)


# -- graph rewrites --------------------------------------------------------------------


def optimize(graph: Graph, specs: dict[str, TensorSpec]) -> Graph:
    """A copy of ``graph`` with BatchNormalization folded, activations fused and non-overlapping 'valid'
    max pooling fused into the Conv2D feeding it (attr ``pool``: run by ``conv2d_maxpool``).

    ``specs`` are the tensor specs of the validated graph.
    """
    g = Graph(list(graph.inputs), list(graph.outputs), [copy.deepcopy(n) for n in graph.nodes], dict(graph.weights))
    _fold_batchnorm(g, specs)
    _fuse_activations(g)
    _fuse_maxpool(g, specs)
    return g


def _fold_batchnorm(g: Graph, specs: dict[str, TensorSpec]) -> None:
    for node in [n for n in g.nodes if n.op == "BatchNormalization"]:
        producer = g.sole_producer(node, _FUSIBLE)
        rank = len(specs[node.inputs[0]].shape)
        if producer is None or node.attrs["axis"] % rank != rank - 1:
            continue
        a, w = node.attrs, {r: np.asarray(g.weights[k], np.float64) for r, k in node.weights.items()}
        scale = 1.0 / np.sqrt(w["moving_variance"] + a["epsilon"])
        if "gamma" in w:
            scale = scale * w["gamma"]
        shift = -w["moving_mean"] * scale + (w["beta"] if "beta" in w else 0.0)
        role = "pointwise_kernel" if producer.op == "SeparableConv2D" else "kernel"
        kernel = np.asarray(g.weights[producer.weights[role]], np.float64)
        if producer.op == "DepthwiseConv2D":
            kernel = kernel * scale.reshape(kernel.shape[-2:])
        elif producer.op == "Conv2DTranspose":
            kernel = kernel * scale[:, None]
        else:
            kernel = kernel * scale
        bias = g.weights.get(producer.weights.get("bias", ""), 0.0)
        new_bias = np.asarray(bias, np.float64) * scale + shift
        g.weights[f"{producer.name}/folded_{role}"] = kernel.astype(np.float32)
        g.weights[f"{producer.name}/folded_bias"] = new_bias.astype(np.float32)
        producer.weights = {**producer.weights, role: f"{producer.name}/folded_{role}",
                            "bias": f"{producer.name}/folded_bias"}
        producer.attrs["use_bias"] = True
        g.bypass(producer, node)


def _fuse_activations(g: Graph) -> None:
    for node in list(g.nodes):
        act = fused_activation(node)
        if act is None or act == "linear":
            continue
        producer = g.sole_producer(node, _FUSIBLE)
        if producer is None:
            continue
        producer.attrs["activation"] = act
        g.bypass(producer, node)


# Nondecreasing activations: they commute with a max, so a fused pooling may apply them after it.
_MONOTONIC = {"linear", "relu", "relu6"}


def _fuse_maxpool(g: Graph, specs: dict[str, TensorSpec]) -> None:
    for node in [n for n in g.nodes if n.op == "MaxPooling2D"]:
        a = node.attrs
        if a["padding"] != "valid" or list(a["pool_size"]) != list(a["strides"]):
            continue
        t = node.inputs[0]
        producer = g.producers().get(t)
        if (producer is None or producer.op != "Conv2D" or producer.attrs["groups"] != 1
                or producer.attrs["activation"] not in _MONOTONIC or "pool" in producer.attrs):
            continue
        if len(g.consumers().get(t, [])) != 1 or any(o.name == t for o in g.outputs):
            continue
        hw = specs[t].shape[1:3]
        if specs[t].dtype != "float32" or any(d is None or d < k for d, k in zip(hw, a["pool_size"], strict=True)):
            continue
        producer.attrs["pool"] = [int(k) for k in a["pool_size"]]
        g.bypass(producer, node)
