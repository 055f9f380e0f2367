"""AVERAGE_POOL_2D, MAX_POOL_2D and the reductions MEAN, SUM, REDUCE_MAX.

Windows cover only real input samples (padding is never averaged in), as in
TFLite; int8 averages round half away from zero with C integer division.
"""

from __future__ import annotations

import numpy as np

from runtime.lite import fixedpoint as fx
from runtime.lite.kernels import (
    OpContext,
    activation_range_int8,
    float_activation,
    kernel,
    scale_zp,
)
from runtime.lite.kernels.conv import same_or_valid


def _windows(ctx: OpContext, xv: np.ndarray):
    o = ctx.options
    kh, kw = o["filter_height"], o["filter_width"]
    sh, sw = o["stride_h"], o["stride_w"]
    (ho, pt), (wo, pl) = (same_or_valid(n, k, s, 1, o.get("padding", "SAME"))
                          for n, k, s in zip(xv.shape[1:3], (kh, kw), (sh, sw), strict=False))
    return (kh, kw), (sh, sw), (pt, pl), (ho, wo)


def _taps(shape, kernel_hw, strides, pad, out_hw):
    """Per tap: output (rows, cols) ranges whose sample is real, and the input slices they read."""
    for i in range(kernel_hw[0]):
        rows = _tap_range(shape[1], out_hw[0], strides[0], i - pad[0])
        for j in range(kernel_hw[1]):
            cols = _tap_range(shape[2], out_hw[1], strides[1], j - pad[1])
            if rows[0] < rows[1] and cols[0] < cols[1]:
                yield rows, cols


def _tap_range(n_in: int, n_out: int, s: int, offset: int):
    """Outputs [lo, hi) whose sample o * s + offset lies in [0, n_in), and the input slice they read."""
    lo = max(0, -(offset // s))
    hi = max(lo, min(n_out, (n_in - 1 - offset) // s + 1))
    start = lo * s + offset
    return lo, hi, slice(start, start + (hi - lo - 1) * s + 1, s)


def _pool_sum_count(xv: np.ndarray, kernel_hw, strides, pad, out_hw, dtype):
    acc = np.zeros((xv.shape[0], *out_hw, xv.shape[3]), dtype)
    count = np.zeros(out_hw, np.int64)
    for (r0, r1, rs), (c0, c1, cs) in _taps(xv.shape, kernel_hw, strides, pad, out_hw):
        acc[:, r0:r1, c0:c1] += xv[:, rs, cs]
        count[r0:r1, c0:c1] += 1
    return acc, count


@kernel("AVERAGE_POOL_2D")
def average_pool_2d(ctx: OpContext):
    """Mean over each window's real samples."""
    x, y = ctx.input(0), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    if x.dtype == "int8":
        lo, hi = activation_range_int8(act, ctx.quant(y, "output"))

        def run_int8(xv):
            acc, count = _pool_sum_count(xv.astype(np.int64), *_windows(ctx, xv), np.int64)
            return np.clip(fx.round_div(acc, count[None, :, :, None]), lo, hi).astype(np.int8)

        return run_int8

    def run_float(xv):
        acc, count = _pool_sum_count(xv, *_windows(ctx, xv), np.float32)
        acc /= count[None, :, :, None].astype(np.float32)
        return float_activation(acc, act)

    return run_float


@kernel("MAX_POOL_2D")
def max_pool_2d(ctx: OpContext):
    """Maximum over each window's real samples."""
    x, y = ctx.input(0), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    integer = x.dtype == "int8"
    lo, hi = activation_range_int8(act, ctx.quant(y, "output")) if integer else (None, None)

    def run(xv):
        kernel_hw, strides, pad, out_hw = _windows(ctx, xv)
        low = np.iinfo(xv.dtype).min if integer else -np.inf
        acc = np.full((xv.shape[0], *out_hw, xv.shape[3]), low, xv.dtype)
        for (r0, r1, rs), (c0, c1, cs) in _taps(xv.shape, kernel_hw, strides, pad, out_hw):
            dst = acc[:, r0:r1, c0:c1]
            np.maximum(dst, xv[:, rs, cs], out=dst)
        if integer:
            return np.clip(acc, lo, hi).astype(np.int8)
        return float_activation(acc, act)

    return run


def _axes(ctx: OpContext, ndim: int) -> tuple[int, ...]:
    axes = ctx.constant(1)
    if axes is None:
        raise ctx.fail("reduction axes computed at run time are not supported")
    return tuple(sorted({int(a) % ndim for a in np.ravel(axes)}))


_NEON_LANES = 16


def _optimized_mean_hw(xv: np.ndarray, in_s: float, in_zp: int, out_s: float, out_zp: int) -> np.ndarray:
    """LiteRT's optimized int8 MEAN over H and W (optimized_integer_ops::Mean, on one thread): the sum of the
    raw values times in_s / (n * out_s), plus out_zp - round(in_zp * in_s / out_s), both formed in float32.
    Channels in whole blocks of 16 are requantised by the NEON code (rounding half up), the rest by the
    scalar MultiplyByQuantizedMultiplier."""
    f32 = np.float32
    n = f32(xv.shape[1] * xv.shape[2])
    mult, shift = fx.quantize_multiplier(float(f32(in_s) / (n * f32(out_s))))
    bias = out_zp - int(fx.round_half_away(f32(f32(in_zp) * f32(in_s)) / f32(out_s)))
    acc = xv.astype(np.int64).sum(axis=(1, 2), keepdims=True)
    out = fx.multiply_by_quantized_multiplier(acc, mult, shift)
    blocks = xv.shape[3] // _NEON_LANES * _NEON_LANES
    out[..., :blocks] = fx.multiply_by_quantized_multiplier_neon(acc[..., :blocks], mult, shift)
    return np.clip(out + bias, -128, 127).astype(np.int8)


@kernel("MEAN")
def mean(ctx: OpContext):
    """Mean over the axes given by the second (constant) input."""
    x, y = ctx.input(0), ctx.output()
    keep = bool(ctx.options.get("keep_dims", False))
    if x.dtype == "int8":
        in_s, in_zp = scale_zp(ctx.quant(x, "input"))
        out_s, out_zp = scale_zp(ctx.quant(y, "output"))
        mult, shift = fx.quantize_multiplier(in_s / out_s)

        def run_int8(xv, _axes_value=None):
            axes = _axes(ctx, xv.ndim)
            n = int(np.prod([xv.shape[a] for a in axes]))
            if ctx.kernels == "builtin" and keep and xv.ndim == 4 and axes == (1, 2):
                return _optimized_mean_hw(xv, in_s, in_zp, out_s, out_zp)
            acc = (xv.astype(np.int64) - in_zp).sum(axis=axes, keepdims=keep)
            # TFLite's reference QuantizedMeanOrSum folds 1/n into the multiplier
            # with a shift of floor(log2 n) (at most 32 and 31 + shift).
            bits = min(n.bit_length() - 1, 32, 31 + shift)
            n_mult = ((1 << bits) * mult) // n
            out = fx.multiply_by_quantized_multiplier(acc, n_mult, shift - bits) + out_zp
            return np.clip(out, -128, 127).astype(np.int8)

        return run_int8

    def run_float(xv, _axes_value=None):
        return xv.mean(axis=_axes(ctx, xv.ndim), keepdims=keep, dtype=np.float32)

    return run_float


@kernel("SUM")
def reduce_sum(ctx: OpContext):
    """Sum over the axes given by the second (constant) input (float)."""
    keep = bool(ctx.options.get("keep_dims", False))
    if ctx.input(0).dtype != "float32":
        raise ctx.fail("only float32 SUM is supported")
    return lambda xv, _a=None: xv.sum(axis=_axes(ctx, xv.ndim), keepdims=keep, dtype=np.float32)


@kernel("REDUCE_MAX")
def reduce_max(ctx: OpContext):
    """Maximum over the axes given by the second (constant) input (int8 keeps its qparams)."""
    keep = bool(ctx.options.get("keep_dims", False))
    return lambda xv, _a=None: xv.max(axis=_axes(ctx, xv.ndim), keepdims=keep)
