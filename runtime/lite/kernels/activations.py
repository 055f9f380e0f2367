"""Activation ops: SOFTMAX, LOGISTIC, TANH, RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, HARD_SWISH, LOG_SOFTMAX.

The int8 SOFTMAX, LOGISTIC and TANH follow TFLite's reference kernels, built
on gemmlowp fixed point (``runtime.lite.gemmlowp``); TFLite's optimized
SOFTMAX uses a float table of exp instead (reproduced for ``kernels="builtin"``).
"""

from __future__ import annotations

import math

import numpy as np

from runtime.lite import fixedpoint as fx
from runtime.lite import gemmlowp as gl
from runtime.lite.kernels import INT8_MAX, INT8_MIN, OpContext, activation_range_int8, kernel, scale_zp
from runtime.lite.kernels.elementary import expf

_SOFTMAX_DIFF_BITS = 5
_SOFTMAX_ACCUM_BITS = 12
_SIGMOID_INPUT_BITS = 4


def _input_radius(integer_bits: int, left_shift: int, total_bits: int = 31) -> int:
    """TFLite's CalculateInputRadius: the largest |input| that does not saturate."""
    max_rescaled = 1.0 * ((1 << integer_bits) - 1) * (1 << (total_bits - integer_bits)) / (1 << left_shift)
    return int(math.floor(max_rescaled))


def _greater_than_one(real: float) -> tuple[int, int]:
    mult, shift = fx.quantize_multiplier(real)
    if shift < 0:
        raise ValueError(f"multiplier {real} is below one")
    return mult, shift


@kernel("SOFTMAX")
def softmax(ctx: OpContext):
    """exp(beta * x) normalised over the last axis."""
    x = ctx.input(0)
    beta = float(np.float32(ctx.options.get("beta", 1.0)))
    if x.dtype == "int8" and ctx.kernels == "builtin":
        return _softmax_int8_optimized(ctx, beta)
    if x.dtype == "int8":
        in_s, _ = scale_zp(ctx.quant(x, "input"))
        real = min(beta * in_s * (1 << (31 - _SOFTMAX_DIFF_BITS)), (1 << 31) - 1.0)
        mult, left = _greater_than_one(real)
        diff_min = -_input_radius(_SOFTMAX_DIFF_BITS, left)

        # exp of every possible difference to the row maximum (0 .. -255), once, in fixed point
        diffs = -np.arange(256, dtype=np.int64)
        scaled = fx.saturating_rounding_doubling_high_mul(diffs * (1 << left), mult)
        exp_table = gl.exp_on_negative_values(scaled, _SOFTMAX_DIFF_BITS)
        live_table = diffs >= diff_min
        term_table = np.where(live_table, gl.rescale(exp_table, 0, _SOFTMAX_ACCUM_BITS), 0)

        def run_int8(xv):
            v = xv.astype(np.int16)
            index = v.max(axis=-1, keepdims=True) - v  # -(x - max) in 0 .. 255
            total = term_table[index].sum(axis=-1, keepdims=True)
            scale, bits_over_unit = gl.reciprocal(total, _SOFTMAX_ACCUM_BITS)
            unsat = fx.rounding_divide_by_pot(fx.saturating_rounding_doubling_high_mul(scale, exp_table[index]),
                                              bits_over_unit + 31 - 8)
            out = np.clip(unsat + INT8_MIN, INT8_MIN, INT8_MAX)
            return np.where(live_table[index], out, INT8_MIN).astype(np.int8)

        return run_int8

    def run_float(xv):
        z = (xv - xv.max(axis=-1, keepdims=True)) * np.float32(beta)
        e = np.exp(z)
        e /= e.sum(axis=-1, keepdims=True)
        return e

    return run_float


def _softmax_int8_optimized(ctx: OpContext, beta: float):
    """LiteRT's optimized int8 SOFTMAX (x86): expf(-in_s * beta * (max - x)) from a float table, summed in
    float32 in row order, times 1 / (sum * out_s), rounded half away from zero."""
    f32 = np.float32
    in_s, _ = scale_zp(ctx.quant(ctx.input(0), "input"))
    out_s, out_zp = scale_zp(ctx.quant(ctx.output(), "output"))
    table = expf((f32(-f32(in_s) * f32(beta))) * np.arange(256, dtype=f32))  # by max - x

    def run_int8(xv):
        v = xv.astype(np.int16)
        e = table[v.max(axis=-1, keepdims=True) - v]
        total = np.add.accumulate(e, axis=-1, dtype=f32)[..., -1:]  # sequential, as the C loop
        inv = f32(1) / (total * f32(out_s))
        q = fx.round_half_away(e * inv) + out_zp
        return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)

    return run_int8


def _sigmoid_like(ctx: OpContext, fn, out_bits: int, out_zp: int, float_fn):
    x = ctx.input(0)
    if x.dtype != "int8":
        return float_fn
    in_s, in_zp = scale_zp(ctx.quant(x, "input"))
    mult, left = _greater_than_one(in_s * (1 << (31 - _SIGMOID_INPUT_BITS)))
    radius = _input_radius(_SIGMOID_INPUT_BITS, left)

    # The output depends on the int8 input alone: tabulate the fixed-point function once.
    v = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.int64) - in_zp
    q4 = fx.multiply_by_quantized_multiplier(v, mult, left)
    q0 = fn(q4, _SIGMOID_INPUT_BITS)
    table = np.clip(fx.rounding_divide_by_pot(q0, 31 - out_bits) + out_zp, INT8_MIN, INT8_MAX)
    table = np.where(v <= -radius, INT8_MIN, table)
    table = np.where(v >= radius, INT8_MAX, table).astype(np.int8)
    return lambda xv: table[xv.astype(np.int16) - INT8_MIN]


@kernel("LOGISTIC")
def logistic(ctx: OpContext):
    """1 / (1 + exp(-x)); int8 output scale 1/256, zero point -128."""
    return _sigmoid_like(ctx, gl.logistic, 8, -128,
                         lambda xv: (1.0 / (1.0 + np.exp(-xv.astype(np.float64)))).astype(np.float32))


@kernel("TANH")
def tanh(ctx: OpContext):
    """tanh(x); int8 output scale 1/128, zero point 0."""
    return _sigmoid_like(ctx, gl.tanh, 7, 0, lambda xv: np.tanh(xv))


def _relu_family(ctx: OpContext, activation: str, lo_f: float | None, hi_f: float | None):
    x, y = ctx.input(0), ctx.output()
    if x.dtype == "int8":
        in_s, in_zp = scale_zp(ctx.quant(x, "input"))
        out_s, out_zp = scale_zp(ctx.quant(y, "output"))
        mult, shift = fx.quantize_multiplier(in_s / out_s)
        lo, hi = activation_range_int8(activation, ctx.quant(y, "output"))

        def run_int8(xv):
            v = fx.multiply_by_quantized_multiplier(xv.astype(np.int64) - in_zp, mult, shift) + out_zp
            return np.clip(v, lo, hi).astype(np.int8)

        return run_int8
    return lambda xv: np.clip(xv, np.float32(lo_f) if lo_f is not None else None,
                              np.float32(hi_f) if hi_f is not None else None)


@kernel("RELU")
def relu(ctx: OpContext):
    """max(x, 0)."""
    return _relu_family(ctx, "RELU", 0.0, None)


@kernel("RELU6")
def relu6(ctx: OpContext):
    """min(max(x, 0), 6)."""
    return _relu_family(ctx, "RELU6", 0.0, 6.0)


@kernel("RELU_N1_TO_1")
def relu_n1_to_1(ctx: OpContext):
    """min(max(x, -1), 1)."""
    return _relu_family(ctx, "RELU_N1_TO_1", -1.0, 1.0)


@kernel("LEAKY_RELU")
def leaky_relu(ctx: OpContext):
    """x for x >= 0, alpha * x below."""
    x, y = ctx.input(0), ctx.output()
    alpha = np.float32(ctx.options.get("alpha", 0.2))
    if x.dtype == "int8":
        in_s, in_zp = scale_zp(ctx.quant(x, "input"))
        out_s, out_zp = scale_zp(ctx.quant(y, "output"))
        m_id, s_id = fx.quantize_multiplier(in_s / out_s)
        m_a, s_a = fx.quantize_multiplier(float(np.float32(np.float32(in_s) * alpha) / np.float32(out_s)))

        def run_int8(xv):
            v = xv.astype(np.int64) - in_zp
            pos = fx.multiply_by_quantized_multiplier(v, m_id, s_id)
            neg = fx.multiply_by_quantized_multiplier(v, m_a, s_a)
            return np.clip(np.where(v >= 0, pos, neg) + out_zp, INT8_MIN, INT8_MAX).astype(np.int8)

        return run_int8
    return lambda xv: np.where(xv >= 0, xv, alpha * xv).astype(np.float32)


def _int16(v: int) -> int:
    return max(-(1 << 15), min((1 << 15) - 1, v))


def _srdhm16(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul on int16."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    nudge = (1 << 14) if ab >= 0 else 1 - (1 << 14)
    return int((ab + nudge) / (1 << 15)) if ab + nudge >= 0 else -((-(ab + nudge)) >> 15)


def _sdhm16(a: int, b: int) -> int:
    """TFLite SaturatingDoublingHighMul on int16: truncating."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    return ab >> 15 if ab >= 0 else -((-ab) >> 15)


def _rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    return (x >> exponent) + ((x & mask) > (mask >> 1) + (x < 0))


def _int16_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier, then DownScaleInt32ToInt16Multiplier."""
    m, e = fx.quantize_multiplier(real)
    if m >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1, e
    return (m + (1 << 15)) >> 16, e


@kernel("HARD_SWISH")
def hard_swish(ctx: OpContext):
    """x * relu6(x + 3) / 6; int8 as TFLite's reference kernel (16-bit fixed point, tabulated)."""
    x, y = ctx.input(0), ctx.output()
    if x.dtype != "int8":
        return lambda xv: xv * np.clip(xv + np.float32(3), np.float32(0), np.float32(6)) / np.float32(6)
    in_s, in_zp = scale_zp(ctx.quant(x, "input"))
    out_s, out_zp = scale_zp(ctx.quant(y, "output"))
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(in_s)
    out_m, out_e = _int16_multiplier(float(hires / f32(out_s)))
    relu_m, relu_e = _int16_multiplier(float(hires / f32(3.0 / 32768.0)))
    if out_e > 0:
        raise ctx.fail("output scale too small for int8 HARD_SWISH (TFLite requires a non-positive exponent)")
    table = np.empty(256, np.int8)
    for k, q in enumerate(range(INT8_MIN, INT8_MAX + 1)):
        v = _int16(q - in_zp)
        hi = _int16(v * (1 << 7))
        pre_out = _srdhm16(hi, out_m)
        reluish = hi
        if relu_e > 0:
            reluish = _int16(reluish * (1 << (relu_e - 1)))
        reluish = _srdhm16(reluish, relu_m)
        if relu_e > 0:
            reluish = _int16(reluish * 2)
        if relu_e < 0:
            reluish = _rdbpot(reluish, -relu_e)
        reluish = (reluish + (1 << 15)) >> 1
        value = _rdbpot(_sdhm16(reluish, pre_out), -out_e) + out_zp
        table[k] = min(max(value, INT8_MIN), INT8_MAX)
    return lambda xv: table[xv.astype(np.int16) - INT8_MIN]


_LOG_SOFTMAX_DIFF_BITS = 5
_LOG_SOFTMAX_OUTPUT_BITS = 4
_LOG_SOFTMAX_ZERO_POINT = 127  # output scale 16 / 256: [-16, 0] onto [-128, 127]


@kernel("LOG_SOFTMAX")
def log_softmax(ctx: OpContext):
    """x - log(sum(exp(x))) over the last axis; int8 as TFLite's reference_integer_ops::LogSoftmax
    (output scale 16/256, zero point 127)."""
    x = ctx.input(0)
    if x.dtype == "int8":
        return _log_softmax_int8(ctx)

    def run(xv):
        z = xv - xv.max(axis=-1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)

    return run


def _log_softmax_int8(ctx: OpContext):
    in_s, _ = scale_zp(ctx.quant(ctx.input(0), "input"))
    out_s, out_zp = scale_zp(ctx.quant(ctx.output(), "output"))
    if out_s != 16.0 / 256 or out_zp != _LOG_SOFTMAX_ZERO_POINT:
        raise ctx.fail(f"int8 output must have scale 16/256 and zero point 127; received scale {out_s} and zero "
                       f"point {out_zp}")
    # PreprocessLogSoftmaxScalingExp: the input multiplier as SOFTMAX's, and its inverse
    mult, left = _greater_than_one(min(in_s * (1 << (31 - _LOG_SOFTMAX_DIFF_BITS)), (1 << 31) - 1.0))
    rev_mult, rev_shift = fx.quantize_multiplier((1 << (31 - left)) / mult)
    diff_min = -_input_radius(_LOG_SOFTMAX_DIFF_BITS, left)
    diffs = -np.arange(256, dtype=np.int64)  # x - row max, 0 .. -255
    diff_q5 = fx.multiply_by_quantized_multiplier(diffs, mult, left)
    terms = np.where(diffs >= diff_min, gl.rescale(gl.exp_on_negative_values(diff_q5, _LOG_SOFTMAX_DIFF_BITS), 0,
                                                   _SOFTMAX_ACCUM_BITS), 0)
    out_shift = 31 - _LOG_SOFTMAX_DIFF_BITS - _LOG_SOFTMAX_OUTPUT_BITS

    def run_int8(xv):
        index = xv.astype(np.int16).max(axis=-1, keepdims=True) - xv.astype(np.int16)  # -(x - max)
        log_sum = gl.log_x_ge_1(terms[index].sum(axis=-1, keepdims=True), _SOFTMAX_ACCUM_BITS,
                                _LOG_SOFTMAX_DIFF_BITS)
        adjusted_min = np.maximum(diff_min - 1, fx.multiply_by_quantized_multiplier(log_sum + fx.INT32_MIN,
                                                                                    rev_mult, rev_shift))
        out = fx.rounding_divide_by_pot(diff_q5[index] - log_sum, out_shift) + _LOG_SOFTMAX_ZERO_POINT
        out = np.clip(out, INT8_MIN, INT8_MAX)
        return np.where(-index > adjusted_min, out, INT8_MIN).astype(np.int8)

    return run_int8
