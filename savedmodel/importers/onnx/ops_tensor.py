"""Converters of the tensor ops: joining, slicing, gathers, padding, resizing, casts and reductions.

Axis attributes are mapped through the input's layout (layout.py), so these
ops work on channels-last tensors without transposing them back.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import helper

from savedmodel.dtypes import as_dtype
from savedmodel.importers.onnx.context import NodeContext
from savedmodel.importers.onnx.groups import (
    make_dyn,
    single_axis,
)
from savedmodel.importers.onnx.layout import channels_last, identity, ir_axis
from savedmodel.importers.onnx.registry import converter
from savedmodel.importers.onnx.values import Batch, SymShape

# -- joining and slicing ---------------------------------------------------------------------

def _common_layout(ctx: NodeContext, indices: list[int]) -> tuple[int, ...]:
    """The layout shared by every run-time input among ``indices`` of one rank, else identity."""
    rank = max(ctx.rank(i) for i in indices)
    layouts = {ctx.layout(i) for i in indices if ctx.is_dynamic(i)}
    if len(layouts) == 1 and all(ctx.rank(i) == rank for i in indices if ctx.is_dynamic(i)):
        return layouts.pop()
    return identity(rank)


@converter("Concat")
def concat(ctx: NodeContext) -> None:
    present = [i for i in range(ctx.n_inputs) if ctx.has_input(i)]
    perm = _common_layout(ctx, present)
    axis = int(ctx.attr("axis")) % len(perm)
    if ir_axis(axis, perm) == 0:
        raise ctx.unsupported("concatenating along the batch axis")
    parts = [ctx.input_as(i, perm) for i in present if math.prod(ctx.shape(i)[1:] or (1,)) != 0]
    ctx.set_output(0, ctx.emit("Concatenate", parts, {"axis": ir_axis(axis, perm)}), perm)


def _slice_node(ctx: NodeContext, x: str, perm: tuple[int, ...], starts, ends, axes, steps, suffix="") -> str:
    ir_axes = [ir_axis(int(a), perm) for a in axes]
    if 0 in ir_axes:
        raise ctx.unsupported("slicing the batch axis")
    clamp = [int(max(min(e, 2**62), -(2**62))) for e in ends]
    return ctx.emit("Slice", [x], {"starts": [int(s) for s in starts], "ends": clamp, "axes": ir_axes,
                                   "steps": [int(s) for s in steps]}, suffix=suffix)


@converter("Slice")
def slice_(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    starts, ends = ctx.require_const(1, "starts"), ctx.require_const(2, "ends")
    axes = ctx.const(3) if ctx.has_input(3) else np.arange(len(starts))
    steps = ctx.const(4) if ctx.has_input(4) else np.ones(len(starts), np.int64)
    if axes is None or steps is None:
        raise ctx.unsupported("its axes / steps are computed at run time")
    keep = [i for i, a in enumerate(axes) if int(a) % rank != 0 or not _is_full(starts[i], ends[i], steps[i])]
    perm = ctx.layout(0)
    x = ctx.input_as(0, perm)
    if not keep:
        ctx.set_output(0, ctx.emit("Identity", [x]), perm)
        return
    y = _slice_node(ctx, x, perm, starts[keep], ends[keep], [int(axes[i]) % rank for i in keep], steps[keep])
    ctx.set_output(0, y, perm)


def _is_full(start, end, step) -> bool:
    return int(step) == 1 and int(start) == 0 and int(end) >= 2**31 - 1


@converter("Split")
def split(ctx: NodeContext) -> None:
    shape = ctx.shape(0)
    axis = int(ctx.attr("axis", 0)) % len(shape)
    sizes = ctx.const(1) if ctx.has_input(1) else ctx.attr("split")
    n_out = len(ctx.node.output)
    if sizes is None:
        total = shape[axis]
        if total is None:
            raise ctx.unsupported("splitting an axis of unknown size")
        n = int(ctx.attr("num_outputs", n_out))
        chunk = -(-total // n)
        sizes = [min(chunk, total - i * chunk) for i in range(n)]
    perm = ctx.layout(0)
    x = ctx.input_as(0, perm)
    start = 0
    for i, size in enumerate(int(s) for s in sizes):
        if ctx.output_used(i):
            ctx.set_output(i, _slice_node(ctx, x, perm, [start], [start + size], [axis], [1], f"/{i}"), perm)
        start += size


@converter("Gather")
def gather(ctx: NodeContext) -> None:
    """Rows of a constant float table by run-time ids (nn.Embedding) become the IR's Embedding (ids must be
    in [0, rows): ONNX's negative ids are refused at run time); other gathers the IR's Gather."""
    axis = int(ctx.attr("axis", 0))
    data, idx = ctx.const(0), ctx.const(1)
    if data is not None and axis == 0 and data.ndim == 2 and data.dtype.kind == "f" and ctx.is_dynamic(1):
        rows, cols = data.shape
        y = ctx.emit("Embedding", [ctx.input(1)], {"input_dim": int(rows), "output_dim": int(cols)},
                     {"embeddings": data.astype(np.float32)})
        ctx.set_output(0, y)
        return
    rank = ctx.rank(0)
    axis %= rank
    dyn = ctx.dyn(0)
    if dyn is not None and dyn.groups is not None and idx is not None and idx.ndim == 0:
        at = single_axis(dyn.groups, axis, "Gather")
        y = ctx.emit("Gather", [dyn.ir, ctx.input(1)], {"axis": at})
        groups = tuple(tuple(a - (a > at) for a in g) for k, g in enumerate(dyn.groups) if k != axis)
        ctx.set_dyn(0, make_dyn(y, groups, len(ctx.ir_shape(y))))
        return
    perm = ctx.layout(0) if idx is not None and idx.ndim <= 1 else identity(rank)
    if ir_axis(axis, perm) == 0 and ctx.is_dynamic(0):
        raise ctx.unsupported("gathering along the batch axis")
    y = ctx.emit("Gather", [ctx.input_as(0, perm), ctx.input(1)], {"axis": ir_axis(axis, perm)})
    if idx is not None and idx.ndim == 0:
        gone = ir_axis(axis, perm)
        perm = tuple(p - (p > axis) for j, p in enumerate(perm) if j != gone)
    ctx.set_output(0, y, perm if idx is not None and idx.ndim <= 1 else None)


@converter("Pad")
def pad(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    pads = ctx.const(1) if ctx.has_input(1) else ctx.attr("pads")
    if pads is None:
        raise ctx.unsupported("its pads are computed at run time")
    pads = [int(p) for p in pads]
    axes = ctx.const(3) if ctx.has_input(3) else np.arange(rank)
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(int(a) % rank for a in axes):
        begin[a], end[a] = pads[i], pads[i + len(axes)]
    if begin[0] or end[0]:
        raise ctx.unsupported("padding the batch axis")
    value = ctx.const(2)
    fill = float(value) if value is not None and value.size else 0.0
    mode = ctx.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.unsupported(f"mode={mode!r}; supported modes are constant, reflect, edge and wrap")
    perm = ctx.layout(0) if rank < 3 or ctx.layout(0) != identity(rank) else channels_last(rank)
    x = ctx.input_as(0, perm)
    ir_begin, ir_end = [begin[p] for p in perm], [end[p] for p in perm]
    if mode == "constant" and fill == 0.0 and rank == 4 and perm == channels_last(4) and not ir_begin[3] + ir_end[3]:
        y = ctx.emit("ZeroPadding2D", [x], {"padding": [[ir_begin[1], ir_end[1]], [ir_begin[2], ir_end[2]]]})
    else:
        y = ctx.emit("Pad", [x], {"pads": ir_begin + ir_end, "mode": mode, "value": fill})
    ctx.set_output(0, y, perm)


@converter("Resize", "Upsample")
def resize(ctx: NodeContext) -> None:
    shape = ctx.shape(0)
    if len(shape) != 4:
        raise ctx.unsupported(f"input shape {list(shape)}; Resize supports NCHW images only")
    scales = ctx.const(2) if ctx.has_input(2) else ctx.const(1) if ctx.op_type == "Upsample" else None
    sizes = ctx.const(3) if ctx.has_input(3) else None
    if scales is not None and scales.size == 0:
        scales = None
    axes = ctx.attr("axes")
    if axes is not None:
        scales, sizes = _all_axes(scales, axes, 1.0), _all_axes(sizes, axes, 0)
        if sizes is not None:
            sizes[1] = shape[1]
    if (scales is not None and (scales[0] != 1 or scales[1] != 1)) or (sizes is not None and sizes[1] != shape[1]):
        raise ctx.unsupported("resizing the batch or channel axis")
    mode = ctx.attr("mode", "nearest")
    coord = ctx.attr("coordinate_transformation_mode", "half_pixel")
    nearest = ctx.attr("nearest_mode", "round_prefer_floor")
    perm = channels_last(4)
    x = ctx.input_as(0, perm)
    if (mode == "nearest" and scales is not None and coord == "asymmetric" and nearest == "floor"
            and all(float(s).is_integer() for s in scales[2:])):
        y = ctx.emit("UpSampling2D", [x], {"size": [int(s) for s in scales[2:]], "interpolation": "nearest"})
    else:
        y = ctx.emit("Resize", [x], {
            "size": None if sizes is None else [int(s) for s in sizes[2:]],
            "scale": None if scales is None else [float(s) for s in scales[2:]],
            "mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest,
            "cubic_coeff_a": float(ctx.attr("cubic_coeff_a", -0.75)),
            "exclude_outside": bool(ctx.attr("exclude_outside", 0)), "antialias": bool(ctx.attr("antialias", 0))})
    ctx.set_output(0, y, perm)


def _all_axes(values: np.ndarray | None, axes: list[int], fill: float) -> np.ndarray | None:
    """Resize's per-axis scales or sizes given for ``axes`` only, spread over the 4 NCHW axes."""
    if values is None:
        return None
    full = np.full(4, fill, values.dtype)
    for a, v in zip(axes, values):
        full[a % 4] = v
    return full


@converter("Expand")
def expand(ctx: NodeContext) -> None:
    raw = ctx.value(1)
    entries = list(raw.entries) if isinstance(raw, SymShape) else [int(e) for e in ctx.require_const(1, "shape")]
    target = [-1 if isinstance(e, Batch) else int(e) for e in entries]
    ctx.set_output(0, ctx.emit("Expand", [ctx.input(0)], {"shape": target}))


@converter("Tile")
def tile(ctx: NodeContext) -> None:
    repeats = [int(r) for r in ctx.require_const(1, "repeats")]
    if repeats and repeats[0] != 1 and ctx.is_dynamic(0):
        raise ctx.unsupported("tiling the batch axis")
    perm = ctx.layout(0)
    y = ctx.emit("Tile", [ctx.input_as(0, perm)], {"repeats": [repeats[p] for p in perm]})
    ctx.set_output(0, y, perm)


@converter("Cast", "CastLike")
def cast(ctx: NodeContext) -> None:
    if ctx.op_type == "CastLike":
        to = ctx.dtype(1)
    else:
        to = as_dtype(helper.tensor_dtype_to_np_dtype(int(ctx.attr("to"))))
    perm = ctx.layout(0)
    x = ctx.input_as(0, perm)
    y = ctx.emit("Identity", [x]) if ctx.dtype(0) == to else ctx.emit("Cast", [x], {"to": to})
    ctx.set_output(0, y, perm)


# -- reductions ----------------------------------------------------------------------------

REDUCTIONS = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min",
              "ReduceProd": "prod", "ReduceL1": "l1", "ReduceL2": "l2", "ReduceLogSumExp": "log_sum_exp",
              "ReduceSumSquare": "sum_square"}


def _reduced_layout(perm: tuple[int, ...], axes: list[int], keepdims: bool) -> tuple[int, ...]:
    """The layout of a reduction's output given its input layout."""
    if keepdims:
        return perm
    kept = [p for p in perm if p not in axes]
    return tuple(sorted(kept).index(p) for p in kept)


@converter(*REDUCTIONS)
def reduce(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    axes = ctx.attr("axes")
    if ctx.has_input(1):
        axes = ctx.require_const(1, "axes").tolist()
    keepdims = bool(ctx.attr("keepdims", 1))
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            ctx.set_value(0, ctx.value(0))
            return
        axes = list(range(rank))
    axes = sorted(int(a) % rank for a in axes)
    perm = ctx.layout(0)
    ir_axes = sorted(ir_axis(a, perm) for a in axes)
    if 0 in ir_axes and ctx.is_dynamic(0):
        raise ctx.unsupported("reducing over the batch axis")
    y = ctx.emit("Reduce", [ctx.input_as(0, perm)],
                 {"function": REDUCTIONS[ctx.op_type], "axes": ir_axes, "keepdims": keepdims})
    ctx.set_output(0, y, _reduced_layout(perm, axes, keepdims))


@converter("ArgMax", "ArgMin")
def arg_reduce(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    axis = int(ctx.attr("axis", 0)) % rank
    keepdims = bool(ctx.attr("keepdims", 1))
    perm = ctx.layout(0)
    if ir_axis(axis, perm) == 0:
        raise ctx.unsupported("reducing over the batch axis")
    y = ctx.emit(ctx.op_type, [ctx.input_as(0, perm)], {
        "axis": ir_axis(axis, perm), "keepdims": keepdims, "select_last_index": bool(ctx.attr("select_last_index", 0))})
    ctx.set_output(0, y, _reduced_layout(perm, [axis], keepdims))


@converter("TopK")
def top_k(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    axis = int(ctx.attr("axis", -1)) % rank
    perm = ctx.layout(0)
    if ir_axis(axis, perm) == 0:
        raise ctx.unsupported("selecting along the batch axis")
    k = int(np.asarray(ctx.require_const(1, "k")).reshape(-1)[0])
    values, indices = ctx.emit("TopK", [ctx.input_as(0, perm)], {
        "k": k, "axis": ir_axis(axis, perm), "largest": bool(ctx.attr("largest", 1)),
        "sorted": bool(ctx.attr("sorted", 1))})
    ctx.set_output(0, values, perm)
    ctx.set_output(1, indices, perm)


@converter("CumSum")
def cumsum(ctx: NodeContext) -> None:
    axis = int(ctx.require_const(1, "axis")) % ctx.rank(0)
    perm = ctx.layout(0)
    y = ctx.emit("CumSum", [ctx.input_as(0, perm)], {"axis": ir_axis(axis, perm), "exclusive": bool(
        ctx.attr("exclusive", 0)), "reverse": bool(ctx.attr("reverse", 0))})
    ctx.set_output(0, y, perm)


@converter("Einsum")
def einsum(ctx: NodeContext) -> None:
    inputs = [ctx.input(i) for i in range(ctx.n_inputs)]
    ctx.set_output(0, ctx.emit("Einsum", inputs, {"equation": ctx.attr("equation").replace(" ", "")}))


def transposed_constant(value: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    """A constant broadcast against a tensor stored in ``perm``: same rank, same transpose."""
    rank = len(perm)
    full = value.reshape((1,) * (rank - value.ndim) + value.shape) if value.ndim < rank else value
    return full.transpose(perm)


