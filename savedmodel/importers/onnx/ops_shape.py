"""Converters of the shape ops: Reshape, Flatten, Squeeze, Unsqueeze and Transpose.

A reshape keeps the input's layout where it can: a channels-last tensor
flattened before a Gemm becomes a Flatten plus a row permutation of the Gemm's
weights (values.Flat), reshapes that only drop or insert size-1 axes or leave
the permuted axes alone keep the permutation, and reshapes that merge the
batch axis with another regroup IR axes instead (groups.py). Transpose only
changes the layout.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from savedmodel.errors import UnsupportedError
from savedmodel.importers.onnx.context import NodeContext
from savedmodel.importers.onnx.groups import groups_of, make_dyn, regroup, show_dims, split_axes, sym_dim
from savedmodel.importers.onnx.layout import compose, identity
from savedmodel.importers.onnx.registry import converter
from savedmodel.importers.onnx.values import Batch, Dim, Dyn, Flat, SymShape


def _target(ctx: NodeContext, entries: list[Any]) -> tuple[list[int | None], int]:
    """A Reshape target (ONNX semantics: 0 copies, -1 infers) resolved against input 0, and the
    position of the batch axis in it. Refuses targets that merge or split the batch axis."""
    shape = ctx.shape(0)
    batch_axis = ctx.layout(0)[0]
    batch = shape[batch_axis]
    allowzero = int(ctx.attr("allowzero", 0))
    out: list[int | None] = []
    for i, e in enumerate(entries):
        if isinstance(e, Batch):
            if e.coef != 1 or batch is not None:
                raise ctx.unsupported(f"the target shape {_show(entries)} merges the batch axis with other axes")
            out.append(None)
        elif e == 0 and not allowzero:
            out.append(shape[i])
        else:
            out.append(int(e))
    per_item = [d for j, d in enumerate(shape) if j != batch_axis]
    if any(d is None for d in per_item):
        raise ctx.unsupported(f"input shape {list(shape)} has unknown non-batch dims")
    total = math.prod(per_item)  # type: ignore[arg-type]
    if batch is None and None not in out:
        rest = [d for d in out if d != -1]
        if out.count(-1) != 1 or math.prod(rest) != total:  # type: ignore[arg-type]
            raise ctx.unsupported(f"the target shape {_show(entries)} does not keep the batch axis of "
                                  f"input shape {list(shape)}")
        out[out.index(-1)] = None
    if -1 in out:
        known = math.prod(d for d in out if d not in (-1, None))  # type: ignore[misc]
        out[out.index(-1)] = (total * (batch or 1)) // known if known else 0
    position = out.index(None) if batch is None else batch_axis
    if batch is not None and (position >= len(out) or out[position] != batch):
        raise ctx.unsupported(f"the target shape {_show(entries)} changes the batch axis of input shape "
                              f"{list(shape)}; only reshapes that keep the batch axis are supported")
    if math.prod(d for i, d in enumerate(out) if i != position) != total:  # type: ignore[misc]
        raise ctx.unsupported(f"cannot reshape {list(shape)} to {_show(entries)}")
    return out, position


def _show(entries: list[Any]) -> list[Any]:
    return show_dims([e if isinstance(e, Batch) else int(e) for e in entries])


def reshape_to(ctx: NodeContext, target: list[int | None], batch_at: int) -> None:
    """Reshape input 0 to ``target`` whose batch axis is at ``batch_at``, keeping the input's layout
    where the reshape leaves the permuted axes alone (a channels-last flatten permutes the next
    Dense's weight rows instead of the data)."""
    v = ctx.value(0)
    if not isinstance(v, Dyn):
        raise ctx.unsupported("reshaping a value that is not a run-time tensor")
    shape = ctx.shape(0)
    perm = ctx.layout(0)
    if v.flat is None and len(target) == 2 and batch_at == 0 and perm[0] == 0 and perm != identity(len(perm)):
        flat = ctx.emit("Flatten", [v.ir])
        order = np.arange(math.prod(shape[1:])).reshape(shape[1:]).transpose([p - 1 for p in perm[1:]]).ravel()
        if np.array_equal(order, np.arange(order.size)):
            ctx.set_output(0, flat)
        else:
            ctx.set_value(0, Dyn(flat, (0, 1), Flat(order, v)))
        return
    unit = _unit_axes_layout(shape, target, perm, batch_at)
    if unit is not None:
        new_ir = [target[a] for a in unit]
        same = list(new_ir) == list(ctx.ir_shape(v.ir))
        y = v.ir if same else ctx.emit("Reshape", [v.ir], {"target_shape": [int(d) for d in new_ir[1:]]})
        ctx.set_output(0, y, unit)
        return
    keep = _kept_prefix(shape, target, perm)
    if keep and batch_at < keep:
        new_ir = [*ctx.ir_shape(v.ir)[:keep], *target[keep:]]
        y = ctx.emit("Reshape", [v.ir], {"target_shape": [int(d) for d in new_ir[1:]]})  # type: ignore[arg-type]
        ctx.set_output(0, y, (*perm[:keep], *range(keep, len(target))))
        return
    if perm[0] != 0 or batch_at != 0:
        raise ctx.unsupported(f"reshaping {list(shape)} to {target} moves the batch axis")
    y = ctx.emit("Reshape", [ctx.input(0)], {"target_shape": [int(d) for d in target[1:]]})  # type: ignore[arg-type]
    ctx.set_output(0, y)


def _unit_axes_layout(shape, target, perm, batch_at) -> tuple[int, ...] | None:
    """When the reshape only drops or inserts size-1 axes, the layout of its output that keeps the
    input's IR axis order (new unit axes go last); None for any other reshape."""
    batch_axis = perm[0]
    kept_in = [i for i, d in enumerate(shape) if d != 1 or i == batch_axis]
    kept_out = [j for j, d in enumerate(target) if d != 1 or j == batch_at]
    if [shape[i] for i in kept_in] != [target[j] for j in kept_out] or len(kept_in) != len(kept_out):
        return None
    moved = dict(zip(kept_in, kept_out))
    if moved.get(batch_axis) != batch_at:
        return None
    order = [moved[p] for p in perm if p in moved]
    return (*order, *(j for j in range(len(target)) if j not in kept_out))


def _kept_prefix(shape, target, perm) -> int:
    """How many leading axes a permuted tensor's reshape leaves alone (0: transpose back first)."""
    if perm == identity(len(perm)):
        return 0
    k = 0
    while k < min(len(shape), len(target)) and shape[k] == target[k]:
        k += 1
    while k > 0 and any(p >= k for p in perm[:k]):
        k -= 1
    if k == 0 or any(perm[j] != j for j in range(k, len(perm))):
        return 0
    return k


@converter("Reshape")
def reshape(ctx: NodeContext) -> None:
    raw = ctx.value(1)
    if isinstance(raw, SymShape):
        entries: list[Any] = list(raw.entries)
    else:
        entries = [int(e) for e in ctx.require_const(1, "shape").reshape(-1)]
    reshape_entries(ctx, entries)


def reshape_entries(ctx: NodeContext, entries: list[Any]) -> None:
    """Reshape input 0 to ONNX target ``entries`` (ints with 0 and -1, Batch multiples): as a batch-keeping
    IR Reshape when possible, else by regrouping IR axes (groups.py)."""
    dyn = ctx.dyn(0)
    if dyn is None or dyn.groups is None:
        try:
            reshape_to(ctx, *_target(ctx, entries))
            return
        except UnsupportedError as first:
            if dyn is None:
                raise
            error = first
    try:
        _grouped_reshape(ctx, dyn, entries)
    except UnsupportedError:
        if dyn.groups is None:
            raise error from None
        raise


def _grouped_reshape(ctx: NodeContext, dyn: Dyn, entries: list[Any]) -> None:
    ir_shape = ctx.ir_shape(dyn.ir)
    groups = groups_of(dyn)
    dims = [sym_dim(ir_shape, g) for g in groups]
    target = _resolve(ctx, entries, dims)
    try:
        new_groups, splits = regroup(ir_shape, groups, target)
    except ValueError as e:
        raise ctx.unsupported(f"cannot reshape {_show(dims)} to {_show(entries)}: {e}") from e
    ir, rank = dyn.ir, len(ir_shape)
    if splits:
        new_shape, new_groups = split_axes(ir_shape, new_groups, splits)
        ir = ctx.emit("Reshape", [ir], {"target_shape": [int(d) for d in new_shape[1:]]})
        rank = len(new_shape)
    ctx.set_dyn(0, make_dyn(ir, new_groups, rank))


def _resolve(ctx: NodeContext, entries: list[Any], dims: list[Dim]) -> list[Dim]:
    """ONNX's 0 (copy) and -1 (infer) resolved against dims that may be batch multiples."""
    def split(d: Dim) -> tuple[int, int]:
        return (d.coef, 1) if isinstance(d, Batch) else (int(d), 0)

    allowzero = int(ctx.attr("allowzero", 0))
    out: list[Any] = [dims[i] if (not isinstance(e, Batch) and e == 0 and not allowzero) else e
                      for i, e in enumerate(entries)]
    if -1 in [e for e in out if not isinstance(e, Batch)]:
        total = [split(d) for d in dims]
        known = [split(d) for d in out if isinstance(d, Batch) or d != -1]
        coef = math.prod(c for c, _ in total) // max(math.prod(c for c, _ in known), 1)
        power = sum(p for _, p in total) - sum(p for _, p in known)
        if power not in (0, 1):
            raise ctx.unsupported(f"cannot infer the -1 of target {_show(entries)}")
        out[[i for i, e in enumerate(out) if not isinstance(e, Batch) and e == -1][0]] = Batch(coef) if power else coef
    return out


@converter("Flatten")
def flatten(ctx: NodeContext) -> None:
    shape = ctx.shape(0)
    axis = int(ctx.attr("axis", 1)) % max(len(shape), 1)
    if axis == 0 or ctx.layout(0)[0] != 0 or any(d != 1 for d in shape[1:axis]):
        raise ctx.unsupported(f"axis={axis} on shape {list(shape)} would merge the batch axis")
    rest = shape[axis:]
    if any(d is None for d in rest):
        raise ctx.unsupported(f"input shape {list(shape)} has unknown non-batch dims")
    target = [shape[0], math.prod(rest)]  # type: ignore[arg-type]
    if axis != 1:
        target = [shape[0], *shape[1:axis], math.prod(rest)]  # type: ignore[arg-type,list-item]
    reshape_to(ctx, target, 0)  # type: ignore[arg-type]


@converter("Squeeze")
def squeeze(ctx: NodeContext) -> None:
    shape = ctx.shape(0)
    axes = ctx.const(1) if ctx.has_input(1) else ctx.attr("axes")
    rank = len(shape)
    drop = {int(a) % rank for a in axes} if axes is not None else {i for i, d in enumerate(shape) if d == 1}
    dyn = ctx.dyn(0)
    if dyn is not None and dyn.groups is not None:
        _grouped_reshape(ctx, dyn, [d for i, d in enumerate(_sym_shape(ctx, dyn)) if i not in drop])
        return
    batch_axis = ctx.layout(0)[0]
    if batch_axis in drop:
        raise ctx.unsupported("squeezing the batch axis")
    reshape_to(ctx, [d for i, d in enumerate(shape) if i not in drop], batch_axis - sum(a < batch_axis for a in drop))


@converter("Unsqueeze")
def unsqueeze(ctx: NodeContext) -> None:
    axes = ctx.const(1) if ctx.has_input(1) else ctx.attr("axes")
    dyn = ctx.dyn(0)
    if dyn is not None and dyn.groups is not None:
        dims = _sym_shape(ctx, dyn)
        for a in sorted(int(a) % (len(dims) + len(axes)) for a in axes):
            dims.insert(a, 1)
        _grouped_reshape(ctx, dyn, dims)
        return
    shape: list[Any] = list(ctx.shape(0))
    batch_axis = ctx.layout(0)[0]
    shape[batch_axis] = "batch"
    rank = len(shape) + len(axes)
    for a in sorted(int(a) % rank for a in axes):
        shape.insert(a, 1)
    batch_at = shape.index("batch")
    shape[batch_at] = ctx.shape(0)[batch_axis]
    reshape_to(ctx, shape, batch_at)


def _sym_shape(ctx: NodeContext, dyn: Dyn) -> list[Any]:
    shape = ctx.ir_shape(dyn.ir)
    return [sym_dim(shape, g) for g in groups_of(dyn)]


@converter("Transpose")
def transpose(ctx: NodeContext) -> None:
    """Only the layout changes: no node is emitted."""
    v = ctx.value(0)
    rank = ctx.rank(0)
    perm = tuple(int(p) for p in ctx.attr("perm", list(range(rank))[::-1]))
    if not isinstance(v, Dyn):
        raise ctx.unsupported("transposing a value that is not a run-time tensor")
    if v.flat is not None:
        v = Dyn(ctx.input(0), identity(rank))
    if v.groups is not None:
        ctx.set_dyn(0, make_dyn(v.ir, tuple(v.groups[p] for p in perm), len(ctx.ir_shape(v.ir))))
        return
    ctx.set_value(0, Dyn(v.ir, compose(v.perm, perm)))
