"""The converter checks its own output before anyone loads it.

On some mistakes TF.js does not fail: a reference to a missing layer in
``inbound_nodes`` (or a layer without its outer ``name``) makes
``loadLayersModel`` loop forever, and a model without weights loads with
random ones. So every written model is checked here: names TF.js accepts,
every reference resolving, every class/op one TF.js registers, the manifest
naming exactly the weights each layer has, shards as large as the manifest
says, and finally a read-back through our own reader, which rebuilds the IR
graph (checking every weight's shape against its op) and must give the
source graph's inputs and outputs.

>>> validate_model(convert_graph(graph, validate=False), graph)     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from converters.web import format as fmt
from converters.web.errors import ConversionError
from converters.web.shards import entry_nbytes
from converters.web.tfjs_registry import TFJS_GRAPH_OPS, TFJS_LAYER_CLASSES
from savedmodel.errors import SavedModelError
from savedmodel.ir import Graph

if TYPE_CHECKING:
    from converters.web.convert import WebModel

# The weights TF.js creates for a layer, by class, given its config.
_LAYER_WEIGHTS = {
    "Dense": lambda c: ["kernel"] + (["bias"] if c.get("use_bias", True) else []),
    "Conv1D": lambda c: ["kernel"] + (["bias"] if c.get("use_bias", True) else []),
    "Conv2D": lambda c: ["kernel"] + (["bias"] if c.get("use_bias", True) else []),
    "Conv2DTranspose": lambda c: ["kernel"] + (["bias"] if c.get("use_bias", True) else []),
    "DepthwiseConv2D": lambda c: ["depthwise_kernel"] + (["bias"] if c.get("use_bias", True) else []),
    "SeparableConv2D": lambda c: ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if c.get("use_bias", True)
                                                                              else []),
    "BatchNormalization": lambda c: (["gamma"] if c.get("scale", True) else []) + (["beta"] if c.get("center", True)
                                                                                   else [])
    + ["moving_mean", "moving_variance"],
    "LayerNormalization": lambda c: (["gamma"] if c.get("scale", True) else []) + (["beta"] if c.get("center", True)
                                                                                   else []),
    "PReLU": lambda c: ["alpha"],
}


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, problem: str) -> None:
        self.items.append(problem)

    def raise_if_any(self, kind: str) -> None:
        if self.items:
            shown = "; ".join(self.items[:10]) + (f"; and {len(self.items) - 10} more" if len(self.items) > 10 else "")
            raise ConversionError(f"the {kind} failed the converter's own checks: {shown}")


def validate_model(model: WebModel, source: Graph | None = None) -> None:
    """Raise ConversionError listing what is wrong with ``model`` (a WebModel in memory)."""
    doc = model.model_json
    problems = _Problems()
    manifest = doc.get(fmt.KEY_MANIFEST)
    if not isinstance(manifest, list):
        problems.add(f"'{fmt.KEY_MANIFEST}' is missing (TF.js would load random weights)")
        problems.raise_if_any(model.format)
    entries = _check_manifest(manifest, model.shards, problems)
    if model.format == fmt.FORMAT_LAYERS:
        _check_layers(doc.get(fmt.KEY_TOPOLOGY), entries, problems)
    else:
        _check_graph(doc, entries, problems)
    problems.raise_if_any(model.format)
    _check_round_trip(model, source)


def _check_manifest(manifest: list[Any], shards: dict[str, bytes], problems: _Problems) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for g, group in enumerate(manifest):
        paths = group.get(fmt.KEY_PATHS, [])
        size = 0
        for p in paths:
            if p not in shards:
                problems.add(f"weight group {g} lists shard {p!r}, which is not written")
            size += len(shards.get(p, b""))
        need = 0
        for e in group.get(fmt.KEY_WEIGHTS, []):
            name = e.get(fmt.KEY_NAME)
            if name in entries:
                problems.add(f"weight {name!r} is listed twice (TF.js keeps the later one and reports the other unset)")
            entries[name] = e
            if not isinstance(name, str) or not fmt.TFJS_NAME_RE.match(name):
                problems.add(f"weight name {name!r} is not a valid TF.js tensor name")
            if e.get(fmt.KEY_DTYPE) not in fmt.WEIGHT_DTYPES:
                problems.add(f"weight {name!r} has dtype {e.get(fmt.KEY_DTYPE)!r}")
            need += entry_nbytes(e)
        if need != size:
            problems.add(f"weight group {g}: the manifest describes {need} bytes, the shards hold {size}")
    first = next(iter(entries), None)
    if first is not None and first.rsplit("/", 1)[-1].isdigit():
        problems.add(f"the first weight name {first!r} ends in a number, which switches TF.js to index matching")
    return entries


def _check_layers(topology: Any, entries: dict[str, dict], problems: _Problems) -> None:
    if not isinstance(topology, dict) or topology.get(fmt.KEY_CLASS) not in (fmt.CLASS_SEQUENTIAL,
                                                                              fmt.CLASS_FUNCTIONAL):
        problems.add("modelTopology must be a Sequential or Functional model")
        return
    config = topology.get(fmt.KEY_CONFIG, {})
    layers = config.get(fmt.KEY_LAYERS)
    if not isinstance(layers, list) or not layers:
        problems.add("modelTopology.config.layers must be a non-empty list")
        return
    functional = topology[fmt.KEY_CLASS] == fmt.CLASS_FUNCTIONAL
    names: dict[str, dict] = {}
    for i, layer in enumerate(layers):
        where = f"layers[{i}]"
        cls, cfg = layer.get(fmt.KEY_CLASS), layer.get(fmt.KEY_CONFIG)
        if cls not in TFJS_LAYER_CLASSES:
            problems.add(f"{where}: class {cls!r} is not registered in TF.js")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str):
            problems.add(f"{where}: the config has no name")
            continue
        name = cfg["name"]
        if not fmt.NAME_RE.match(name):
            problems.add(f"{where}: layer name {name!r} does not match {fmt.NAME_RE.pattern}")
        if name in names:
            problems.add(f"{where}: layer name {name!r} is used twice")
        names[name] = layer
        if cls == fmt.CLASS_INPUT and fmt.KEY_BATCH_INPUT_SHAPE not in cfg:
            problems.add(f"{where}: the InputLayer has no batch_input_shape (Keras 3's batch_shape fails in TF.js)")
        if functional:
            if layer.get("name") != name:
                problems.add(f"{where}: the outer name {layer.get('name')!r} differs from the config's {name!r} "
                             "(a missing outer name makes TF.js loop forever)")
            inbound = layer.get(fmt.KEY_INBOUND)
            if not isinstance(inbound, list) or (cls == fmt.CLASS_INPUT) != (inbound == []):
                problems.add(f"{where}: inbound_nodes must be [] for an InputLayer and one call for other layers")
    if functional:
        _check_references(config, names, problems)
    elif layers[0].get(fmt.KEY_CLASS) != fmt.CLASS_INPUT:
        problems.add("a Sequential model must start with its InputLayer")
    expected = {}
    for name, layer in names.items():
        fn = _LAYER_WEIGHTS.get(layer.get(fmt.KEY_CLASS))
        for w in fn(layer[fmt.KEY_CONFIG]) if fn else []:
            expected[f"{name}/{w}"] = name
    for missing in sorted(set(expected) - set(entries)):
        problems.add(f"weight {missing!r} of layer {expected[missing]!r} is not in the manifest")
    for extra in sorted(set(entries) - set(expected)):
        problems.add(f"manifest weight {extra!r} belongs to no layer")


def _check_references(config: dict[str, Any], names: dict[str, dict], problems: _Problems) -> None:
    deps: dict[str, list[str]] = {}
    for name, layer in names.items():
        refs = []
        for call in layer.get(fmt.KEY_INBOUND) or []:
            for ref in call:
                if not isinstance(ref, list) or len(ref) < 3 or ref[0] not in names:
                    problems.add(f"layer {name!r} reads {ref!r}, which names no layer (TF.js would loop forever)")
                else:
                    refs.append(ref[0])
        deps[name] = refs
    for key in (fmt.KEY_INPUT_LAYERS, fmt.KEY_OUTPUT_LAYERS):
        for ref in config.get(key) or []:
            if not isinstance(ref, list) or not ref or ref[0] not in names:
                problems.add(f"{key} entry {ref!r} names no layer")
        if not config.get(key):
            problems.add(f"{key} is missing or empty")
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            problems.add(f"layer {name!r} is part of a cycle")
            return
        state[name] = 1
        for d in deps.get(name, []):
            visit(d)
        state[name] = 2

    for name in deps:
        visit(name)


def _check_graph(doc: dict[str, Any], entries: dict[str, dict], problems: _Problems) -> None:
    topology = doc.get(fmt.KEY_TOPOLOGY, {})
    if not isinstance(topology.get(fmt.KEY_VERSIONS), dict):
        problems.add("modelTopology.versions is missing (TF.js fails reading 'producer')")
    nodes = topology.get(fmt.KEY_NODE) or []
    names = set()
    for node in nodes:
        if node.get("name") in names:
            problems.add(f"node name {node.get('name')!r} is used twice")
        names.add(node.get("name"))
    for node in nodes:
        name, op = node.get("name"), node.get("op")
        if op not in TFJS_GRAPH_OPS:
            problems.add(f"node {name!r}: op {op!r} is not implemented by TF.js")
        for ref in node.get(fmt.KEY_INPUT, []):
            if ref.lstrip("^").split(":")[0] not in names:
                problems.add(f"node {name!r} reads {ref!r}, which is no node")
        if op == fmt.OP_CONST and name not in entries:
            problems.add(f"Const node {name!r} has no manifest entry")
        for key, attr in (node.get(fmt.KEY_ATTR) or {}).items():
            values = [attr["s"]] if "s" in attr else attr.get("list", {}).get("s", [])
            for v in values:
                try:
                    base64.b64decode(v, validate=True)
                except (binascii.Error, ValueError):
                    problems.add(f"node {name!r}: attr {key!r} is not base64 (TF.js decodes strings as base64)")
    signature = doc.get(fmt.KEY_SIGNATURE) or {}
    for part in ("inputs", "outputs"):
        for key, info in (signature.get(part) or {}).items():
            if info.get("name", "").split(":")[0] not in names:
                problems.add(f"signature {part} {key!r} names no node")


def _check_round_trip(model: WebModel, source: Graph | None) -> None:
    from converters.web.reader import read_model

    try:
        graph = read_model(model.model_json, f"<converted {fmt.MODEL_JSON}>", model.shards.get)
    except SavedModelError as e:
        raise ConversionError(f"the converter wrote a {model.format} it cannot read back: {e}") from e
    if source is None:
        return
    got = [(s.name, tuple(s.shape)) for s in graph.inputs], [(s.name, tuple(s.shape)) for s in graph.outputs]
    want = [(s.name, tuple(s.shape)) for s in source.inputs], [(s.name, tuple(s.shape)) for s in source.outputs]
    if got != want:
        raise ConversionError(f"the {model.format} reads back with inputs/outputs {got}, the source has {want}")
