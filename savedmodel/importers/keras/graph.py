"""Build a Graph from a :class:`ModelRecord`, whichever source it was read from.

1. Nested models are flattened: their layers join the outer graph, their
   inputs are bound to the tensors they were called on.
2. Only the calls the outputs depend on are kept, in dependency order.
3. Each call is named (the Keras layer name; ``name:i`` for a layer called
   several times; ``model/name`` where nested models reuse a name) and
   converted by the layer or keras.ops table; every unsupported layer is
   collected and reported in one UnsupportedError.
4. Keras masks are tracked per tensor (``masks.py``) and handed to the
   layers that use them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from savedmodel.errors import GraphError, UnsupportedError
from savedmodel.importers.keras import sequence  # noqa: F401  (fills LAYERS with the sequence layers)
from savedmodel.importers.keras.convert import Converter, Emit, LayerCall, Outputs, Source
from savedmodel.importers.keras.layers import LAYERS
from savedmodel.importers.keras.masks import default_rule
from savedmodel.importers.keras.operations import OPERATIONS
from savedmodel.importers.keras.records import Call, LayerRecord, ModelRecord, Ref, flatten, map_leaves
from savedmodel.ir import Graph, Node, TensorSpec
from savedmodel.ops import get_op, infer_node

MODEL_CLASSES = ("Functional", "Sequential", "Model")

# Keyword arguments that carry Keras masks: the builder tracks masks itself (a Sequential file records none),
# so these tensors are not dependencies of the call.
MASK_KWARGS = frozenset({"mask", "query_mask", "value_mask", "key_mask"})


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
        """The positional tensor arguments."""
        return [k for k in flatten(self.call.args) if isinstance(k, _Key)]

    def kwargs_without_masks(self) -> dict[str, Any]:
        return {k: v for k, v in self.call.kwargs.items() if k not in MASK_KWARGS}

    def dependency_keys(self) -> list[_Key]:
        """Every tensor the call reads: positional, then keyword arguments other than masks."""
        return [k for k in flatten([self.call.args, self.kwargs_without_masks()]) if isinstance(k, _Key)]


def build_graph(model: ModelRecord) -> Graph:
    """The Graph of ``model`` (not yet validated).

    Raises UnsupportedError listing every layer the catalogue cannot express.
    """
    flat = _Flattener()
    flat.add(model, (), (), None)
    inputs: dict[_Key, TensorSpec] = {}
    for ref in model.inputs:
        inputs[_Key((), ref.layer, ref.node, ref.tensor)] = _input_spec(model, ref)
    outputs = [flat.resolve(_Key((), r.layer, r.node, r.tensor)) for r in model.outputs]
    order = flat.order(outputs, set(inputs))
    _check_classes(order)
    return _Converter(order, inputs, flat, model.keras_version).run(outputs)


# -- classes ---------------------------------------------------------------------------

def _check_classes(order: list[_App]) -> None:
    """Refuse, in one error, every layer the outputs depend on that the tables lack (a model may hold
    operations no output needs, such as the ops Keras records while computing masks)."""
    found: list[LayerRecord] = list({id(a.record): a.record for a in order
                                     if a.record.class_name not in _table(a.record)}.values())
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
                    for key in reversed(app.dependency_keys()):
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
        self.masks: dict[_Key, str | None] = {}
        self.failed: set[tuple[Any, ...]] = set()  # calls that are, or read, an unsupported layer
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
        specs = [self.specs[self._tensor(k)] for k in outputs]  # type: ignore[index]
        inputs = list(self.inputs.values())
        return Graph(inputs, [TensorSpec(s.name, s.dtype, s.shape) for s in specs], self.nodes, self.weights)

    def _tensor(self, key: _Key) -> str | None:
        """The graph tensor of a Keras tensor; None downstream of an unsupported layer."""
        key = self.flat.resolve(key)
        if key.call in self.failed:
            return None
        if key not in self.tensors:
            raise GraphError(f"a layer reads output {key.tensor} of {key.layer!r}, which has no such output")
        return self.tensors[key]

    def _convert(self, app: _App) -> None:
        record = app.record
        name, prefix = self.names[id(app)]
        if any(self._tensor(k) is None for k in app.dependency_keys()):
            self.failed.add(app.key)
            return
        arg_keys = [self.flat.resolve(k) for k in app.input_keys()]
        tensors: list[str] = [self.tensors[k] for k in arg_keys]  # type: ignore[misc]
        masks = [self.masks.get(k) for k in arg_keys]

        def spec_of(value: Any) -> Any:
            return self.specs[self._tensor(value)] if isinstance(value, _Key) else value  # type: ignore[index]

        converter = _table(record)[record.class_name]
        try:
            _check_dtype_policy(record, name)
            self._refuse_explicit_masks(app, name)
            weights = assign_roles(record, converter.roles(record.config), name)
            call = LayerCall(name, record.class_name, record.config, weights, [self.specs[t] for t in tensors],
                             map_leaves(app.call.args, spec_of), map_leaves(app.kwargs_without_masks(), spec_of),
                             self.version, self._masks_of(app))
            emits = converter.convert(call)
            if not emits:  # no effect at inference: consumers read the input
                if len(tensors) != 1:
                    raise GraphError(f"layer {name!r} ({record.class_name}) is dropped but has {len(tensors)} inputs")
                outputs, out_masks = tensors, None
            else:
                outputs, out_masks = self._emit(name, prefix, emits, tensors)
            if out_masks is None:
                out_masks = [self._default_mask(call, masks, record.is_op)] + [None] * (len(outputs) - 1)
        except UnsupportedError as e:
            self.errors.append(e)
            self.failed.add(app.key)
            return
        for i, (tensor, mask) in enumerate(zip(outputs, out_masks, strict=True)):
            self.tensors[_Key(*app.key, i)] = tensor
            self.masks[_Key(*app.key, i)] = mask

    def _refuse_explicit_masks(self, app: _App, name: str) -> None:
        """Refuse a mask passed by hand (``lstm(x, mask=m)``) when it is visibly a model tensor: masks are
        tracked from Embedding and Masking only, so it would be ignored. The masks Keras fills in itself come
        from operations no output depends on, which are never converted."""
        for kwarg in MASK_KWARGS & set(app.call.kwargs):
            for key in flatten(app.call.kwargs[kwarg]):
                if isinstance(key, _Key) and self.tensors.get(self.flat.resolve(key)) is not None:
                    raise UnsupportedError(
                        f"Layer {name!r} ({app.record.class_name}) is given {kwarg}= explicitly; the importer "
                        "derives masks from Embedding(mask_zero=True) and Masking only. Mask the input with one "
                        "of them instead.", what=name, kind=app.record.class_name,
                        supported=["masks from Embedding(mask_zero=True) or Masking"])

    def _masks_of(self, app: _App) -> dict[str, TensorSpec]:
        """Tensor name -> spec of its mask, for the call's tensor arguments that carry a Keras mask."""
        found = {}
        for key in app.dependency_keys():
            key = self.flat.resolve(key)
            mask = self.masks.get(key)
            if mask is not None:
                found[self.tensors[key]] = self.specs[mask]
        return found

    def _emit(self, name: str, prefix: str, emits: list[Any],
              tensors: list[str]) -> tuple[list[str], list[str | None] | None]:
        """Create the nodes of one call; return the call's output tensors and (if the converter gave them)
        their masks."""
        result = emits[-1] if isinstance(emits[-1], Outputs) else None
        nodes: list[Emit] = emits[:-1] if result is not None else emits
        made: dict[str, list[str]] = {}
        previous = tensors
        used: set[str] = set()  # weight keys of this call: two nodes with one role (a Bidirectional's RNNs) differ
        for i, emit in enumerate(nodes):
            label = emit.suffix or emit.op
            node_name = name if i == len(nodes) - 1 else f"{name}/{label}"
            if emit.inputs is not None:
                inputs = [self._source(src, tensors, made, name) for src in emit.inputs]
            else:
                inputs = tensors if i == 0 else previous[:1]
            roles = {}
            for role, value in emit.weights.items():
                key = f"{prefix}/{role}" if f"{prefix}/{role}" not in used else f"{prefix}/{label}/{role}"
                used.add(key)
                self.weights.setdefault(key, np.asarray(value))
                roles[role] = key
            count = get_op(emit.op, node_name).output_count(emit.attrs)
            outs = [node_name] if count == 1 else [f"{node_name}:{k}" for k in range(count)]
            node = Node(node_name, emit.op, list(inputs), outs, dict(emit.attrs), roles)
            specs = infer_node(node, [self.specs[t] for t in inputs], self.weights)
            self.nodes.append(node)
            self.specs.update({spec.name: spec for spec in specs})
            if label in made:
                raise GraphError(f"layer {name!r} emits two nodes labelled {label!r}")
            made[label] = outs
            previous = outs
        if result is None:
            return previous[:1], None
        outputs = [self._source(src, tensors, made, name) for src in result.tensors]
        if result.masks is None:
            return outputs, None
        return outputs, [None if m is None else self._source(m, tensors, made, name) for m in result.masks]

    def _source(self, src: Source, tensors: list[str], made: dict[str, list[str]], name: str) -> str:
        """The graph tensor an emit's input or output names (see convert.Source)."""
        if isinstance(src, TensorSpec):
            return src.name
        if isinstance(src, int):
            return tensors[src]
        label, _, index = src.rpartition(":") if src.rpartition(":")[2].isdigit() else (src, "", "0")
        if label not in made:
            raise GraphError(f"layer {name!r} refers to {src!r}, which none of its nodes is labelled")
        return made[label][int(index)]

    def _default_mask(self, call: LayerCall, masks: list[str | None], is_op: bool) -> str | None:
        """The output mask of a layer without its own mask logic (``masks.default_rule``)."""
        rule = default_rule(call.class_name, is_op)
        if rule == "pass":
            return masks[0] if masks else None
        if rule == "refuse" and any(m is not None for m in masks):
            raise call.unsupported("merges masked tensors: Keras replaces their masked entries before merging, "
                                   "which the importer does not reproduce", ["unmasked inputs"])
        if rule != "or" or not masks or any(m is None for m in masks):
            return None
        if call.class_name == "Concatenate":
            axis = int(call.config.get("axis", -1))
            if axis not in (-1, len(call.x.shape) - 1):
                raise call.unsupported(f"concatenates masked tensors along axis {axis}; only the mask of a "
                                       "concatenation along the last axis is implemented", ["axis=-1"])
        return self._combine(call.name, list(dict.fromkeys(m for m in masks if m is not None)), "or")

    def _combine(self, name: str, masks: list[str], function: str) -> str:
        if len(masks) == 1:
            return masks[0]
        node_name = f"{name}/mask"
        node = Node(node_name, "CombineMasks", list(masks), [node_name], {"function": function}, {})
        (spec,) = infer_node(node, [self.specs[m] for m in masks], self.weights)
        self.nodes.append(node)
        self.specs[node_name] = spec
        return node_name


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
