"""TFLite's integer arithmetic, vectorised over numpy int64 arrays.

These are the primitives of TFLite's reference kernels (gemmlowp's
fixed-point helpers): a real multiplier is stored as a Q31 int32 and a
power-of-two shift, products are rounded half away from zero in the high
word, and right shifts round to nearest with ties away from zero. Values are
carried in int64 so that no intermediate overflows; results equal the int32
C code wherever that code does not overflow.

>>> m, s = quantize_multiplier(0.3)
>>> int(multiply_by_quantized_multiplier(np.int64(1000), m, s))
300
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def round_half_away(x):
    """std::round: to nearest, ties away from zero (float in, float out)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(Q31 multiplier, shift) with real == multiplier * 2**(shift - 31), TFLite's QuantizeMultiplier."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(np.float64(q * (1 << 31))))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """quantize_multiplier over an array: (multipliers, shifts) as int64 arrays."""
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(reals)]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2**31), ties away from zero."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    r = a * b
    r += np.where(r >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    r += (r < 0) * np.int64((1 << 31) - 1)  # >> floors; C's division truncates toward zero
    r >>= 31
    if b.ndim and np.any((a == INT32_MIN) & (b == INT32_MIN)):
        r = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, r)
    elif not b.ndim and int(b) == INT32_MIN and np.any(a == INT32_MIN):
        r = np.where(a == INT32_MIN, INT32_MAX, r)
    return r


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2**exponent rounded to nearest, ties away from zero."""
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier_single_rounding(x, multiplier, shift) -> np.ndarray:
    """x * multiplier * 2**(shift - 31) rounded once, half up (TFLITE_SINGLE_ROUNDING's form).

    LiteRT's reference FULLY_CONNECTED requantises this way; its other
    reference kernels use the double-rounding form below.
    """
    x = np.asarray(x, np.int64)
    total = 31 - np.asarray(shift, np.int64)
    return (x * np.asarray(multiplier, np.int64) + (np.int64(1) << (total - 1))) >> total


def multiply_by_quantized_multiplier_half_up(x, multiplier, shift) -> np.ndarray:
    """As multiply_by_quantized_multiplier, but the final right shift rounds ties up
    (LiteRT's optimized FULLY_CONNECTED on x86)."""
    x = np.asarray(x, np.int64)
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    high = saturating_rounding_doubling_high_mul(x * (np.int64(1) << left), multiplier)
    return (high + ((np.int64(1) << right) >> 1)) >> right


def multiply_by_quantized_multiplier_neon(x, multiplier, shift) -> np.ndarray:
    """x * multiplier * 2**(shift - 31) with both roundings half up (toward +inf): NEON's vqrdmulh
    then vrshl (MultiplyByQuantizedMultiplier4Rows), which LiteRT's optimized kernels use for blocks
    of lanes, on x86 too (through NEON_2_SSE)."""
    x = np.asarray(x, np.int64)
    left, right = max(int(shift), 0), max(-int(shift), 0)
    high = ((x << left) * np.int64(multiplier) + np.int64(1 << 30)) >> 31
    return (high + ((np.int64(1) << right) >> 1)) >> right


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier (gemmlowp double rounding): x * multiplier * 2**(shift - 31).

    With a non-negative multiplier (always, from quantize_multiplier) both
    roundings act on the magnitude: |high| = (|x m| + 2**30 - [x m < 0]) >> 31
    (SaturatingRoundingDoublingHighMul, ties away from zero), then
    (|high| + 2**(r-1)) >> r (RoundingDivideByPOT), and the sign goes back on.
    Computed in place: a conv output is requantised with a handful of passes.
    """
    shift = np.asarray(shift, np.int64)
    multiplier = np.asarray(multiplier, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    ab = np.array(x, np.int64)  # a copy we own
    if np.any(left):
        ab <<= left
    ab *= multiplier
    negative = ab < 0
    np.abs(ab, out=ab)
    ab += np.int64(1 << 30)
    ab -= negative
    ab >>= 31
    ab += (np.int64(1) << right) >> 1
    ab >>= right
    np.negative(ab, out=ab, where=negative)
    return ab


def multiply_by_quantized_multiplier_smaller_than_one(x, multiplier, shift) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp: shift <= 0."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -np.asarray(shift))


def trunc_div(a, b) -> np.ndarray:
    """C integer division (truncating toward zero) of int arrays."""
    a = np.asarray(a, np.int64)
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def round_div(acc, n) -> np.ndarray:
    """TFLite's rounded integer mean: (acc +- n/2) / n with C truncation."""
    acc = np.asarray(acc, np.int64)
    half = np.asarray(n, np.int64) // 2
    return np.where(acc > 0, trunc_div(acc + half, n), trunc_div(acc - half, n))
