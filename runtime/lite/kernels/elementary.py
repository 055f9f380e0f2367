"""Elementwise math: ELU, GELU, EXP, RSQRT, LOG, ABS.

int8 GELU, EXP and LOG are lookup tables in both of LiteRT's kernel sets,
built as TFLite's LUTPopulate (the float32 function of every int8 value);
RSQRT tabulates TFLite's fixed-point Newton-Raphson per int8 value; ABS
requantizes ``|q - zp|``.
"""

from __future__ import annotations

import math

import numpy as np

from runtime.lite import fixedpoint as fx
from runtime.lite import gemmlowp as gl
from runtime.lite.kernels import INT8_MAX, INT8_MIN, OpContext, kernel, scale_zp


def lut_int8(ctx: OpContext, transform) -> np.ndarray:
    """TFLite's LUTPopulate<int8_t>: ``transform`` (float32 -> float32) of every int8 input value, in float32:
    dequantize, transform, multiply by 1 / output scale, round half away, add the zero point, clamp.
    A NaN, infinite or out-of-int32 value converts to INT32_MIN as on x86 (cvttss2si), so clamps to -128."""
    in_s, in_zp = scale_zp(ctx.quant(ctx.input(0), "input"))
    out_s, out_zp = scale_zp(ctx.quant(ctx.output(), "output"))
    f32 = np.float32
    values = np.arange(INT8_MIN, INT8_MAX + 1)
    dequantized = f32(in_s) * (values - in_zp).astype(f32)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        transformed = np.asarray(transform(dequantized), f32)
        shifted = fx.round_half_away(transformed * (f32(1) / f32(out_s))) + f32(out_zp)
        representable = np.isfinite(shifted) & (np.abs(shifted) < 2.0 ** 31)
        quantized = np.where(representable, np.trunc(np.where(representable, shifted, 0)), INT8_MIN)
    return np.clip(quantized, INT8_MIN, INT8_MAX).astype(np.int8)


def _lookup(table: np.ndarray):
    return lambda xv: table[xv.astype(np.int16) - INT8_MIN]


def _correctly_rounded(fn):
    """A float32 libm function (expf, erfcf, tanhf) as the float64 function rounded to float32."""
    return lambda v: np.asarray([fn(float(t)) for t in np.ravel(v)], np.float64).astype(np.float32).reshape(
        np.shape(v))


expf = _correctly_rounded(lambda t: math.exp(t) if t < 709 else math.inf)  # also SOFTMAX's optimized table
_logf = _correctly_rounded(lambda t: math.log(t) if t > 0 else -math.inf if t == 0 else math.nan)
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
        return _lookup(lut_int8(ctx, expf))
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
    """Natural logarithm; int8 through TFLite's lookup table (values at or below zero give -128)."""
    if ctx.input(0).dtype == "int8":
        return _lookup(lut_int8(ctx, _logf))
    return lambda xv: np.log(xv).astype(np.float32)


@kernel("ABS")
def abs_(ctx: OpContext):
    """|x|; int8 as TFLite's AbsEvalQuantized: |q - in_zp| requantized to the output scale."""
    x = ctx.input(0)
    if x.dtype != "int8":
        return np.abs
    in_s, in_zp = scale_zp(ctx.quant(x, "input"))
    out_s, out_zp = scale_zp(ctx.quant(ctx.output(), "output"))
    mult, shift = fx.quantize_multiplier(in_s / out_s)
    values = np.abs(np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.int64) - in_zp)
    table = np.clip(fx.multiply_by_quantized_multiplier(values, mult, shift) + out_zp, INT8_MIN, INT8_MAX)
    return _lookup(table.astype(np.int8))
