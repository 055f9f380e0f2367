"""Converters of the neural-network ops: convolutions, pooling, normalisation, Gemm and MatMul.

Convolutions, pooling and batch norm run channels-last: their input is asked
for in the channels-last layout and their output stays in it (layout.py).
"""

from __future__ import annotations

import math

import numpy as np

from savedmodel.importers.onnx.context import NodeContext
from savedmodel.importers.onnx.groups import groups_of, make_dyn, single_axis
from savedmodel.importers.onnx.layout import channels_last, identity, ir_axis
from savedmodel.importers.onnx.registry import converter
from savedmodel.importers.onnx.values import Dyn

# -- geometry ------------------------------------------------------------------------

def _spatial_attrs(ctx: NodeContext, kernel: list[int]) -> tuple[list[int], list[int], list[int], list[int]]:
    """(strides, dilations, pads begin, pads end) of a conv or pool node."""
    rank = len(kernel)
    strides = list(ctx.attr("strides", [1] * rank))
    dilations = list(ctx.attr("dilations", [1] * rank))
    pads = list(ctx.attr("pads", [0] * 2 * rank))
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        dims = ctx.shape(0)[2:]
        if any(d is None for d in dims):
            raise ctx.unsupported(f"auto_pad={auto} needs known spatial dims, got {list(dims)}")
        begin, end = [], []
        for n, k, s, d in zip(dims, kernel, strides, dilations):
            lo, hi = _same_pads(n, k, s, d)  # type: ignore[arg-type]
            begin.append(lo if auto == "SAME_UPPER" else hi)
            end.append(hi if auto == "SAME_UPPER" else lo)
        return strides, dilations, begin, end
    if auto == "VALID":
        pads = [0] * 2 * rank
    return strides, dilations, pads[:rank], pads[rank:]


def _same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """The pads Keras' 'same' padding applies to a dim of length n (smaller half first)."""
    total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _padding_mode(dims: tuple[int | None, ...], kernel: list[int], strides: list[int], dilations: list[int],
                  begin: list[int], end: list[int]) -> str | None:
    """'valid' or 'same' when the explicit pads equal one of them, else None (pad explicitly)."""
    if not any(begin) and not any(end):
        return "valid"
    for n, k, s, d, lo, hi in zip(dims, kernel, strides, dilations, begin, end):
        if n is None:
            if s != 1 or ((k - 1) * d) // 2 != lo or (k - 1) * d - lo != hi:
                return None
        elif _same_pads(n, k, s, d) != (lo, hi):
            return None
    return "same"


def _explicit_pad(ctx: NodeContext, x: str, begin: list[int], end: list[int], fill: float) -> str:
    """Pad the spatial axes of channels-last x (zeros by ZeroPadding, other fills by Pad)."""
    rank = len(begin)
    if fill == 0.0 and rank in (1, 2):
        op = f"ZeroPadding{rank}D"
        padding = [begin[0], end[0]] if rank == 1 else [[begin[0], end[0]], [begin[1], end[1]]]
        return ctx.emit(op, [x], {"padding": padding}, suffix="/pad")
    pads = [0, *begin, 0] + [0, *end, 0]
    return ctx.emit("Pad", [x], {"pads": pads, "mode": "constant", "value": fill}, suffix="/pad")


def _check_rank(ctx: NodeContext, ranks: tuple[int, ...]) -> int:
    rank = ctx.rank(0)
    if rank not in ranks:
        raise ctx.unsupported(f"input rank {rank} (shape {list(ctx.shape(0))}); supported ranks are {list(ranks)}")
    return rank


# -- convolutions --------------------------------------------------------------------

@converter("Conv")
def conv(ctx: NodeContext) -> None:
    rank = _check_rank(ctx, (3, 4))
    w = ctx.require_const(1, "weight")
    bias = ctx.const(2)
    if ctx.has_input(2) and bias is None:
        raise ctx.unsupported("its bias is computed at run time")
    kernel = list(ctx.attr("kernel_shape", w.shape[2:]))
    strides, dilations, begin, end = _spatial_attrs(ctx, kernel)
    groups = int(ctx.attr("group", 1))
    perm = channels_last(rank)
    x = ctx.input_as(0, perm)
    dims = ctx.shape(0)[2:]
    padding = _padding_mode(dims, kernel, strides, dilations, begin, end)
    if padding is None:
        x, padding = _explicit_pad(ctx, x, begin, end, 0.0), "valid"
    cin, filters = w.shape[1] * groups, w.shape[0]
    attrs = {"kernel_size": kernel, "strides": strides, "padding": padding, "dilation_rate": dilations,
             "use_bias": bias is not None, "activation": "linear"}
    weights = {} if bias is None else {"bias": bias.astype(np.float32)}
    if rank == 4 and groups == cin and groups > 1 and w.shape[1] == 1:
        mult = filters // cin
        weights["kernel"] = w.reshape(cin, mult, *kernel).transpose(2, 3, 0, 1)
        y = ctx.emit("DepthwiseConv2D", [x], {**attrs, "depth_multiplier": mult}, weights)
    else:
        order = (*range(2, rank), 1, 0)
        weights["kernel"] = w.transpose(order)
        y = ctx.emit(f"Conv{rank - 2}D", [x], {**attrs, "filters": filters, "groups": groups}, weights)
    ctx.set_output(0, y, perm)


@converter("ConvTranspose")
def conv_transpose(ctx: NodeContext) -> None:
    _check_rank(ctx, (4,))
    w = ctx.require_const(1, "weight")
    bias = ctx.const(2)
    if int(ctx.attr("group", 1)) != 1:
        raise ctx.unsupported(f"group={ctx.attr('group')}; only group=1 is supported")
    if ctx.attr("output_shape") is not None or ctx.attr("auto_pad", "NOTSET") != "NOTSET":
        raise ctx.unsupported("output_shape / auto_pad are not supported; give explicit pads")
    kernel = list(ctx.attr("kernel_shape", w.shape[2:]))
    strides, dilations, begin, end = _spatial_attrs(ctx, kernel)
    out_pad = list(ctx.attr("output_padding", [0, 0]))
    perm = channels_last(4)
    weights = {"kernel": w.transpose(2, 3, 1, 0)}
    if bias is not None:
        weights["bias"] = bias.astype(np.float32)
    y = ctx.emit("Conv2DTranspose", [ctx.input_as(0, perm)], {
        "filters": int(w.shape[1]), "kernel_size": kernel, "strides": strides, "padding": "valid",
        "dilation_rate": dilations, "use_bias": bias is not None, "output_padding": out_pad}, weights)
    if any(begin) or any(end):
        y = ctx.emit("Cropping2D", [y], {"cropping": [[begin[0], end[0]], [begin[1], end[1]]]}, suffix="/crop")
    ctx.set_output(0, y, perm)


# -- pooling ---------------------------------------------------------------------------

@converter("MaxPool", "AveragePool")
def pool(ctx: NodeContext) -> None:
    rank = _check_rank(ctx, (3, 4))
    if ctx.output_used(1):
        raise ctx.unsupported("its Indices output is used")
    kernel = list(ctx.attr("kernel_shape"))
    strides, dilations, begin, end = _spatial_attrs(ctx, kernel)
    if any(d != 1 for d in dilations):
        raise ctx.unsupported(f"dilations {dilations}; pooling supports dilation 1 only")
    dims = ctx.shape(0)[2:]
    if ctx.attr("ceil_mode", 0):
        _check_ceil_mode(ctx, dims, kernel, strides, begin, end)
    perm = channels_last(rank)
    x = ctx.input_as(0, perm)
    padding = _padding_mode(dims, kernel, strides, [1] * len(kernel), begin, end)
    is_max = ctx.op_type == "MaxPool"
    include_pad = bool(ctx.attr("count_include_pad", 0))
    if padding == "same" and not is_max and include_pad:
        padding = None
    if padding is None:
        if not is_max and not include_pad:
            raise ctx.unsupported("count_include_pad=0 with pads other than Keras' 'same' padding")
        x, padding = _explicit_pad(ctx, x, begin, end, -np.inf if is_max else 0.0), "valid"
    op = f"{'Max' if is_max else 'Average'}Pooling{rank - 2}D"
    y = ctx.emit(op, [x], {"pool_size": kernel, "strides": strides, "padding": padding})
    ctx.set_output(0, y, perm)


def _check_ceil_mode(ctx: NodeContext, dims, kernel, strides, begin, end) -> None:
    """ceil_mode=1 is accepted when it gives the same output size as floor."""
    for n, k, s, lo, hi in zip(dims, kernel, strides, begin, end):
        if n is None or (n + lo + hi - k) % s:
            raise ctx.unsupported("ceil_mode=1 changes the output size here; only floor rounding is supported")


@converter("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: NodeContext) -> None:
    rank = _check_rank(ctx, (3, 4))
    perm = channels_last(rank)
    kind = "Average" if ctx.op_type == "GlobalAveragePool" else "Max"
    y = ctx.emit(f"Global{kind}Pooling{rank - 2}D", [ctx.input_as(0, perm)], {"keepdims": True})
    ctx.set_output(0, y, perm)


# -- normalisation ------------------------------------------------------------------

@converter("BatchNormalization")
def batch_norm(ctx: NodeContext) -> None:
    if ctx.attr("training_mode", 0) or any(ctx.output_used(i) for i in (1, 2)):
        raise ctx.unsupported("training mode (running statistics outputs) is not inference")
    scale, beta, mean, var = (ctx.require_const(i, what) for i, what in
                              ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
    perm = channels_last(ctx.rank(0))
    attrs = {"axis": -1, "epsilon": float(ctx.attr("epsilon", 1e-5))}
    y = ctx.emit("BatchNormalization", [ctx.input_as(0, perm)], attrs,
                 {"gamma": scale, "beta": beta, "moving_mean": mean, "moving_variance": var})
    ctx.set_output(0, y, perm)


@converter("LayerNormalization")
def layer_norm(ctx: NodeContext) -> None:
    if any(ctx.output_used(i) for i in (1, 2)):
        raise ctx.unsupported("its Mean / InvStdDev outputs are used")
    rank = ctx.rank(0)
    axis = int(ctx.attr("axis", -1)) % rank
    perm = ctx.layout(0)
    axes = [ir_axis(a, perm) for a in range(axis, rank)]
    dyn = ctx.dyn(0)
    grouped = dyn is not None and dyn.groups is not None and axis == rank - 1
    if grouped:
        axes = [single_axis(dyn.groups, axis, "LayerNormalization")]  # type: ignore[union-attr,arg-type]
    elif axes != sorted(axes):
        perm, axes = identity(rank), list(range(axis, rank))
    scale = ctx.require_const(1, "scale")
    bias = ctx.const(2)
    dims = ctx.shape(0)[axis:]
    weights = {"gamma": np.broadcast_to(scale, dims).astype(np.float32)}
    if bias is not None:
        weights["beta"] = np.broadcast_to(bias, dims).astype(np.float32)
    x = dyn.ir if grouped else ctx.input_as(0, perm)  # type: ignore[union-attr]
    y = ctx.emit("LayerNormalization", [x], {
        "axis": axes, "epsilon": float(ctx.attr("epsilon", 1e-5)), "center": bias is not None, "scale": True},
        weights)
    if grouped:
        ctx.set_output_like(0, y, dyn)  # type: ignore[arg-type]
    else:
        ctx.set_output(0, y, perm)


# -- dense ------------------------------------------------------------------------------

def _dense_input(ctx: NodeContext) -> tuple[str, np.ndarray | None, Dyn]:
    """Input 0 for a Dense on its last axis: (IR tensor, feature order of a flattened input, the layout
    template of the output)."""
    v = ctx.value(0)
    if isinstance(v, Dyn) and v.flat is not None:
        return v.ir, v.flat.order, Dyn(v.ir, (0, 1))
    if isinstance(v, Dyn) and v.groups is not None:
        v = _merge_last_group(ctx, v)
        last = single_axis(v.groups, -1, "a matrix product")  # type: ignore[arg-type]
        rank = len(ctx.ir_shape(v.ir))
        order = (*(a for a in range(rank) if a != last), last)
        x = ctx.emitter.as_layout(Dyn(v.ir, identity(rank)), order, ctx.name)
        number = {a: i for i, a in enumerate(order)}
        return x, None, Dyn(x, (), None, tuple(tuple(number[a] for a in g) for g in v.groups))
    perm = ctx.layout(0)
    if perm[-1] != len(perm) - 1:
        perm = identity(len(perm))
    x = ctx.input_as(0, perm)
    return x, None, Dyn(x, perm)


def _merge_last_group(ctx: NodeContext, dyn: Dyn) -> Dyn:
    """A grouped tensor whose last ONNX axis is one IR axis, the last: transposes the IR axes of the
    last group to the end and merges them with a Reshape when it holds several."""
    groups = dyn.groups or ()
    last = groups[-1]
    if len(last) <= 1:
        return dyn
    rank = len(ctx.ir_shape(dyn.ir))
    order = (*(a for a in range(rank) if a not in last), *last)
    moved = ctx.emitter.as_layout(Dyn(dyn.ir, identity(rank)), order, ctx.name)
    shape = ctx.ir_shape(moved)
    keep = rank - len(last)
    merged = math.prod(shape[keep:])  # type: ignore[arg-type]
    y = ctx.emit("Reshape", [moved], {"target_shape": [*shape[1:keep], merged]}, suffix="/merge")
    number = {a: i for i, a in enumerate(order)}
    new = tuple(tuple(number[a] for a in g) for g in groups[:-1]) + ((keep,),)
    return Dyn(y, (), None, new)


@converter("Gemm")
def gemm(ctx: NodeContext) -> None:
    if ctx.attr("transA", 0):
        raise ctx.unsupported("transA=1 (the batch axis would be transposed)")
    b = ctx.require_const(1, "B matrix")
    kernel = (b.T if ctx.attr("transB", 0) else b) * np.float32(ctx.attr("alpha", 1.0))
    c = ctx.const(2)
    if ctx.has_input(2) and c is None:
        raise ctx.unsupported("its C input is computed at run time")
    units = kernel.shape[1]
    weights = {"kernel": kernel.astype(np.float32)}
    if c is not None:
        if c.size not in (1, units) or (c.ndim == 2 and c.shape[0] != 1):
            raise ctx.unsupported(f"C of shape {list(c.shape)}; expected ({units},), (1, {units}) or a scalar")
        weights["bias"] = (np.broadcast_to(c.reshape(-1), (units,)) * np.float32(ctx.attr("beta", 1.0))).astype(
            np.float32)
    _emit_dense(ctx, weights)


@converter("MatMul")
def matmul(ctx: NodeContext) -> None:
    b = ctx.const(1)
    if b is not None and b.ndim == 2 and ctx.is_dynamic(0) and ctx.rank(0) >= 2:
        _emit_dense(ctx, {"kernel": b.astype(np.float32)})
        return
    a_dyn, b_dyn = ctx.dyn(0), ctx.dyn(1)
    if a_dyn is not None and b_dyn is not None and ctx.rank(0) == ctx.rank(1) >= 3:
        batched_matmul(ctx, a_dyn, b_dyn)
        return
    ctx.set_output(0, ctx.emit("MatMul", [ctx.input(0), ctx.input(1)]))


def batched_matmul(ctx: NodeContext, a: Dyn, b: Dyn) -> None:
    """A @ B over stacked matrices, in the IR axes both are stored in (no transpose back to ONNX order)."""
    ga, gb = groups_of(a), groups_of(b)
    parts = []
    for dyn, groups in ((a, ga), (b, gb)):
        rows, cols = (single_axis(groups, k, "a batched matrix product") for k in (-2, -1))
        order = (*(x for g in groups[:-2] for x in g), rows, cols)
        if order[0] != 0:
            raise ctx.unsupported("the batch axis is not among the stacked dims of the matrix product")
        rank = len(ctx.ir_shape(dyn.ir))
        parts.append(ctx.emitter.as_layout(Dyn(dyn.ir, identity(rank)), order, ctx.name))
    stacked = [len(g) for g in ga[:-2]]
    if stacked != [len(g) for g in gb[:-2]] or ctx.ir_shape(parts[0])[:-2] != ctx.ir_shape(parts[1])[:-2]:
        raise ctx.unsupported(f"the stacked dims of A {list(ctx.shape(0))} and B {list(ctx.shape(1))} are stored "
                              "differently")
    y = ctx.emit("MatMul", parts)
    groups, start = [], 0
    for n in stacked:
        groups.append(tuple(range(start, start + n)))
        start += n
    groups += [(start,), (start + 1,)]
    ctx.set_dyn(0, make_dyn(y, tuple(groups), start + 2))


def _emit_dense(ctx: NodeContext, weights: dict[str, np.ndarray]) -> None:
    x, order, like = _dense_input(ctx)
    if order is not None:
        weights["kernel"] = weights["kernel"][order]
    units = weights["kernel"].shape[1]
    y = ctx.emit("Dense", [x], {"units": int(units), "use_bias": "bias" in weights, "activation": "linear"}, weights)
    ctx.set_output_like(0, y, like)
