"""Binary elementwise ops with numpy broadcasting: ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE,
GREATER and SELECT_V2.

int8 ADD and SUB rescale both inputs to a common scale with 20 bits of
headroom, as TFLite does; int8 MUL multiplies the offset inputs and
requantises once.
"""

from __future__ import annotations

import numpy as np

from runtime.lite import fixedpoint as fx
from runtime.lite import gemmlowp as gl
from runtime.lite.kernels import (
    INT8_MAX,
    INT8_MIN,
    OpContext,
    activation_range_int8,
    float_activation,
    kernel,
    scale_zp,
)

_LEFT_SHIFT = 20


def _common_scale(ctx: OpContext, left_shift: int):
    """TFLite's int8 two-input rescaling: (a, b) -> both inputs, minus their zero points, shifted left by
    ``left_shift`` bits and scaled to the common scale 2 * max(input scales); also that scale, the output
    scale and the output zero point."""
    (s1, z1), (s2, z2) = scale_zp(ctx.quant(ctx.input(0), "input 1")), scale_zp(ctx.quant(ctx.input(1), "input 2"))
    out_s, out_zp = scale_zp(ctx.quant(ctx.output(), "output"))
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = fx.quantize_multiplier(s1 / twice_max)
    m2, sh2 = fx.quantize_multiplier(s2 / twice_max)
    small = fx.multiply_by_quantized_multiplier_smaller_than_one

    def rescale(av, bv):
        return (small((av.astype(np.int64) - z1) << left_shift, m1, sh1),
                small((bv.astype(np.int64) - z2) << left_shift, m2, sh2))

    return rescale, twice_max, out_s, out_zp


def _add_sub(ctx: OpContext, sign: int):
    a, y = ctx.input(0), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    if a.dtype == "int8":
        rescale, twice_max, out_s, out_zp = _common_scale(ctx, _LEFT_SHIFT)
        mo, sho = fx.quantize_multiplier(twice_max / ((1 << _LEFT_SHIFT) * out_s))
        lo, hi = activation_range_int8(act, ctx.quant(y, "output"))
        small = fx.multiply_by_quantized_multiplier_smaller_than_one

        def run_int8(av, bv):
            x1, x2 = rescale(av, bv)
            raw = x1 + x2 if sign > 0 else x1 - x2
            return np.clip(small(raw, mo, sho) + out_zp, lo, hi).astype(np.int8)

        return run_int8

    def run_float(av, bv):
        out = np.add(av, bv, dtype=np.float32) if sign > 0 else np.subtract(av, bv, dtype=np.float32)
        return float_activation(out, act)

    return run_float


@kernel("ADD")
def add(ctx: OpContext):
    """a + b, broadcast."""
    return _add_sub(ctx, +1)


@kernel("SUB")
def sub(ctx: OpContext):
    """a - b, broadcast."""
    return _add_sub(ctx, -1)


@kernel("MUL")
def mul(ctx: OpContext):
    """a * b, broadcast."""
    a, b, y = ctx.input(0), ctx.input(1), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    if a.dtype == "int8":
        (s1, z1), (s2, z2) = scale_zp(ctx.quant(a, "input 1")), scale_zp(ctx.quant(b, "input 2"))
        out_s, out_zp = scale_zp(ctx.quant(y, "output"))
        m, sh = fx.quantize_multiplier(s1 * s2 / out_s)
        lo, hi = activation_range_int8(act, ctx.quant(y, "output"))

        def run_int8(av, bv):
            prod = (av.astype(np.int64) - z1) * (bv.astype(np.int64) - z2)
            return np.clip(fx.multiply_by_quantized_multiplier(prod, m, sh) + out_zp, lo, hi).astype(np.int8)

        return run_int8

    return lambda av, bv: float_activation(np.multiply(av, bv, dtype=np.float32), act)


def _divide_by_pot_x86(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT on int32 as compiled for x86, also for exponents past 31 (which
    DIV reaches for dividends of magnitude 1): the mask wraps to all ones and the shift count to its low
    5 bits, so such values round to x >> (exponent % 32) plus one."""
    exponent = np.asarray(exponent, np.int64)
    wide = exponent > 31
    regular = fx.rounding_divide_by_pot(x, np.where(wide, 0, exponent))
    x = np.asarray(x, np.int64)
    wrapped = (x >> (exponent & 31)) + (x > np.where(x < 0, 0, -1))
    return np.where(wide, wrapped, regular)


@kernel("DIV")
def div(ctx: OpContext):
    """a / b, broadcast; int8 as TFLite's DivElementwise: a fixed-point reciprocal of the divisor, the
    dividend shifted to its headroom, one requantization."""
    a, b, y = ctx.input(0), ctx.input(1), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    if a.dtype != "int8":
        return lambda av, bv: float_activation(np.divide(av, bv, dtype=np.float32), act)
    (s1, z1), (s2, z2) = scale_zp(ctx.quant(a, "input 1")), scale_zp(ctx.quant(b, "input 2"))
    out_s, out_zp = scale_zp(ctx.quant(y, "output"))
    f32 = np.float32
    mult, shift = fx.quantize_multiplier(float(f32(s1) / (f32(s2) * f32(out_s))))  # float32, as DivPrepare
    lo, hi = activation_range_int8(act, ctx.quant(y, "output"))

    def run_int8(av, bv):
        num, den = np.broadcast_arrays(av.astype(np.int64) - z1, bv.astype(np.int64) - z2)
        if np.any(den == 0):
            raise ctx.fail(f"int8 divisor equal to its zero point {z2} (a division by zero)")
        num, den = np.where(den < 0, -num, num), np.abs(den)
        inv, recip_shift = gl.reciprocal(den, 31)
        headroom = gl.leading_sign_bits(num)
        quotient = fx.saturating_rounding_doubling_high_mul(num << headroom, inv)
        total_shift = shift - recip_shift - headroom
        out = _divide_by_pot_x86(fx.saturating_rounding_doubling_high_mul(quotient, mult), -total_shift)
        return np.clip(out + out_zp, lo, hi).astype(np.int8)

    return run_int8


_SQUARED_DIFFERENCE_SHIFT = 7


@kernel("SQUARED_DIFFERENCE")
def squared_difference(ctx: OpContext):
    """(a - b) ** 2, broadcast; int8 rescales both inputs to a common scale with 7 bits of
    headroom, squares the integer difference and requantises once, as TFLite does."""
    if ctx.input(0).dtype == "int8":
        rescale, twice_max, out_s, out_zp = _common_scale(ctx, _SQUARED_DIFFERENCE_SHIFT)
        mo, sho = fx.quantize_multiplier(twice_max * twice_max / ((1 << 2 * _SQUARED_DIFFERENCE_SHIFT) * out_s))

        def run_int8(av, bv):
            x1, x2 = rescale(av, bv)
            raw = fx.multiply_by_quantized_multiplier((x1 - x2) ** 2, mo, sho) + out_zp
            return np.clip(raw, INT8_MIN, INT8_MAX).astype(np.int8)

        return run_int8
    return lambda av, bv: np.square(np.subtract(av, bv, dtype=np.float32))


def _same_qparams(ctx: OpContext) -> None:
    if ctx.input(0).dtype == "int8":
        q = [ctx.quant(t, "an") for t in (ctx.input(0), ctx.input(1), ctx.output())]
        if not (q[0].same_as(q[1]) and q[0].same_as(q[2])):
            raise ctx.fail("int8 inputs and output must share scale and zero point")


@kernel("MAXIMUM")
def maximum(ctx: OpContext):
    """Elementwise maximum (int8: inputs and output share qparams)."""
    _same_qparams(ctx)
    return np.maximum


@kernel("MINIMUM")
def minimum(ctx: OpContext):
    """Elementwise minimum (int8: inputs and output share qparams)."""
    _same_qparams(ctx)
    return np.minimum


@kernel("GREATER")
def greater(ctx: OpContext):
    """a > b, broadcast, as a bool tensor (float32 inputs)."""
    if ctx.input(0).dtype != "float32":
        raise ctx.fail("only float32 GREATER is supported")
    return np.greater


@kernel("SELECT_V2")
def select_v2(ctx: OpContext):
    """Where the bool condition holds the second input, else the third, broadcast (float32)."""
    if ctx.input(1).dtype != "float32":
        raise ctx.fail("only float32 SELECT_V2 is supported")
    return lambda cond, a, b: np.where(cond, a, b).astype(np.float32)
