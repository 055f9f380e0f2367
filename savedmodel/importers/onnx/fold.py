"""Import-time evaluation: constant subgraphs and shape arithmetic on the dynamic batch.

A node whose inputs are all constants is evaluated once with ``onnx``'s
reference implementation and becomes a constant. ``Shape`` of a run-time
tensor gives a :class:`SymShape` (the batch dim is symbolic, every other dim
must be known), and the few ops PyTorch applies to shapes (Gather, Slice,
Concat, Unsqueeze, Squeeze, Cast, Mul, Div, ConstantOfShape...) are evaluated
on it here, so ``x.view(x.size(0), -1)`` becomes a batch-keeping Reshape.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from onnx import NodeProto, helper
from onnx.reference import ReferenceEvaluator

from savedmodel.errors import UnsupportedError
from savedmodel.importers.onnx.context import NodeContext
from savedmodel.importers.onnx.values import Batch, Dim, Dyn, Fill, SymShape, Value, make_sym

# Ops never folded even with constant inputs (random, or with state).
NOT_FOLDED = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                        "Bernoulli"})

# Ops the importer only evaluates at import (never converted to IR nodes).
FOLDED = frozenset({"Shape", "Size", "Constant", "ConstantOfShape", "Range"})


def fold_constant(node: NodeProto, inputs: list[np.ndarray | None], opsets: dict[str, int]) -> list[np.ndarray]:
    """Evaluate ``node`` on constant inputs with the ONNX reference evaluator."""
    names = [f"in{i}" if x is not None else "" for i, x in enumerate(inputs)]
    copy = NodeProto()
    copy.CopyFrom(node)
    del copy.input[:]
    copy.input.extend(names)
    del copy.output[:]
    copy.output.extend([f"out{i}" if o else "" for i, o in enumerate(node.output)])
    graph = helper.make_graph(
        [copy], "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), None)
         for n, x in zip(names, inputs) if x is not None],
        [helper.make_tensor_value_info(o, 0, None) for o in copy.output if o],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    feeds = {n: x for n, x in zip(names, inputs) if x is not None}
    results = ReferenceEvaluator(model).run(None, feeds)
    return [np.asarray(r) for r in results]


def _sym_entries(v: Value) -> list[Dim]:
    if isinstance(v, SymShape):
        return list(v.entries)
    arr = np.asarray(v)
    return [int(e) for e in arr.reshape(-1)]


def _is_scalar(v: Value) -> bool:
    return v.scalar if isinstance(v, SymShape) else np.ndim(v) == 0


def _shape(ctx: NodeContext) -> Value:
    dims = ctx.shape(0)
    batch_axis = ctx.layout(0)[0]
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    entries: list[Dim] = []
    for axis, d in enumerate(dims):
        if d is not None:
            entries.append(d)
        elif axis == batch_axis:
            entries.append(Batch(1))
        else:
            raise ctx.unsupported(f"the shape of input {ctx.node.input[0]!r} {list(dims)} has an unknown "
                                  f"non-batch dim (axis {axis}); only the batch axis may be dynamic")
    return make_sym(entries[start:end])


def _gather(ctx: NodeContext) -> Value:
    entries = _sym_entries(ctx.value(0))
    idx = ctx.require_const(1, "indices")
    picked = [entries[int(i)] for i in idx.reshape(-1)]
    return make_sym(picked, scalar=idx.ndim == 0)


def _unsqueeze(ctx: NodeContext) -> Value:
    return make_sym(_sym_entries(ctx.value(0)))


def _squeeze(ctx: NodeContext) -> Value:
    entries = _sym_entries(ctx.value(0))
    if len(entries) != 1:
        raise ctx.unsupported("squeezing a symbolic shape of more than one entry")
    return make_sym(entries, scalar=True)


def _concat(ctx: NodeContext) -> Value:
    return make_sym([e for i in range(ctx.n_inputs) for e in _sym_entries(ctx.value(i))])


def _slice(ctx: NodeContext) -> Value:
    entries = _sym_entries(ctx.value(0))
    starts, ends = ctx.require_const(1, "starts"), ctx.require_const(2, "ends")
    steps = ctx.const(4)
    step = int(steps[0]) if steps is not None else 1
    return make_sym(entries[int(starts[0]):int(max(min(ends[0], 2**62), -2**62)):step])


def _arith(fn: Callable[[Dim, int], Dim]) -> Callable[[NodeContext], Value]:
    def rule(ctx: NodeContext) -> Value:
        a, b = ctx.value(0), ctx.value(1)
        if isinstance(b, SymShape) and not isinstance(a, SymShape) and ctx.op_type == "Mul":
            a, b = b, a
        if isinstance(b, SymShape) or isinstance(b, (Dyn, Fill)) or isinstance(a, (Dyn, Fill)):
            raise ctx.unsupported("arithmetic between two batch-dependent values")
        other = _sym_entries(b)
        entries = _sym_entries(a)
        if len(other) == 1:
            other = other * len(entries)
        if len(other) != len(entries):
            raise ctx.unsupported("broadcasting a symbolic shape")
        return make_sym([fn(e, o) for e, o in zip(entries, other)], scalar=_is_scalar(a) and _is_scalar(b))

    return rule


def _mul(e: Dim, o: int) -> Dim:
    return e * o


def _div(e: Dim, o: int) -> Dim:
    if isinstance(e, Batch):
        if e.coef % o:
            raise UnsupportedError(f"cannot divide {e.coef} x batch by {o} at import")
        return Batch(e.coef // o)
    return e // o


def _constant_of_shape(ctx: NodeContext) -> Value:
    value = ctx.attr("value")
    fill = np.asarray(value).reshape(-1)[0:1].reshape(()) if value is not None else np.zeros((), np.float32)
    return Fill(tuple(_sym_entries(ctx.value(0))), fill)


def _expand(ctx: NodeContext) -> Value:
    """A uniform constant expanded to a batch-dependent shape (dynamo's zeros initial states) is a Fill."""
    value = ctx.const(0)
    if value is None or value.size == 0 or not (value == value.reshape(-1)[0]).all():
        raise ctx.unsupported("expanding a non-uniform value to a batch-dependent shape")
    entries = _sym_entries(ctx.value(1))
    rank = max(len(entries), value.ndim)
    dims = [1] * (rank - value.ndim) + list(value.shape)
    full = [1] * (rank - len(entries)) + entries
    shape = tuple(e if isinstance(e, Batch) or d == 1 else max(int(e), d) for d, e in zip(dims, full))
    return Fill(shape, value.reshape(-1)[0])


def _same(ctx: NodeContext) -> Value:
    return ctx.value(0)


def _reshape(ctx: NodeContext) -> Value:
    v = ctx.value(0)
    entries = _sym_entries(v)
    target = ctx.require_const(1, "shape")
    if target.size == 0 and len(entries) == 1:
        return make_sym(entries, scalar=True)
    if target.size == 1 and int(target[0]) in (-1, len(entries)):
        return make_sym(entries)
    raise ctx.unsupported(f"reshaping a symbolic shape to {target.tolist()}")


# A batch size no real shape uses: a Fill is evaluated at this size, and the dims that come out as
# multiples of it are the batch-dependent ones.
PROXY_BATCH = 7919
FILL_OPS = frozenset({"Slice", "Gather", "Squeeze", "Unsqueeze", "Reshape", "Expand", "Identity", "Cast", "Concat",
                      "Transpose", "Tile"})


def _fill(ctx: NodeContext, opsets: dict[str, int]) -> Value:
    """A data-moving op on Fill tensors (e.g. slicing zero initial states per layer) is another Fill."""
    if ctx.op_type not in FILL_OPS:
        raise ctx.unsupported("it computes on a batch-sized constant (ConstantOfShape of the batch size)")
    proxies: list[np.ndarray | None] = []
    for i in range(ctx.n_inputs):
        v = ctx.value(i) if ctx.has_input(i) else None
        if isinstance(v, Fill):
            dims = [e.coef * PROXY_BATCH if isinstance(e, Batch) else e for e in v.shape]
            proxies.append(np.broadcast_to(v.value, dims))
        elif isinstance(v, SymShape):
            proxies.append(np.array([e.coef * PROXY_BATCH if isinstance(e, Batch) else e for e in v.entries]))
        else:
            proxies.append(v)  # type: ignore[arg-type]
    fill = next(v for v in map(ctx.value, range(ctx.n_inputs)) if isinstance(v, Fill))
    out = fold_constant(ctx.node, proxies, opsets)[0]
    dims = tuple(Batch(d // PROXY_BATCH) if d and d % PROXY_BATCH == 0 else int(d) for d in out.shape)
    return Fill(dims, fill.value.astype(out.dtype))


SYMBOLIC: dict[str, Callable[[NodeContext], Value]] = {
    "Gather": _gather, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Concat": _concat, "Slice": _slice,
    "Cast": _same, "Identity": _same, "Mul": _arith(_mul), "Div": _arith(_div), "ConstantOfShape": _constant_of_shape,
    "Reshape": _reshape, "Expand": _expand,
}


def fold_symbolic(ctx: NodeContext, opsets: dict[str, int]) -> Value | None:
    """The value of a node that computes on shapes (Shape of a run-time tensor, or ops on a
    SymShape), or None when the node is ordinary run-time work for a converter."""
    if ctx.op_type == "Shape" and ctx.is_dynamic(0):
        return _shape(ctx)
    present = [ctx.value(i) for i in range(ctx.n_inputs) if ctx.has_input(i)]
    if any(isinstance(v, Dyn) for v in present):
        return None
    if any(isinstance(v, Fill) for v in present):
        return _fill(ctx, opsets)
    if not any(isinstance(v, SymShape) for v in present):
        return None
    rule = SYMBOLIC.get(ctx.op_type)
    if rule is None:
        raise ctx.unsupported("it computes on the batch size at run time (a shape computation the importer "
                              "cannot fold); export with a fixed batch size")
    return rule(ctx)
