"""FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV.

Integer products are exact through BLAS: int8 values minus their zero point
are at most 255 in magnitude and weights at most 127, so float64 (53-bit
mantissa) accumulates any realistic dot product exactly; the sums are then
requantised per output channel with TFLite's fixed-point multipliers.
Convolutions are im2col + one GEMM, in chunks of images to bound memory.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runtime.lite import fixedpoint as fx
from runtime.lite.kernels import (
    OpContext,
    activation_range_int8,
    float_activation,
    kernel,
    scale_zp,
)

_CHUNK_BYTES = 64 << 20


def same_or_valid(n: int, k: int, s: int, d: int, padding: str) -> tuple[int, int]:
    """Output length and padding before the input (TFLite's ComputePaddingWithOffset)."""
    eff = (k - 1) * d + 1
    if padding == "VALID":
        return (n - eff + s) // s, 0
    out = (n + s - 1) // s
    total = max((out - 1) * s + eff - n, 0)
    return out, total // 2


def patches(x: np.ndarray, kh: int, kw: int, strides, dilation, pad, out_hw) -> np.ndarray:
    """(N, Ho, Wo, kh, kw, C) windows of NHWC x padded with zeros (a view when unpadded)."""
    (sh, sw), (dh, dw), (pt, pl), (ho, wo) = strides, dilation, pad, out_hw
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    need_h, need_w = (ho - 1) * sh + eh, (wo - 1) * sw + ew
    pb, pr = max(need_h - x.shape[1] - pt, 0), max(need_w - x.shape[2] - pl, 0)
    if pt or pl or pb or pr:
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    win = sliding_window_view(x, (eh, ew), axis=(1, 2))  # (N, H', W', C, eh, ew)
    win = win[:, :(ho - 1) * sh + 1:sh, :(wo - 1) * sw + 1:sw, :, ::dh, ::dw]
    return win.transpose(0, 1, 2, 4, 5, 3)


def _chunks(n: int, bytes_per_item: int):
    step = max(1, _CHUNK_BYTES // max(bytes_per_item, 1))
    for i in range(0, n, step):
        yield slice(i, min(n, i + step))


def requantize_per_channel(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, out_zp: int, lo: int,
                           hi: int, rounding=fx.multiply_by_quantized_multiplier) -> np.ndarray:
    """int8 of out_zp + acc * multiplier[c] (channel last), clamped to [lo, hi]."""
    y = rounding(acc, mult, shift) + out_zp
    return np.clip(y, lo, hi).astype(np.int8)


def _optimized_rounding(ctx: OpContext):
    """CONV_2D / DEPTHWISE_CONV_2D: LiteRT's optimized kernels round the final shift half up."""
    if ctx.kernels == "builtin":
        return fx.multiply_by_quantized_multiplier_half_up
    return fx.multiply_by_quantized_multiplier


def _int_gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer product of small integers held in float64, as int64."""
    return (a @ b).astype(np.int64)


def _per_channel_multipliers(ctx: OpContext, channels: int, *, float_product: bool = False):
    """TFLite's per-channel output multipliers (PopulateConvolutionQuantizationParams)."""
    x, w, y = ctx.input(0 if ctx.op.op != "TRANSPOSE_CONV" else 2), ctx.input(1), ctx.output()
    in_s, _ = scale_zp(ctx.quant(x, "input"))
    out_s, _ = scale_zp(ctx.quant(y, "output"))
    w_scales = ctx.quant(w, "filter").scale.astype(np.float32)
    if w_scales.size == 1:
        w_scales = np.repeat(w_scales, channels)
    if float_product:  # GetQuantizedConvolutionMultipler: the product in float32
        reals = [float(np.float32(in_s) * ws) / out_s for ws in w_scales]
    else:
        reals = [in_s * float(ws) / out_s for ws in w_scales]
    return fx.quantize_multipliers(reals)


def _bias(ctx: OpContext, index: int, channels: int, dtype) -> np.ndarray:
    b = ctx.constant(index)
    if ctx.input(index) is not None and b is None:
        raise ctx.fail("a bias computed at run time is not supported")
    return np.zeros(channels, dtype) if b is None else np.asarray(b, dtype)


def _float_weights(ctx: OpContext, index: int) -> np.ndarray:
    t = ctx.input(index)
    data = ctx.constant(index)
    if t is None or data is None:
        raise ctx.fail("weights computed at run time are not supported")
    if t.dtype == "int8":  # dynamic-range (hybrid) weights: dequantized once, here
        return ctx.quant(t, "filter").dequantize(data)
    return np.asarray(data, np.float32)


# -- FULLY_CONNECTED -------------------------------------------------------------------


@kernel("FULLY_CONNECTED")
def fully_connected(ctx: OpContext):
    """y = x @ W.T + b over the last axis, W of shape (units, depth)."""
    x, w, y = ctx.input(0), ctx.input(1), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    keep = bool(ctx.options.get("keep_num_dims", False))
    units, depth = w.shape

    def shape_out(xv: np.ndarray, out: np.ndarray) -> np.ndarray:
        return out.reshape(*xv.shape[:-1], units) if keep else out

    if x.dtype == "int8":
        if w.data is None:
            raise ctx.fail("weights computed at run time are not supported")
        in_zp = scale_zp(ctx.quant(x, "input"))[1]
        out_zp = scale_zp(ctx.quant(y, "output"))[1]
        mult, shift = _per_channel_multipliers(ctx, units)
        w_zp = int(ctx.quant(w, "filter").zero_point[0])
        wt = (w.data.astype(np.float64) - w_zp).T.copy()
        bias = _bias(ctx, 2, units, np.int64)
        lo, hi = activation_range_int8(act, ctx.quant(y, "output"))
        # LiteRT's reference FULLY_CONNECTED rounds once; its optimized kernel rounds the
        # high product away from zero and then the shift half up. They differ on near-ties.
        rounding = (fx.multiply_by_quantized_multiplier_half_up if ctx.kernels == "builtin"
                    else fx.multiply_by_quantized_multiplier_single_rounding)

        def run_int8(xv, *_):
            rows = xv.reshape(-1, depth).astype(np.float64) - in_zp
            acc = _int_gemm(rows, wt) + bias
            return shape_out(xv, requantize_per_channel(acc, mult, shift, out_zp, lo, hi, rounding))

        return run_int8

    wf = _float_weights(ctx, 1).T.copy()
    bf = _bias(ctx, 2, units, np.float32)

    def run_float(xv, *_):
        out = xv.reshape(-1, depth).astype(np.float32, copy=False) @ wf
        out += bf
        return shape_out(xv, float_activation(out, act))

    return run_float


# -- CONV_2D ---------------------------------------------------------------------------


def _geometry(ctx: OpContext, xv: np.ndarray, kh: int, kw: int):
    o = ctx.options
    strides = (o.get("stride_h", 1), o.get("stride_w", 1))
    dilation = (o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1))
    padding = o.get("padding", "SAME")
    (ho, pt), (wo, pl) = (same_or_valid(n, k, s, d, padding)
                          for n, k, s, d in zip(xv.shape[1:3], (kh, kw), strides, dilation, strict=False))
    return strides, dilation, (pt, pl), (ho, wo)


def _grouped(xs: np.ndarray, w_cols: np.ndarray, groups: int, to_cols, gemm) -> np.ndarray:
    """gemm(to_cols(x), w) per group of channels: group g's outputs read only its slice of the inputs."""
    if groups == 1:
        return gemm(to_cols(xs), w_cols)
    cin, per = xs.shape[-1] // groups, w_cols.shape[1] // groups
    return np.concatenate([gemm(to_cols(xs[..., g * cin:(g + 1) * cin]), w_cols[:, g * per:(g + 1) * per])
                           for g in range(groups)], axis=-1)


def _groups(ctx: OpContext, cin: int, cout: int) -> int:
    """How many groups a filter with ``cin`` input channels makes of the input (TFLite's grouped CONV_2D)."""
    channels = ctx.input(0).shape[-1]
    groups = channels // cin if cin else 0
    if groups < 1 or groups * cin != channels or cout % groups:
        raise ctx.fail(f"the input has {channels} channels; expected a multiple of the filter's {cin} input "
                       f"channels that also divides its {cout} output channels")
    return groups


@kernel("CONV_2D")
def conv_2d(ctx: OpContext):
    """2-D cross-correlation, filter (out, kh, kw, in / groups), TF 'SAME'/'VALID' padding."""
    x, w, y = ctx.input(0), ctx.input(1), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    cout, kh, kw, cin = w.shape
    k = kh * kw * cin
    groups = _groups(ctx, cin, cout)
    if x.dtype == "int8":
        if w.data is None:
            raise ctx.fail("weights computed at run time are not supported")
        in_zp = scale_zp(ctx.quant(x, "input"))[1]
        out_zp = scale_zp(ctx.quant(y, "output"))[1]
        mult, shift = _per_channel_multipliers(ctx, cout)
        wt = w.data.reshape(cout, k).astype(np.float64).T.copy()
        bias = _bias(ctx, 2, cout, np.int64)
        lo, hi = activation_range_int8(act, ctx.quant(y, "output"))
        # LiteRT's optimized CONV_2D runs grouped filters with its reference kernel
        rounding = _optimized_rounding(ctx) if groups == 1 else fx.multiply_by_quantized_multiplier

        def run_int8(xv, *_):
            if xv.shape[-1] != cin * groups:
                raise ValueError(f"CONV_2D input has {xv.shape[-1]} channels, the filter expects {cin * groups}")
            strides, dilation, pad, (ho, wo) = _geometry(ctx, xv, kh, kw)
            out = np.empty((xv.shape[0], ho, wo, cout), np.int8)

            def to_cols(xg):
                return patches(xg, kh, kw, strides, dilation, pad, (ho, wo)).reshape(-1, k)

            for sl in _chunks(xv.shape[0], ho * wo * k * groups * 8 * 2):
                acc = _grouped(xv[sl].astype(np.float64) - in_zp, wt, groups, to_cols, _int_gemm) + bias
                out[sl] = requantize_per_channel(acc, mult, shift, out_zp, lo, hi, rounding).reshape(-1, ho, wo, cout)
            return out

        return run_int8

    wf = _float_weights(ctx, 1).reshape(cout, k).T.copy()
    bf = _bias(ctx, 2, cout, np.float32)

    def run_float(xv, *_):
        strides, dilation, pad, (ho, wo) = _geometry(ctx, xv, kh, kw)
        out = np.empty((xv.shape[0], ho, wo, cout), np.float32)

        def to_cols(xg):
            return patches(xg, kh, kw, strides, dilation, pad, (ho, wo)).reshape(-1, k)

        for sl in _chunks(xv.shape[0], ho * wo * k * groups * 4 * 2):
            acc = _grouped(xv[sl].astype(np.float32, copy=False), wf, groups, to_cols, np.matmul)
            acc += bf
            out[sl] = acc.reshape(-1, ho, wo, cout)
        return float_activation(out, act)

    return run_float


# -- DEPTHWISE_CONV_2D -----------------------------------------------------------------


def _depthwise_taps(xv: np.ndarray, w: np.ndarray, mult: int, strides, dilation, pad, out_hw, acc_dtype):
    """sum over taps of x (channels repeated mult times) * w[tap]; x already offset."""
    kh, kw = w.shape[1:3]
    if mult > 1:
        xv = np.repeat(xv, mult, axis=-1)
    win = patches(xv, kh, kw, strides, dilation, pad, out_hw)  # (N, Ho, Wo, kh, kw, C)
    acc = np.zeros((xv.shape[0], *out_hw, xv.shape[-1]), acc_dtype)
    for i in range(kh):
        for j in range(kw):
            acc += win[:, :, :, i, j, :] * w[0, i, j]
    return acc


@kernel("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(ctx: OpContext):
    """Each input channel c convolved with filters c*mult .. c*mult+mult-1; filter (1, kh, kw, C*mult)."""
    x, w, y = ctx.input(0), ctx.input(1), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    _, kh, kw, cout = w.shape
    if x.dtype == "int8":
        if w.data is None:
            raise ctx.fail("weights computed at run time are not supported")
        in_zp = scale_zp(ctx.quant(x, "input"))[1]
        out_zp = scale_zp(ctx.quant(y, "output"))[1]
        mult, shift = _per_channel_multipliers(ctx, cout)
        wi = w.data.astype(np.int32)
        bias = _bias(ctx, 2, cout, np.int64)
        lo, hi = activation_range_int8(act, ctx.quant(y, "output"))
        rounding = _optimized_rounding(ctx)

        def run_int8(xv, *_):
            m = cout // xv.shape[-1]
            strides, dilation, pad, hw = _geometry(ctx, xv, kh, kw)
            xs = xv.astype(np.int32) - in_zp
            acc = _depthwise_taps(xs, wi, m, strides, dilation, pad, hw, np.int32).astype(np.int64) + bias
            return requantize_per_channel(acc, mult, shift, out_zp, lo, hi, rounding)

        return run_int8

    wf = _float_weights(ctx, 1)
    bf = _bias(ctx, 2, cout, np.float32)

    def run_float(xv, *_):
        m = cout // xv.shape[-1]
        strides, dilation, pad, hw = _geometry(ctx, xv, kh, kw)
        acc = _depthwise_taps(xv.astype(np.float32, copy=False), wf, m, strides, dilation, pad, hw, np.float32)
        acc += bf
        return float_activation(acc, act)

    return run_float


# -- TRANSPOSE_CONV --------------------------------------------------------------------


def _transpose_conv(cols: np.ndarray, n: int, h: int, w: int, kh: int, kw: int, cout: int, strides, out_hw,
                    padding: str, dtype) -> np.ndarray:
    """Scatter-add per-pixel tap contributions (N*H*W, kh*kw*cout) into the cropped output."""
    sh, sw = strides
    ho, wo = out_hw
    # TFLite pads as the forward convolution from the output size to the input size would.
    pt = same_or_valid(ho, kh, sh, 1, padding)[1]
    pl = same_or_valid(wo, kw, sw, 1, padding)[1]
    full_h = max((h - 1) * sh + kh, pt + ho)
    full_w = max((w - 1) * sw + kw, pl + wo)
    full = np.zeros((n, full_h, full_w, cout), dtype)
    cols = cols.reshape(n, h, w, kh, kw, cout)
    for i in range(kh):
        for j in range(kw):
            full[:, i:i + (h - 1) * sh + 1:sh, j:j + (w - 1) * sw + 1:sw] += cols[:, :, :, i, j]
    return full[:, pt:pt + ho, pl:pl + wo]


@kernel("TRANSPOSE_CONV")
def transpose_conv(ctx: OpContext):
    """The input-gradient of CONV_2D: inputs (output_shape, filter (out, kh, kw, in), x[, bias])."""
    w, x, y = ctx.input(1), ctx.input(2), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    strides = (ctx.options.get("stride_h", 1), ctx.options.get("stride_w", 1))
    padding = ctx.options.get("padding", "SAME")
    cout, kh, kw, cin = w.shape

    if x.dtype == "int8":
        in_zp = scale_zp(ctx.quant(x, "input"))[1]
        out_zp = scale_zp(ctx.quant(y, "output"))[1]
        mult, shift = _per_channel_multipliers(ctx, cout)
        wt = w.data.astype(np.float64).transpose(3, 1, 2, 0).reshape(cin, kh * kw * cout)
        bias = _bias(ctx, 3, cout, np.int64)
        lo, hi = activation_range_int8(act, ctx.quant(y, "output"))

        def run_int8(shape_v, _w, xv, *_):
            n, h, wd, _ = xv.shape
            out_hw = (int(shape_v[1]), int(shape_v[2]))
            cols = _int_gemm(xv.reshape(-1, cin).astype(np.float64) - in_zp, wt)
            acc = _transpose_conv(cols, n, h, wd, kh, kw, cout, strides, out_hw, padding, np.int64) + bias
            return requantize_per_channel(acc, mult, shift, out_zp, lo, hi)

        return run_int8

    wf = _float_weights(ctx, 1).transpose(3, 1, 2, 0).reshape(cin, kh * kw * cout)
    bf = _bias(ctx, 3, cout, np.float32)

    def run_float(shape_v, _w, xv, *_):
        n, h, wd, _ = xv.shape
        out_hw = (int(shape_v[1]), int(shape_v[2]))
        cols = xv.reshape(-1, cin).astype(np.float32, copy=False) @ wf
        out = np.ascontiguousarray(_transpose_conv(cols, n, h, wd, kh, kw, cout, strides, out_hw, padding, np.float32))
        out += bf
        return float_activation(out, act)

    return run_float

