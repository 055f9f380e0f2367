"""Build a Graph from a :class:`ModelRecord`, whichever source it was read from.

1. Nested models are flattened: their layers join the outer graph, their
   inputs are bound to the tensors they were called on.
2. Only the calls the outputs depend on are kept, in dependency order.
3. Each call is named (the Keras layer name; ``name:i`` for a layer called
   several times; ``model/name`` where nested models reuse a name) and
   converted by the layer or keras.ops table; every unsupported layer is
   collected and reported in one UnsupportedError.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from savedmodel.errors import GraphError, UnsupportedError
from savedmodel.importers.keras.convert import Converter, LayerCall
from savedmodel.importers.keras.layers import LAYERS
from savedmodel.importers.keras.operations import OPERATIONS
from savedmodel.importers.keras.records import Call, LayerRecord, ModelRecord, Ref, flatten, map_leaves
from savedmodel.ir import Graph, Node, TensorSpec
from savedmodel.ops import infer_node

MODEL_CLASSES = ("Functional", "Sequential", "Model")


@dataclass(frozen=True)
class _Key:
    """A tensor of the flattened model: output ``tensor`` of call ``node`` of
    ``layer`` inside ``scope`` (the nested-model calls leading to it)."""

    scope: tuple[tuple[str, int], ...]
    layer: str
    node: int
    tensor: int

    @property
    def call(self) -> tuple[Any, ...]:
        return self.scope, self.layer, self.node


@dataclass
class _App:
    """One call of a leaf layer or operation in the flattened model."""

    record: LayerRecord
    owner: tuple[str, ...]  # enclosing model names + layer name: who owns the weights
    key: tuple[Any, ...]  # (scope, layer, node) of _Key
    call: Call  # arguments with _Key in place of Ref

    def input_keys(self) -> list[_Key]:
        return [k for k in flatten(self.call.args) if isinstance(k, _Key)]


def build_graph(model: ModelRecord) -> Graph:
    """The Graph of ``model`` (not yet validated).

    Raises UnsupportedError listing every layer the catalogue cannot express.
    """
    _check_classes(model)
    flat = _Flattener()
    flat.add(model, (), (), None)
    inputs: dict[_Key, TensorSpec] = {}
    for ref in model.inputs:
        inputs[_Key((), ref.layer, ref.node, ref.tensor)] = _input_spec(model, ref)
    outputs = [flat.resolve(_Key((), r.layer, r.node, r.tensor)) for r in model.outputs]
    order = flat.order(outputs, set(inputs))
    return _Converter(order, inputs, flat, model.keras_version).run(outputs)


# -- classes ---------------------------------------------------------------------------

def _check_classes(model: ModelRecord) -> None:
    found: list[LayerRecord] = []

    def visit(m: ModelRecord) -> None:
        for record in m.layers:
            if record.model is not None:
                visit(record.model)
            elif record.class_name != "InputLayer" and record.class_name not in _table(record):
                found.append(record)

    visit(model)
    if found:
        names = ", ".join(f"{r.name!r} ({'keras.ops ' if r.is_op else ''}{r.class_name})" for r in found)
        noun = "A Keras layer has" if len(found) == 1 else f"{len(found)} Keras layers have"
        raise UnsupportedError(
            f"{noun} no equivalent in the op catalogue: {names}. Replace or remove "
            f"{'it' if len(found) == 1 else 'them'} before export.",
            what=", ".join(r.name for r in found), kind=", ".join(r.class_name for r in found),
            supported=supported_classes(any(r.is_op for r in found)),
        )


def supported_classes(with_ops: bool = False) -> list[str]:
    """The Keras layer classes (and, with ``with_ops``, keras.ops operations) the importer maps."""
    names = sorted([*LAYERS, "InputLayer", *MODEL_CLASSES[:2]])
    return names + ([f"keras.ops {name}" for name in sorted(OPERATIONS)] if with_ops else [])


def _table(record: LayerRecord) -> dict[str, Converter]:
    return OPERATIONS if record.is_op else LAYERS


def _input_spec(model: ModelRecord, ref: Ref) -> TensorSpec:
    config = model.layer(ref.layer).config
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if shape is None:
        raise GraphError(f"input layer {ref.layer!r} has no batch_shape in its config")
    dtype = config.get("dtype") or "float32"
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", "float32")
    return TensorSpec(ref.layer, dtype, (None, *shape[1:]))


# -- flattening ------------------------------------------------------------------------

class _Flattener:
    def __init__(self) -> None:
        self.apps: list[_App] = []
        self.aliases: dict[_Key, _Key] = {}
        self.by_key: dict[tuple[Any, ...], _App] = {}

    def add(self, model: ModelRecord, scope: tuple, owner: tuple[str, ...], bindings: list[_Key] | None) -> None:
        if bindings is not None:
            if len(bindings) != len(model.inputs):
                raise GraphError(f"nested model {owner[-1]!r} takes {len(model.inputs)} inputs, "
                                 f"it is called with {len(bindings)}")
            for ref, key in zip(model.inputs, bindings, strict=True):
                self.aliases[_Key(scope, ref.layer, ref.node, ref.tensor)] = key

        def key_of(value: Any) -> Any:
            return _Key(scope, value.layer, value.node, value.tensor) if isinstance(value, Ref) else value

        for record in model.layers:
            if record.class_name == "InputLayer":
                continue
            for n, call in enumerate(record.calls):
                mapped = Call(map_leaves(call.args, key_of), map_leaves(call.kwargs, key_of))
                if record.model is not None:
                    inner = scope + ((record.name, n),)
                    self.add(record.model, inner, owner + (record.name,),
                             [k for k in flatten(mapped.args) if isinstance(k, _Key)])
                    for t, ref in enumerate(record.model.outputs):
                        self.aliases[_Key(scope, record.name, n, t)] = _Key(inner, ref.layer, ref.node, ref.tensor)
                else:
                    app = _App(record, owner + (record.name,), (scope, record.name, n), mapped)
                    self.apps.append(app)
                    self.by_key[app.key] = app

    def resolve(self, key: _Key) -> _Key:
        seen = set()
        while key in self.aliases:
            if key in seen:
                raise GraphError(f"layer {key.layer!r} is its own input")
            seen.add(key)
            key = self.aliases[key]
        return key

    def producer(self, key: _Key, inputs: set[_Key]) -> _App | None:
        key = self.resolve(key)
        if key in inputs:
            return None
        app = self.by_key.get(key.call)
        if app is None:
            raise GraphError(f"a layer reads output {key.tensor} of call {key.node} of {key.layer!r}, "
                             "which the model does not have")
        return app

    def order(self, outputs: list[_Key], inputs: set[_Key]) -> list[_App]:
        """The calls the outputs depend on, each after the calls it reads (depth-first)."""
        done: dict[int, bool] = {}  # id(app) -> finished
        order: list[_App] = []
        for out in outputs:
            first = self.producer(out, inputs)
            stack = [first] if first is not None else []
            while stack:
                app = stack[-1]
                state = done.get(id(app))
                if state is None:
                    done[id(app)] = False
                    for key in reversed(app.input_keys()):
                        dep = self.producer(key, inputs)
                        if dep is None:
                            continue
                        if done.get(id(dep)) is False:
                            raise GraphError(f"the model has a cycle through layer {dep.record.name!r}")
                        if id(dep) not in done:
                            stack.append(dep)
                else:
                    stack.pop()
                    if state is False:
                        done[id(app)] = True
                        order.append(app)
        return order


# -- conversion ------------------------------------------------------------------------

class _Converter:
    def __init__(self, order: list[_App], inputs: dict[_Key, TensorSpec], flat: _Flattener, version: str) -> None:
        self.order, self.inputs, self.flat, self.version = order, inputs, flat, version
        self.tensors: dict[_Key, str | None] = {k: s.name for k, s in inputs.items()}
        self.specs: dict[str, TensorSpec] = {s.name: s for s in inputs.values()}
        self.nodes: list[Node] = []
        self.weights: dict[str, np.ndarray] = {}
        self.errors: list[UnsupportedError] = []
        self.names = self._names()

    def _names(self) -> dict[int, tuple[str, str]]:
        """id(app) -> (node name, weight-key prefix)."""
        calls: dict[tuple[str, ...], list[_App]] = {}
        kept = {id(a) for a in self.order}
        for app in self.flat.apps:  # in call order per layer
            if id(app) in kept:
                calls.setdefault(app.owner, []).append(app)
        last = Counter(owner[-1] for owner in calls)
        taken = set(self.specs)
        names = {}
        for owner, apps in calls.items():
            base = owner[-1] if last[owner[-1]] == 1 and owner[-1] not in taken else "/".join(owner)
            for i, app in enumerate(apps):
                names[id(app)] = (base if len(apps) == 1 else f"{base}:{i}", base)
        return names

    def run(self, outputs: list[_Key]) -> Graph:
        for app in self.order:
            self._convert(app)
        if self.errors:
            raise _combine(self.errors)
        specs = [self.specs[self.tensors[self.flat.resolve(k)]] for k in outputs]
        inputs = list(self.inputs.values())
        return Graph(inputs, [TensorSpec(s.name, s.dtype, s.shape) for s in specs], self.nodes, self.weights)

    def _convert(self, app: _App) -> None:
        record = app.record
        name, prefix = self.names[id(app)]
        out = _Key(*app.key, 0)
        tensors = [self.tensors[self.flat.resolve(k)] for k in app.input_keys()]
        if any(t is None for t in tensors):  # downstream of an unsupported layer
            self.tensors[out] = None
            return

        def spec_of(value: Any) -> Any:
            return self.specs[self.tensors[self.flat.resolve(value)]] if isinstance(value, _Key) else value

        converter = _table(record)[record.class_name]
        try:
            _check_dtype_policy(record, name)
            weights = assign_roles(record, converter.roles(record.config), name)
            call = LayerCall(name, record.class_name, record.config, weights,
                             [self.specs[t] for t in tensors],  # type: ignore[index]
                             map_leaves(app.call.args, spec_of), map_leaves(app.call.kwargs, spec_of), self.version)
            emits = converter.convert(call)
        except UnsupportedError as e:
            self.errors.append(e)
            self.tensors[out] = None
            return
        if not emits:  # no effect at inference: consumers read the input
            if len(tensors) != 1:
                raise GraphError(f"layer {name!r} ({record.class_name}) is dropped but has {len(tensors)} inputs")
            self.tensors[out] = tensors[0]
            return
        current: list[str] = tensors  # type: ignore[assignment]
        for i, emit in enumerate(emits):
            node_name = name if i == len(emits) - 1 else f"{name}/{emit.suffix or emit.op}"
            inputs = [current[j] for j in emit.inputs] if i == 0 and emit.inputs is not None else current
            roles = {}
            for role, value in emit.weights.items():
                key = f"{prefix}/{role}"
                self.weights.setdefault(key, np.asarray(value))
                roles[role] = key
            node = Node(node_name, emit.op, list(inputs), [node_name], dict(emit.attrs), roles)
            (spec,) = infer_node(node, [self.specs[t] for t in inputs], self.weights)
            self.nodes.append(node)
            self.specs[node_name] = spec
            current = [node_name]
        self.tensors[out] = current[0]


def assign_roles(record: LayerRecord, roles: list[str], name: str) -> dict[str, np.ndarray]:
    """The layer's saved variables by role: by variable name where the source
    names them all, else by position in Keras' own order."""
    arrays = [np.asarray(a) for _, a in record.weights]
    names = [n.split("/")[-1].split(":")[0] if n else None for n, _ in record.weights]
    if all(names) and sorted(names) == sorted(roles):  # type: ignore[type-var]
        return dict(zip(names, arrays, strict=True))  # type: ignore[arg-type]
    if len(arrays) == len(roles):
        return dict(zip(roles, arrays, strict=True))
    shown = [n or f"#{i}" for i, n in enumerate(names)]
    raise UnsupportedError(
        f"Layer {name!r} ({record.class_name}) has {len(arrays)} variables {shown}; with its config the "
        f"importer expects {roles}. Is the layer built (and not LoRA-enabled or quantized)?",
        what=name, kind=record.class_name, supported=[f"variables {roles}"],
    )


def _check_dtype_policy(record: LayerRecord, name: str) -> None:
    policy = record.config.get("dtype")
    policy_name = policy.get("config", {}).get("name", "") if isinstance(policy, dict) else str(policy or "")
    policy_class = policy.get("class_name", "") if isinstance(policy, dict) else ""
    if "_from_" in policy_name or "Quantized" in policy_class or record.config.get("quantization_config"):
        raise UnsupportedError(
            f"Layer {name!r} ({record.class_name}) is quantized (dtype policy {policy_name or policy_class!r}); "
            "export the float model and quantize with converters.lite.",
            what=name, kind=record.class_name, supported=["float dtype policies"],
        )


def _combine(errors: list[UnsupportedError]) -> UnsupportedError:
    if len(errors) == 1:
        return errors[0]
    supported = sorted({s for e in errors for s in e.supported})
    messages = " ".join(str(e).split(" Supported: ")[0] for e in errors)
    return UnsupportedError(
        f"{len(errors)} layers cannot be imported. {messages}",
        what=", ".join(str(e.what) for e in errors), kind=", ".join(str(e.kind) for e in errors),
        supported=supported,
    )
