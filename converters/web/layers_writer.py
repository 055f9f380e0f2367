"""IR graph -> TF.js layers model: a Keras-2-style ``modelTopology`` and its weights.

TF.js 4.x reads only Keras-2 configs (``batch_input_shape``, array-style
``inbound_nodes``); Keras-3 ones fail to load. A chain from one input to one
output is written as a Sequential model, anything else as a Functional one.

>>> topology, weights, io = layers_topology(graph)     # doctest: +SKIP
>>> topology["class_name"], [name for name, _ in weights][:2]     # doctest: +SKIP
('Sequential', ['dense/kernel', 'dense/bias'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.web import format as fmt
from converters.web.errors import NotExpressible
from converters.web.layers_map import LAYER_MAPPINGS
from converters.web.names import Namer
from savedmodel.ir import Graph, Node, TensorSpec

WeightRef = str | tuple[str, str]  # IR role, or (IR role, TF.js weight name)


@dataclass
class Layer:
    """One TF.js layer: its class, unique name, config and inbound layer names."""

    class_name: str
    name: str
    config: dict[str, Any]
    inbound: list[str]
    weights: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (TF.js weight name, value)


class LayerEmitter:
    """What a mapping in ``layers_map`` writes into: layers, their names and weights."""

    def __init__(self, graph: Graph, specs: dict[str, TensorSpec]) -> None:
        self.graph = graph
        self.specs = specs
        self.layers: list[Layer] = []
        self.namer = Namer()

    def spec(self, tensor: str) -> TensorSpec:
        return self.specs[tensor]

    def weight(self, node: Node, role: str) -> np.ndarray:
        return np.asarray(self.graph.weights[node.weights[role]])

    def layer(
        self,
        class_name: str,
        config: dict[str, Any],
        inbound: Sequence[str],
        *,
        node: Node | None = None,
        base: str | None = None,
        suffix: str = "",
        weights: Sequence[WeightRef] = (),
        arrays: Sequence[tuple[str, np.ndarray]] = (),
    ) -> str:
        """Add a layer and return its name.

        The layer holding a node's output passes ``node`` (it gets the node's
        name); helper layers pass ``base`` for theirs. ``weights`` are the
        node's weight roles to attach (absent optional ones are skipped),
        ``arrays`` computed weights.
        """
        if node is None and base is None:
            raise ValueError("a layer needs node= or base=")
        name = self.namer.take(node.name + suffix if node is not None else base)
        values: list[tuple[str, np.ndarray]] = []
        for ref in weights:
            role, tfjs_name = (ref, ref) if isinstance(ref, str) else ref
            if node is not None and role in node.weights:
                values.append((tfjs_name, self.weight(node, role)))
        values.extend(arrays)
        config = {"name": name, "trainable": True, "dtype": "float32", **config}
        self.layers.append(Layer(class_name, name, config, list(inbound), values))
        return name


@dataclass
class LayersModel:
    """The parts of a layers model.json, before weights are packed."""

    topology: dict[str, Any]
    weights: list[tuple[str, np.ndarray]]
    inputs: list[tuple[str, str]]  # (IR input name, InputLayer name)
    outputs: list[tuple[str, str]]  # (IR output name, layer name)


def layers_model(graph: Graph, specs: dict[str, TensorSpec], model_name: str = "model") -> LayersModel:
    """Map every node of the validated ``graph``; raises NotExpressible for the first node TF.js cannot hold."""
    em = LayerEmitter(graph, specs)
    refs: dict[str, str] = {}
    inputs = []
    for spec in graph.inputs:
        dtype = "int32" if spec.dtype.startswith(("int", "uint")) else "float32"
        if spec.dtype not in ("float32", "int32", "float16", "float64", "int8", "int16", "uint8", "uint16"):
            raise NotExpressible(spec.name, f"graph input of dtype {spec.dtype}: TF.js models take numbers only")
        name = em.namer.take(spec.name)
        em.layers.append(Layer(fmt.CLASS_INPUT, name, {
            fmt.KEY_BATCH_INPUT_SHAPE: list(spec.shape), "dtype": dtype, "sparse": False, "ragged": False,
            "name": name}, []))
        refs[spec.name] = name
        inputs.append((spec.name, name))
    for node in graph.topological_order():
        fn = LAYER_MAPPINGS.get(node.op)
        if fn is None:
            raise NotExpressible(node.name, f"op {node.op} has no TF.js layer mapping")
        out = fn(em, node, [refs[t] for t in node.inputs])
        for t in node.outputs:
            refs[t] = out
    outputs = [(spec.name, refs[spec.name]) for spec in graph.outputs]
    weights = [(f"{layer.name}/{w}", v) for layer in em.layers for w, v in layer.weights]
    return LayersModel(_topology(em.layers, inputs, outputs, model_name), weights, inputs, outputs)


def _is_chain(layers: list[Layer], outputs: list[tuple[str, str]]) -> bool:
    if len(outputs) != 1 or len(layers) < 2 or layers[0].class_name != fmt.CLASS_INPUT:
        return False
    if any(layer.class_name == fmt.CLASS_INPUT for layer in layers[1:]):
        return False
    chained = all(layer.inbound == [prev.name] for prev, layer in zip(layers, layers[1:]))
    return chained and outputs[0][1] == layers[-1].name


def _topology(layers: list[Layer], inputs, outputs, model_name: str) -> dict[str, Any]:
    if _is_chain(layers, outputs):
        config = {"name": model_name, "layers": [
            {fmt.KEY_CLASS: layer.class_name, fmt.KEY_CONFIG: layer.config} for layer in layers]}
        class_name = fmt.CLASS_SEQUENTIAL
    else:
        config = {
            "name": model_name,
            "layers": [{
                fmt.KEY_CLASS: layer.class_name,
                fmt.KEY_CONFIG: layer.config,
                "name": layer.name,
                fmt.KEY_INBOUND: [[[src, 0, 0, {}] for src in layer.inbound]] if layer.inbound else [],
            } for layer in layers],
            fmt.KEY_INPUT_LAYERS: [[name, 0, 0] for _, name in inputs],
            fmt.KEY_OUTPUT_LAYERS: [[name, 0, 0] for _, name in outputs],
        }
        class_name = fmt.CLASS_FUNCTIONAL
    return {fmt.KEY_CLASS: class_name, fmt.KEY_CONFIG: config, "keras_version": fmt.KERAS_VERSION,
            "backend": fmt.BACKEND}
