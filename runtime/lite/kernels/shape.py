"""Data movement: RESHAPE, SQUEEZE, CONCATENATION, PAD, PADV2, STRIDED_SLICE, SLICE, TRANSPOSE,
RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, SHAPE, PACK, TILE.

int8 tensors pass through with their input's quantization (TFLite requires
it for these ops; CONCATENATION refuses inputs quantized otherwise than its
output, as LiteRT does); PAD fills with the output zero point.
"""

from __future__ import annotations

import numpy as np

from runtime.lite import fixedpoint as fx
from runtime.lite.kernels import OpContext, kernel, scale_zp


def _const(ctx: OpContext, i: int, what: str) -> np.ndarray:
    value = ctx.constant(i)
    if value is None:
        raise ctx.fail(f"{what} computed at run time is not supported")
    return np.asarray(value)


@kernel("RESHAPE")
def reshape(ctx: OpContext):
    """x with the shape of the second input (or the new_shape option); -1 is inferred."""
    fixed = ctx.constant(1) if ctx.input(1) is not None else ctx.options.get("new_shape", [])
    dynamic_batch = ctx.output().signature[:1] == (-1,)

    def run(xv, shape_v=None):
        shape = [int(d) for d in (fixed if fixed is not None else shape_v)]
        if -1 not in shape and int(np.prod(shape)) != xv.size and dynamic_batch and shape:
            shape[0] = -1  # a static batch of 1 in the file; the data has another batch size
        return xv.reshape(shape)

    return run


@kernel("SQUEEZE")
def squeeze(ctx: OpContext):
    """x without the size-1 axes in squeeze_dims (all size-1 axes when empty)."""
    dims = ctx.options.get("squeeze_dims", [])

    def run(xv):
        axes = tuple(d % xv.ndim for d in dims) if dims else tuple(i for i, n in enumerate(xv.shape) if n == 1)
        return np.squeeze(xv, axis=axes)

    return run


@kernel("CONCATENATION")
def concatenation(ctx: OpContext):
    """The inputs joined along axis; int8 inputs with other qparams than the output are rescaled."""
    axis = int(ctx.options.get("axis", 0))
    y = ctx.output()
    if y.dtype != "int8":
        return lambda *xs: np.concatenate(xs, axis=axis)
    out_q = ctx.quant(y, "output")
    for i in range(len(ctx.op.inputs)):
        q = ctx.quant(ctx.input(i), f"input {i}")
        if not q.same_as(out_q):
            # LiteRT refuses this too: int8 CONCATENATION does not rescale.
            raise ctx.fail(f"int8 input {i} is quantized {q!r}, the output {out_q!r}; they must be equal")
    return lambda *xs: np.concatenate(xs, axis=axis)


def _pad(ctx: OpContext, value_index: int | None):
    paddings = _const(ctx, 1, "the paddings").astype(np.int64)
    y = ctx.output()
    if value_index is not None and ctx.input(value_index) is not None:
        fill = _const(ctx, value_index, "the pad value").reshape(()).item()
    elif y.dtype == "int8":
        fill = scale_zp(ctx.quant(y, "output"))[1]
    else:
        fill = 0

    def run(xv, *_):
        return np.pad(xv, [tuple(p) for p in paddings.tolist()], constant_values=fill)

    return run


@kernel("PAD")
def pad(ctx: OpContext):
    """x padded by paddings (rank x 2) with zero (int8: the zero point)."""
    return _pad(ctx, None)


@kernel("PADV2")
def padv2(ctx: OpContext):
    """x padded by paddings with the given constant."""
    return _pad(ctx, 2)


@kernel("TRANSPOSE")
def transpose(ctx: OpContext):
    """x with its axes permuted."""
    perm = tuple(int(p) for p in _const(ctx, 1, "the permutation"))
    return lambda xv, *_: np.transpose(xv, perm)


@kernel("SLICE")
def slice_(ctx: OpContext):
    """x[begin : begin + size] (size -1: to the end)."""
    begin = _const(ctx, 1, "begin").astype(np.int64)
    size = _const(ctx, 2, "size").astype(np.int64)

    def run(xv, *_):
        idx = tuple(slice(int(b), None if s < 0 else int(b + s)) for b, s in zip(begin, size, strict=False))
        return xv[idx]

    return run


@kernel("STRIDED_SLICE")
def strided_slice(ctx: OpContext):
    """x[begin:end:strides] with begin/end/shrink-axis masks."""
    o = ctx.options
    if o.get("ellipsis_mask", 0) or o.get("new_axis_mask", 0):
        raise ctx.fail("ellipsis and new-axis masks are not supported")
    begin = _const(ctx, 1, "begin").astype(np.int64)
    end = _const(ctx, 2, "end").astype(np.int64)
    strides = _const(ctx, 3, "strides").astype(np.int64) if ctx.input(3) is not None else np.ones_like(begin)
    bm, em, sm = o.get("begin_mask", 0), o.get("end_mask", 0), o.get("shrink_axis_mask", 0)
    offset = bool(o.get("offset", False))

    def run(xv, *_):
        idx: list = []
        for i in range(len(begin)):
            b, e, s = int(begin[i]), int(end[i]), int(strides[i])
            if offset:
                e = b + e
            if sm >> i & 1:
                idx.append(b)
                continue
            idx.append(slice(None if bm >> i & 1 else b, None if em >> i & 1 else e, s))
        return xv[tuple(idx)]

    return run


def _nearest_index(n_out: int, n_in: int, align: bool, half: bool) -> np.ndarray:
    f32 = np.float32
    scale = f32(n_in - 1) / f32(n_out - 1) if align and n_out > 1 else f32(n_in) / f32(n_out)
    pos = (np.arange(n_out, dtype=f32) + f32(0.5 if half else 0.0)) * scale
    idx = fx.round_half_away(pos) if align else np.floor(pos)
    idx = np.minimum(idx.astype(np.int64), n_in - 1)
    return np.maximum(idx, 0) if half else idx


def _out_size(ctx: OpContext) -> tuple[int, int]:
    size = _const(ctx, 1, "the output size")
    return int(size[0]), int(size[1])


@kernel("RESIZE_NEAREST_NEIGHBOR")
def resize_nearest_neighbor(ctx: OpContext):
    """Nearest-neighbour resize of NHWC x to the given (height, width)."""
    ho, wo = _out_size(ctx)
    align = bool(ctx.options.get("align_corners", False))
    half = bool(ctx.options.get("half_pixel_centers", False))

    def run(xv, *_):
        rows = _nearest_index(ho, xv.shape[1], align, half)
        cols = _nearest_index(wo, xv.shape[2], align, half)
        return xv[:, rows][:, :, cols]

    return run


def _bilinear_float(xv, ho, wo, align, half):
    f32 = np.float32

    def axis(n_out, n_in):
        scale = f32(n_in - 1) / f32(n_out - 1) if align and n_out > 1 else f32(n_in) / f32(n_out)
        v = np.arange(n_out, dtype=f32)
        pos = (v + f32(0.5)) * scale - f32(0.5) if half else v * scale
        lo = np.maximum(np.floor(pos).astype(np.int64), 0)
        hi = np.minimum(np.ceil(pos).astype(np.int64), n_in - 1)
        return lo, hi, (pos - lo.astype(f32)).astype(f32)

    y0, y1, fy = axis(ho, xv.shape[1])
    x0, x1, fx_ = axis(wo, xv.shape[2])
    fy, fx_ = fy[None, :, None, None], fx_[None, None, :, None]
    top = xv[:, y0][:, :, x0] * (1 - fy) * (1 - fx_) + xv[:, y1][:, :, x0] * fy * (1 - fx_)
    return (top + xv[:, y0][:, :, x1] * (1 - fy) * fx_ + xv[:, y1][:, :, x1] * fy * fx_).astype(np.float32)


def _bilinear_int(xv, ho, wo, align, half):
    def axis(n_out, n_in):
        if align and n_out > 1:
            scale = ((1 << 10) * (n_in - 1) + (n_out - 1) // 2) // (n_out - 1)
        else:
            scale = ((1 << 10) * n_in + n_out // 2) // n_out
        v = np.arange(n_out, dtype=np.int64)
        pos = v * scale + scale // 2 - (1 << 9) if half else v * scale
        lo = np.maximum(fx.trunc_div(pos, 1 << 10), 0)
        hi = np.minimum(fx.trunc_div(pos + (1 << 10) - 1, 1 << 10), n_in - 1)
        return lo, hi, pos - (1 << 10) * lo

    y0, y1, dy = axis(ho, xv.shape[1])
    x0, x1, dx = axis(wo, xv.shape[2])
    dy, dx = dy[None, :, None, None], dx[None, None, :, None]
    v = xv.astype(np.int64)
    acc = (v[:, y0][:, :, x0] * ((1 << 10) - dy) * ((1 << 10) - dx) + v[:, y1][:, :, x0] * dy * ((1 << 10) - dx)
           + v[:, y0][:, :, x1] * ((1 << 10) - dy) * dx + v[:, y1][:, :, x1] * dy * dx)
    rounded = fx.trunc_div(acc + np.where(acc > 0, 1 << 19, -(1 << 19)), 1 << 20)
    return np.clip(rounded, -128, 127).astype(np.int8)


@kernel("RESIZE_BILINEAR")
def resize_bilinear(ctx: OpContext):
    """Bilinear resize of NHWC x to the given (height, width); int8 in 10-bit fixed point."""
    ho, wo = _out_size(ctx)
    align = bool(ctx.options.get("align_corners", False))
    half = bool(ctx.options.get("half_pixel_centers", False))
    fn = _bilinear_int if ctx.input(0).dtype == "int8" else _bilinear_float
    return lambda xv, *_: fn(xv, ho, wo, align, half)


@kernel("SHAPE")
def shape(ctx: OpContext):
    """The shape of x as int32."""
    return lambda xv: np.asarray(xv.shape, np.int32)


@kernel("PACK")
def pack(ctx: OpContext):
    """The inputs stacked along a new axis."""
    axis = int(ctx.options.get("axis", 0))
    return lambda *xs: np.stack(xs, axis=axis)


@kernel("TILE")
def tile(ctx: OpContext):
    """x repeated ``multiples[i]`` times along each axis i (int8 keeps its qparams)."""
    multiples = tuple(int(m) for m in _const(ctx, 1, "TILE multiples"))
    return lambda xv, *_: np.tile(xv, multiples)
