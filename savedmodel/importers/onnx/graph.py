"""Walk an ONNX graph in order and build the IR Graph.

Each node is, in this order: evaluated at import when all its inputs are
constants (fold.py), evaluated symbolically when it computes on the batch size
(fold.py), or converted by its converter (registry.py). Errors do not stop the
walk: every op without a converter and every node a converter refuses is
collected and reported in one UnsupportedError.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from onnx import ModelProto, ValueInfoProto, helper, numpy_helper

from savedmodel.dtypes import as_dtype
from savedmodel.errors import UnsupportedError
from savedmodel.importers.onnx.context import Emitter, NodeContext
from savedmodel.importers.onnx.fold import FOLDED, NOT_FOLDED, fold_constant, fold_symbolic
from savedmodel.importers.onnx.registry import lookup, normalize_domain, supported_ops
from savedmodel.importers.onnx.values import UNAVAILABLE, Dyn
from savedmodel.ir import Graph, TensorSpec

MIN_OPSET, MAX_OPSET = 13, 21
# Ops that pass their input through at inference (Dropout's mask output is refused if used).
PASS_THROUGH = frozenset({"Identity", "Dropout"})


@dataclass
class _Problem:
    node: str
    op_type: str
    reason: str | None  # None: the op has no converter


def opsets_of(model: ModelProto) -> dict[str, int]:
    """The opset version of every domain the model imports ("" for the default domain)."""
    return {normalize_domain(o.domain): int(o.version) for o in model.opset_import}


def check_opset(opsets: dict[str, int]) -> None:
    version = opsets.get("")
    if version is None or not MIN_OPSET <= version <= MAX_OPSET:
        raise UnsupportedError(
            f"the model uses ONNX opset {version}; the importer reads opsets {MIN_OPSET} to {MAX_OPSET}. "
            f"Re-export with opset_version between {MIN_OPSET} and {MAX_OPSET} (or convert it with "
            "onnx.version_converter).", kind=f"opset {version}")


def build_graph(model: ModelProto) -> Graph:
    """The IR graph of ``model`` (validated).

    Raises UnsupportedError listing every node that cannot be converted.
    """
    opsets = opsets_of(model)
    check_opset(opsets)
    g = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    readers = Counter(t for node in g.node for t in node.input if t) + Counter(v.name for v in g.output)
    emitter = Emitter([_input_spec(v) for v in g.input if v.name not in constants], dict(readers))
    emitter.values.update(constants)
    problems: list[_Problem] = []
    for i, node in enumerate(g.node):
        name = node.name or f"{node.op_type}_{i}"
        ctx = NodeContext(emitter, node, name, opsets.get(normalize_domain(node.domain), 0))
        problem = _convert(ctx, opsets)
        if problem is not None:
            problems.append(problem)
        for out in filter(None, node.output):
            if problem is not None or out not in emitter.values:
                emitter.values[out] = UNAVAILABLE
    if problems:
        raise _report(problems)
    outputs = [_bind_output(emitter, v.name) for v in g.output]
    graph = Graph(emitter.inputs, outputs, emitter.nodes, emitter.weights)
    _prune(graph)
    specs = graph.validate()
    graph.outputs = [specs[o.name] for o in graph.outputs]
    return graph


def _convert(ctx: NodeContext, opsets: dict[str, int]) -> _Problem | None:
    """Fold or convert one node; return what went wrong, if anything."""
    node = ctx.node
    present = [i for i in range(ctx.n_inputs) if ctx.has_input(i)]
    missing = [node.input[i] for i in present if node.input[i] not in ctx.emitter.values]
    if missing:
        return _Problem(ctx.name, node.op_type, f"inputs {missing} are produced by no node (a malformed graph)")
    if any(ctx.value(i) is UNAVAILABLE for i in present):
        known = lookup(node.domain, node.op_type) or node.op_type in PASS_THROUGH or node.op_type in FOLDED
        return None if known else _Problem(ctx.name, node.op_type, None)
    try:
        if node.op_type in PASS_THROUGH and normalize_domain(node.domain) == "":
            _pass_through(ctx)
        elif all(isinstance(ctx.value(i), np.ndarray) for i in present) and node.op_type not in NOT_FOLDED:
            _fold(ctx, opsets)
        elif (value := fold_symbolic(ctx, opsets)) is not None:
            ctx.set_value(0, value)
        else:
            convert = lookup(node.domain, node.op_type)
            if convert is None:
                return _Problem(ctx.name, node.op_type, None)
            convert(ctx)
    except UnsupportedError as e:
        reason = str(e) if str(e).startswith(f"{node.op_type} node ") else f"{node.op_type} node {ctx.name!r}: {e}"
        return _Problem(ctx.name, node.op_type, reason)
    return None


def _pass_through(ctx: NodeContext) -> None:
    if ctx.op_type == "Dropout" and len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise ctx.unsupported("its mask output is used; inference has no dropout mask")
    ctx.set_value(0, ctx.value(0))


def _fold(ctx: NodeContext, opsets: dict[str, int]) -> None:
    inputs = [ctx.const(i) for i in range(ctx.n_inputs)]
    try:
        results = fold_constant(ctx.node, inputs, opsets)
    except Exception as e:  # the reference evaluator raises many types; report which node failed
        raise ctx.unsupported(f"evaluating it on its constant inputs failed: {type(e).__name__}: {e}") from e
    outs = [o for o in ctx.node.output if o]
    for out, value in zip(outs, results):
        ctx.emitter.values[out] = value


def _report(problems: list[_Problem]) -> UnsupportedError:
    unknown: dict[str, list[str]] = {}
    for p in problems:
        if p.reason is None:
            unknown.setdefault(p.op_type, []).append(p.node)
    parts = []
    if unknown:
        listed = "; ".join(f"{op} (nodes {', '.join(repr(n) for n in names)})" for op, names in sorted(unknown.items()))
        parts.append(f"the ONNX model uses {len(unknown)} op type(s) the importer cannot convert: {listed}.")
    parts += [p.reason for p in problems if p.reason is not None]  # type: ignore[misc]
    return UnsupportedError(
        " ".join(parts),
        what=", ".join(p.node for p in problems),
        kind=", ".join(sorted({p.op_type for p in problems})),
        supported=supported_ops() if unknown else (),
    )


def _input_spec(v: ValueInfoProto) -> TensorSpec:
    if not v.type.HasField("tensor_type"):
        raise UnsupportedError(f"graph input {v.name!r} is a {v.type.WhichOneof('value')}; only tensor inputs are "
                               "supported", what=v.name, kind=str(v.type.WhichOneof("value")))
    t = v.type.tensor_type
    dtype = as_dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim)
    return TensorSpec(v.name, dtype, shape)


def _bind_output(emitter: Emitter, name: str) -> TensorSpec:
    """Make the IR tensor of ONNX output ``name`` carry that name, in ONNX's layout."""
    value = emitter.values[name]
    ir = emitter.materialize(value, None, name, name)
    if ir != name:
        produced = any(ir in n.outputs for n in emitter.nodes)
        if name in emitter.specs or not produced or any(o.name == ir for o in emitter.inputs):
            ir = emitter.emit(name, "Identity", [ir])  # type: ignore[assignment]
        _rename(emitter, ir, name)
    return emitter.specs[name]


def _rename(emitter: Emitter, old: str, new: str) -> None:
    if old == new:
        return
    for n in emitter.nodes:
        n.inputs = [new if t == old else t for t in n.inputs]
        n.outputs = [new if t == old else t for t in n.outputs]
    emitter.specs[new] = TensorSpec(new, emitter.specs[old].dtype, emitter.specs[old].shape)
    for key, v in list(emitter.values.items()):
        if isinstance(v, Dyn) and v.ir == old:
            emitter.values[key] = Dyn(new, v.perm, v.flat)


def _prune(graph: Graph) -> None:
    """Drop nodes no output depends on, and their weights."""
    needed = {o.name for o in graph.outputs}
    kept = []
    for n in reversed(graph.nodes):
        if any(t in needed for t in n.outputs):
            kept.append(n)
            needed.update(n.inputs)
    graph.nodes = kept[::-1]
    used = {key for n in graph.nodes for key in n.weights.values()}
    graph.weights = {k: v for k, v in graph.weights.items() if k in used}

