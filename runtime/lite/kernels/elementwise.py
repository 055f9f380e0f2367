"""Binary elementwise ops with numpy broadcasting: ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE,
GREATER and SELECT_V2.

int8 ADD and SUB rescale both inputs to a common scale with 20 bits of
headroom, as TFLite does; int8 MUL multiplies the offset inputs and
requantises once.
"""

from __future__ import annotations

import numpy as np

from runtime.lite import fixedpoint as fx
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


def _add_sub(ctx: OpContext, sign: int):
    a, b, y = ctx.input(0), ctx.input(1), ctx.output()
    act = ctx.options.get("fused_activation_function", "NONE")
    if a.dtype == "int8":
        (s1, z1), (s2, z2) = scale_zp(ctx.quant(a, "input 1")), scale_zp(ctx.quant(b, "input 2"))
        out_s, out_zp = scale_zp(ctx.quant(y, "output"))
        twice_max = 2.0 * max(s1, s2)
        m1, sh1 = fx.quantize_multiplier(s1 / twice_max)
        m2, sh2 = fx.quantize_multiplier(s2 / twice_max)
        mo, sho = fx.quantize_multiplier(twice_max / ((1 << _LEFT_SHIFT) * out_s))
        lo, hi = activation_range_int8(act, ctx.quant(y, "output"))
        small = fx.multiply_by_quantized_multiplier_smaller_than_one

        def run_int8(av, bv):
            x1 = small((av.astype(np.int64) - z1) << _LEFT_SHIFT, m1, sh1)
            x2 = small((bv.astype(np.int64) - z2) << _LEFT_SHIFT, m2, sh2)
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


@kernel("DIV")
def div(ctx: OpContext):
    """a / b, broadcast (float32)."""
    act = ctx.options.get("fused_activation_function", "NONE")
    if ctx.input(0).dtype != "float32":
        raise ctx.fail("only float32 DIV is supported")
    return lambda av, bv: float_activation(np.divide(av, bv, dtype=np.float32), act)


_SQUARED_DIFFERENCE_SHIFT = 7


@kernel("SQUARED_DIFFERENCE")
def squared_difference(ctx: OpContext):
    """(a - b) ** 2, broadcast; int8 rescales both inputs to a common scale with 7 bits of
    headroom, squares the integer difference and requantises once, as TFLite does."""
    a, b, y = ctx.input(0), ctx.input(1), ctx.output()
    if a.dtype == "int8":
        (s1, z1), (s2, z2) = scale_zp(ctx.quant(a, "input 1")), scale_zp(ctx.quant(b, "input 2"))
        out_s, out_zp = scale_zp(ctx.quant(y, "output"))
        twice_max = 2.0 * max(s1, s2)
        m1, sh1 = fx.quantize_multiplier(s1 / twice_max)
        m2, sh2 = fx.quantize_multiplier(s2 / twice_max)
        mo, sho = fx.quantize_multiplier(twice_max * twice_max / ((1 << 2 * _SQUARED_DIFFERENCE_SHIFT) * out_s))
        small = fx.multiply_by_quantized_multiplier_smaller_than_one

        def run_int8(av, bv):
            x1 = small((av.astype(np.int64) - z1) << _SQUARED_DIFFERENCE_SHIFT, m1, sh1)
            x2 = small((bv.astype(np.int64) - z2) << _SQUARED_DIFFERENCE_SHIFT, m2, sh2)
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
