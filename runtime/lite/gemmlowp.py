"""gemmlowp's fixed-point transcendental functions over int64 arrays of int32 raw values.

A ``FixedPoint<int32, I>`` is a raw int32 r meaning r / 2**(31 - I). The
products are ``SaturatingRoundingDoublingHighMul``, the sums wrap as int32
(they never do for the inputs these functions get). TFLite's reference
SOFTMAX, LOGISTIC and TANH kernels are built from these.
"""

from __future__ import annotations

import numpy as np

from runtime.lite.fixedpoint import INT32_MAX, INT32_MIN, rounding_divide_by_pot
from runtime.lite.fixedpoint import saturating_rounding_doubling_high_mul as mul

ONE_Q0 = INT32_MAX  # 1.0 in FixedPoint<int32, 0> saturates to the largest raw value


def saturating_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<exponent > 0>: x * 2**exponent saturated to int32."""
    threshold = (1 << (31 - exponent)) - 1
    out = x << exponent
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out)


def rescale(x: np.ndarray, src_bits: int, dst_bits: int) -> np.ndarray:
    """Rescale<dst_bits>(FixedPoint<src_bits>): a saturating or rounding shift by src - dst."""
    exponent = src_bits - dst_bits
    if exponent > 0:
        return saturating_shift_left(x, exponent)
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    return x


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = a + (1 << 28)  # a + 1/8
    x2 = mul(x, x)
    x3 = mul(x2, x)
    x4 = mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(mul(x4_over_4 + x3, constant_1_over_3) + x2, 1)
    return constant_term + mul(constant_term, x + poly)


# exp(-2**e) in Q0.31 for the barrel shifter of exp_on_negative_values.
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
               (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """exp(a) for a <= 0 in FixedPoint<int32, integer_bits>; the result in Q0.31."""
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (frac_bits + exponent)
            result = np.where((remainder & bit) != 0, mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, ONE_Q0, result)


def _rounding_half_sum(a: np.ndarray, b: int) -> np.ndarray:
    s = a + b
    s = s + np.where(s >= 0, 1, -1)
    return np.where(s >= 0, s // 2, -((-s) // 2))


def _newton_reciprocal(half_denominator: np.ndarray) -> np.ndarray:
    """x ~ 1 / (2 * half_denominator) in Q2.29, three Newton-Raphson steps."""
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    one_q2 = 1 << 29
    x = constant_48_over_17 + mul(half_denominator, constant_neg_32_over_17)
    for _ in range(3):
        half_denominator_times_x = mul(half_denominator, x)
        one_minus = one_q2 - half_denominator_times_x
        x = x + rescale(mul(x, one_minus), 4, 2)
    return x


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1), Q0.31 in and out."""
    x = _newton_reciprocal(_rounding_half_sum(a, ONE_Q0))
    return rescale(x, 1, 0)  # ExactMulByPot<-1> relabels Q2 as Q1, then back to Q0


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """(1 - a) / (1 + a) for a in [0, 1), Q0.31 in and out."""
    x = _newton_reciprocal(_rounding_half_sum(a, ONE_Q0))
    return rescale(x - (1 << 29), 2, 0)


def logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """1 / (1 + exp(-a)) of FixedPoint<int32, integer_bits> a; the result in Q0.31."""
    positive = a > 0
    abs_a = np.where(positive, a, -a)
    result_if_positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-abs_a, integer_bits))
    result_if_negative = ONE_Q0 - result_if_positive
    out = np.where(positive, result_if_positive, result_if_negative)
    return np.where(a == 0, 1 << 30, out)


def tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """tanh of FixedPoint<int32, integer_bits> a; the result in Q0.31."""
    negative = a < 0
    n = np.where(negative, a, -a)
    # exp(2n): ExactMulByPot<1> reads the same raw value with one more integer bit.
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    out = np.where(negative, -t, t)
    return np.where(a == 0, 0, out)


def reciprocal(x: np.ndarray, integer_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's GetReciprocal of a positive FixedPoint<int32, integer_bits>: (scale Q0.31, bits over unit)."""
    x = np.asarray(x, np.int64)
    headroom_plus_one = 32 - _bit_length(x)
    num_bits_over_unit = integer_bits - headroom_plus_one
    shifted_minus_one = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    return one_over_one_plus_x_for_x_in_0_1(shifted_minus_one), num_bits_over_unit


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of positive int64 values < 2**32 (32 - CountLeadingZeros)."""
    out = np.zeros(x.shape, np.int64)
    v = x.copy()
    for shift in (16, 8, 4, 2, 1):
        big = v >= (1 << shift)
        out += np.where(big, shift, 0)
        v = np.where(big, v >> shift, v)
    return out + (v > 0)


_HALF_THREE_Q3 = (1 << 28) + (1 << 27)  # 1.5 in FixedPoint<int32, 3>
_HALF_SQRT_2_Q0 = 1518500250  # sqrt(2) / 2 in FixedPoint<int32, 0>


def inv_sqrt_multiplier(value: int) -> tuple[int, int]:
    """TFLite's GetInvSqrtQuantizedMultiplierExp(value, kReverseShift): (multiplier, left shift) with
    1 / sqrt(value) = multiplier * 2**(shift - 31), by five Newton-Raphson steps in FixedPoint<int32, 3>."""
    if value <= 1:
        return INT32_MAX, 0
    shift = 11
    while value >= (1 << 29):
        value //= 4
        shift += 1
    pairs = (32 - value.bit_length() - 1) // 2 - 1  # CountLeadingZeros(value) - 1, in bit pairs, minus one
    shift -= pairs
    value <<= 2 * pairs
    x_in = np.int64(value >> 1)
    half_input = rounding_divide_by_pot(x_in, 1)
    x = np.int64(1 << 28)  # F3::One()
    for _ in range(5):
        x3 = rescale(mul(mul(x, x), x), 9, 3)
        x = rescale(np.int64(mul(np.int64(_HALF_THREE_Q3), x) - mul(half_input, x3)), 6, 3)
    raw = int(mul(x, np.int64(_HALF_SQRT_2_Q0)))
    if shift < 0:
        raw <<= -shift
        shift = 0
    return raw, -shift


def _saturate(x: np.ndarray) -> np.ndarray:
    return np.clip(x, INT32_MIN, INT32_MAX)


def _saturating_shift_param(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOTParam with a non-negative (per element) exponent."""
    return _saturate(np.asarray(x, np.int64) << np.asarray(exponent, np.int64))


# Constants of TFLite's log_x_for_x_greater_than_or_equal_to_1_impl, in Q0.31.
_LOG_2 = 1488522236
_SQRT_SQRT_HALF = 1805811301
_SQRT_HALF = 1518500250
_ONE_QUARTER = 1 << 29
_ALPHA_N = 117049297
_ALPHA_D = 127690142
_ALPHA_I = 1057819769
_ALPHA_F = 638450708


def log_x_ge_1(x: np.ndarray, input_bits: int, output_bits: int) -> np.ndarray:
    """TFLite's log_x_for_x_greater_than_or_equal_to_1<output_bits>(FixedPoint<int32, input_bits> x): the
    exponent of 2 from the leading zeros, the mantissa's log from a rational approximation."""
    accum_bits = output_bits + 1
    z_a = np.asarray(x, np.int64)
    shifted_quarter = rescale(np.int64(_ONE_QUARTER), 0, accum_bits)
    headroom_a = 32 - _bit_length(z_a)
    r_a_tmp = _saturating_shift_param(z_a, headroom_a - 1)
    r_a = _saturating_shift_param(mul(r_a_tmp, _SQRT_HALF), 1)
    pow_a = _saturate(_saturating_shift_param(input_bits - headroom_a, 31 - accum_bits) + shifted_quarter)
    z_b = mul(z_a, _SQRT_HALF)
    headroom_b = 32 - _bit_length(z_b) - 1
    r_b = _saturating_shift_param(z_a, headroom_b)
    pow_b = _saturate(_saturating_shift_param(input_bits - headroom_b, 31 - accum_bits) - shifted_quarter)
    r = np.minimum(r_a, r_b)
    pow_adj = np.maximum(pow_a, pow_b)
    p = _rounding_half_sum(r, _SQRT_SQRT_HALF)
    q = r - _SQRT_SQRT_HALF
    q = q + q
    common_sq = mul(q, q)
    num = mul(q, r) + mul(mul(q, common_sq), _ALPHA_N)
    denom_minus_one = mul(p, _ALPHA_I + q + mul(_ALPHA_D, common_sq)) + mul(_ALPHA_F, q)
    recip_denom = one_over_one_plus_x_for_x_in_0_1(denom_minus_one)
    num_scaled = rescale(num, 0, accum_bits)
    return rescale(mul(pow_adj, _LOG_2) + mul(num_scaled, recip_denom), accum_bits, output_bits)


def leading_sign_bits(x: np.ndarray) -> np.ndarray:
    """TFLite's CountLeadingSignBits of int32 values: redundant sign bits (31 for 0 and -1)."""
    x = np.asarray(x, np.int64)
    return 31 - _bit_length(np.where(x >= 0, x, -x - 1))
