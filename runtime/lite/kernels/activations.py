"""Activation ops: SOFTMAX, LOGISTIC, TANH, RELU, RELU6, RELU_N1_TO_1, LEAKY_RELU, HARD_SWISH, GELU, ELU, EXP,
RSQRT, LOG, ABS, LOG_SOFTMAX.

The int8 SOFTMAX, LOGISTIC and TANH follow TFLite's reference kernels, built
on gemmlowp fixed point (``runtime.lite.gemmlowp``); TFLite's optimized
kernels use float lookup tables instead and can differ by one step. int8 GELU
and EXP are lookup tables in both kernel sets, built as TFLite's LUTPopulate.
"""

from __future__ import annotations

import math

import numpy as np

from runtime.lite import fixedpoint as fx
from runtime.lite import gemmlowp as gl
from runtime.lite.kernels import INT8_MAX, INT8_MIN, OpContext, activation_range_int8, kernel, scale_zp

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


def lut_int8(ctx: OpContext, transform) -> np.ndarray:
    """TFLite's LUTPopulate<int8_t>: ``transform`` (float32 -> float32) of every int8 input value, in float32:
    dequantize, transform, multiply by 1 / output scale, round half away, add the zero point, clamp."""
    in_s, in_zp = scale_zp(ctx.quant(ctx.input(0), "input"))
    out_s, out_zp = scale_zp(ctx.quant(ctx.output(), "output"))
    f32 = np.float32
    values = np.arange(INT8_MIN, INT8_MAX + 1)
    dequantized = f32(in_s) * (values - in_zp).astype(f32)
    with np.errstate(over="ignore", invalid="ignore"):
        transformed = np.asarray(transform(dequantized), f32)
        rescaled = fx.round_half_away(transformed * (f32(1) / f32(out_s)))
        quantized = np.clip(np.nan_to_num(rescaled + f32(out_zp), nan=0.0), INT8_MIN, INT8_MAX)
    return np.trunc(quantized).astype(np.int8)


def _lookup(table: np.ndarray):
    return lambda xv: table[xv.astype(np.int16) - INT8_MIN]


def _correctly_rounded(fn):
    """A float32 libm function (expf, erfcf, tanhf) as the float64 function rounded to float32."""
    return lambda v: np.asarray([fn(float(t)) for t in np.ravel(v)], np.float64).astype(np.float32).reshape(
        np.shape(v))


_expf = _correctly_rounded(lambda t: math.exp(t) if t < 709 else math.inf)
_erfcf = _correctly_rounded(math.erfc)
_tanhf = _correctly_rounded(math.tanh)
_SQRT_2_OVER_PI = np.float32(2 / math.sqrt(math.pi) * math.sqrt(0.5))


def _gelu_transform(v: np.ndarray) -> np.ndarray:
    """TFLite's GeluTransform: 0.5f * x * erfcf(x * -(float)M_SQRT1_2), in float32."""
    f32 = np.float32
    return (f32(0.5) * v) * _erfcf(v * f32(-math.sqrt(0.5)))


def _gelu_approximate_transform(v: np.ndarray) -> np.ndarray:
    """TFLite's GeluTransformApproximate, in float32."""
    f32 = np.float32
    inner = _SQRT_2_OVER_PI * (v + f32(0.044715) * v * v * v)
    return (f32(0.5) * v) * (f32(1) + _tanhf(inner))


@kernel("ELU")
def elu(ctx: OpContext):
    """x for x > 0, exp(x) - 1 below (float32)."""
    if ctx.input(0).dtype != "float32":
        raise ctx.fail("int8 ELU is not supported by this runtime yet")
    return lambda xv: np.where(xv > 0, xv, np.expm1(np.minimum(xv, 0))).astype(np.float32)


@kernel("GELU")
def gelu(ctx: OpContext):
    """x * Phi(x), exact or tanh-approximated; int8 through TFLite's lookup table."""
    approximate = bool(ctx.options.get("approximate", False))
    if ctx.input(0).dtype == "int8":
        return _lookup(lut_int8(ctx, _gelu_approximate_transform if approximate else _gelu_transform))

    def run(xv):
        v = xv.astype(np.float64)
        if approximate:
            return (0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))).astype(np.float32)
        from runtime.kernels.activations import erf

        return (0.5 * v * (1 + erf(v / math.sqrt(2)))).astype(np.float32)

    return run


@kernel("EXP")
def exp(ctx: OpContext):
    """exp(x); int8 through TFLite's lookup table."""
    if ctx.input(0).dtype == "int8":
        return _lookup(lut_int8(ctx, _expf))
    return np.exp


_RSQRT_SHIFT = 20


@kernel("RSQRT")
def rsqrt(ctx: OpContext):
    """1 / sqrt(x); int8 as TFLite's RsqrtEvalQuantizedInt8 (a fixed-point Newton-Raphson per value, tabulated)."""
    x = ctx.input(0)
    if x.dtype != "int8":
        return lambda xv: (1 / np.sqrt(xv)).astype(np.float32)
    in_s, in_zp = scale_zp(ctx.quant(x, "input"))
    out_s, out_zp = scale_zp(ctx.quant(ctx.output(), "output"))
    # SetRsqrtOutputMultiplier: sqrt and product in float32, the reciprocal in double
    mult, shift = fx.quantize_multiplier(1.0 / float(np.sqrt(np.float32(in_s)) * np.float32(out_s)))
    table = np.full(256, INT8_MAX, np.int8)
    valid = np.ones(256, bool)
    for k, q in enumerate(range(INT8_MIN, INT8_MAX + 1)):
        value = q - in_zp
        if value < 0:
            valid[k] = False
        elif value > 0:
            m, s = gl.inv_sqrt_multiplier(value)
            data = fx.multiply_by_quantized_multiplier(np.int64(1), m, s + _RSQRT_SHIFT)
            out = int(fx.multiply_by_quantized_multiplier(data, mult, shift - _RSQRT_SHIFT)) + out_zp
            table[k] = min(max(out, INT8_MIN), INT8_MAX)

    def run_int8(xv):
        index = xv.astype(np.int16) - INT8_MIN
        if not valid[index].all():
            raise ctx.fail(f"int8 input below the zero point {in_zp} (a negative value): RSQRT is only defined "
                           "for non-negative inputs")
        return table[index]

    return run_int8


@kernel("LOG")
def log(ctx: OpContext):
    """Natural logarithm (float32)."""
    if ctx.input(0).dtype != "float32":
        raise ctx.fail("int8 LOG is not supported by this runtime yet")
    return lambda xv: np.log(xv).astype(np.float32)


@kernel("ABS")
def abs_(ctx: OpContext):
    """|x| (float32)."""
    if ctx.input(0).dtype != "float32":
        raise ctx.fail("int8 ABS is not supported by this runtime yet")
    return np.abs


@kernel("LOG_SOFTMAX")
def log_softmax(ctx: OpContext):
    """x - log(sum(exp(x))) over the last axis (float32)."""
    if ctx.input(0).dtype != "float32":
        raise ctx.fail("int8 LOG_SOFTMAX is not supported by this runtime yet")

    def run(xv):
        z = xv - xv.max(axis=-1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)

    return run
