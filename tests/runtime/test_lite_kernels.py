"""runtime.lite kernels, one op at a time, against LiteRT's reference and builtin kernels.

Each row is a one-op .tflite model with random int8 (or float) inputs; our
output must equal LiteRT's reference kernels bit for bit, and with
``kernels="builtin"`` LiteRT's optimized kernels (except where noted).
"""

from __future__ import annotations

import numpy as np
import pytest

from converters.lite.model import QuantParams
from runtime.lite import fixedpoint as fx
from tests.converters.lite_helpers import Q, litert, run_both, single_op

pytest.importorskip("ai_edge_litert")
pytestmark = pytest.mark.lite

RNG = np.random.default_rng(2)
A, B, OUT = Q(0.07, 5), Q(0.03, -20), Q(0.09, 10)


def i8(*shape):
    return RNG.integers(-128, 128, shape).astype(np.int8)


def _conv_case(pad, stride, dil, act, groups=1):
    w = RNG.integers(-127, 128, (6, 3, 3, 4 // groups)).astype(np.int8)
    ws = (np.abs(RNG.standard_normal(6)) * 0.01 + 0.001).astype(np.float32)
    h = 9
    ho = (h + stride - 1) // stride if pad == "SAME" else (h - 2 * dil - 1) // stride + 1
    m = single_op("CONV_2D", [("int8", (12, h, h, 4), A, None), ("int8", w.shape, QuantParams(ws, np.zeros(6), 0), w),
                              ("int32", (6,), QuantParams(ws * np.float32(0.07), np.zeros(6), 0),
                               RNG.integers(-5000, 5000, 6))],
                  [("int8", (12, ho, ho, 6), OUT)],
                  {"padding": pad, "stride_w": stride, "stride_h": stride, "dilation_w_factor": dil,
                   "dilation_h_factor": dil, "fused_activation_function": act}, 3)
    return m, [i8(12, h, h, 4)]


def _depthwise_case():
    w = RNG.integers(-127, 128, (1, 3, 3, 8)).astype(np.int8)
    ws = (np.abs(RNG.standard_normal(8)) * 0.01 + 0.001).astype(np.float32)
    m = single_op("DEPTHWISE_CONV_2D",
                  [("int8", (20, 7, 7, 4), A, None), ("int8", w.shape, QuantParams(ws, np.zeros(8), 3), w),
                   ("int32", (8,), QuantParams(ws * np.float32(0.07), np.zeros(8), 0), RNG.integers(-500, 500, 8))],
                  [("int8", (20, 4, 4, 8), OUT)],
                  {"padding": "SAME", "stride_w": 2, "stride_h": 2, "depth_multiplier": 2}, 3)
    return m, [i8(20, 7, 7, 4)]


def _fc_case(per_channel):
    w = RNG.integers(-127, 128, (40, 64)).astype(np.int8)
    ws = (np.abs(RNG.standard_normal(40)) * 0.01 + 0.001).astype(np.float32)
    wq = QuantParams(ws, np.zeros(40), 0) if per_channel else Q(float(ws[0]), 0)
    bq = QuantParams(ws * np.float32(0.05), np.zeros(40), 0) if per_channel else Q(float(ws[0] * np.float32(0.05)), 0)
    m = single_op("FULLY_CONNECTED", [("int8", (400, 64), Q(0.05, 3), None), ("int8", w.shape, wq, w),
                                      ("int32", (40,), bq, RNG.integers(-3000, 3000, 40))],
                  [("int8", (400, 40), Q(0.9, -5))], {}, 4)
    return m, [i8(400, 64)]


def _tconv_case(pad, out_hw):
    w = RNG.integers(-127, 128, (5, 3, 3, 4)).astype(np.int8)
    ws = (np.abs(RNG.standard_normal(5)) * 0.01 + 0.001).astype(np.float32)
    m = single_op("TRANSPOSE_CONV",
                  [("int32", (4,), None, [4, out_hw, out_hw, 5]), ("int8", w.shape, QuantParams(ws, np.zeros(5), 0), w),
                   ("int8", (4, 5, 5, 4), A, None),
                   ("int32", (5,), QuantParams(ws * np.float32(0.07), np.zeros(5), 0), RNG.integers(-500, 500, 5))],
                  [("int8", (4, out_hw, out_hw, 5), OUT)], {"padding": pad, "stride_w": 2, "stride_h": 2}, 3)
    return m, [i8(4, 5, 5, 4)]


def _binary(op, act, shape_b=(30, 5, 6)):
    m = single_op(op, [("int8", (30, 5, 6), A, None), ("int8", shape_b, B, None)], [("int8", (30, 5, 6), OUT)],
                  {"fused_activation_function": act}, 2)
    return m, [i8(30, 5, 6), i8(*shape_b)]


def _unary(op, in_q, out_q, options=None, version=2, shape=(70, 40)):
    return single_op(op, [("int8", shape, in_q, None)], [("int8", shape, out_q)], options or {}, version), [i8(*shape)]


def _pool(op, pad):
    out = 3 if pad == "VALID" else 4
    return single_op(op, [("int8", (6, 7, 7, 3), A, None)], [("int8", (6, out, out, 3), A)],
                     {"padding": pad, "stride_w": 2, "stride_h": 2, "filter_width": 3, "filter_height": 3}, 2), \
        [i8(6, 7, 7, 3)]


def _mean(shape, axes, keep):
    out = [1 if i in axes else d for i, d in enumerate(shape)] if keep else \
        [d for i, d in enumerate(shape) if i not in axes]
    m = single_op("MEAN", [("int8", shape, Q(0.05, 3), None), ("int32", (len(axes),), None, axes)],
                  [("int8", out, Q(0.03, -7))], {"keep_dims": keep}, 2)
    return m, [i8(*shape)]


def _resize(op, align, half):
    m = single_op(op, [("int8", (3, 3, 5, 2), A, None), ("int32", (2,), None, [7, 8])], [("int8", (3, 7, 8, 2), A)],
                  {"align_corners": align, "half_pixel_centers": half}, 3 if half else 2)
    return m, [i8(3, 3, 5, 2)]


def _div(a_q, b_q, out_q):
    """Divisors anywhere but at their zero point (a division by zero)."""
    b = i8(40, 30)
    b[b == b_q.zero_point[0]] += 1
    return single_op("DIV", [("int8", (40, 30), a_q, None), ("int8", (40, 30), b_q, None)],
                     [("int8", (40, 30), out_q)], {"fused_activation_function": "NONE"}, 1), [i8(40, 30), b]


def _rsqrt(in_q, out_q):
    """Every int8 input value at or above the zero point (RSQRT refuses negative values)."""
    x = np.arange(-128, 128, dtype=np.int8).reshape(4, 64)
    return single_op("RSQRT", [("int8", (4, 64), in_q, None)], [("int8", (4, 64), out_q)], {}, 2), [x]


def _quantize_float():
    x = (RNG.standard_normal((60, 50)) * 3).astype(np.float32)
    x[0, :20] = (np.arange(20) + 0.5) * np.float32(0.05)  # exact ties: rounding modes differ
    return single_op("QUANTIZE", [("float32", x.shape, None, None)], [("int8", x.shape, Q(0.05, 3))], {}, 1), [x]


CASES = {
    **{f"conv_{p}_s{s}_d{d}_{a}": (lambda p=p, s=s, d=d, a=a: _conv_case(p, s, d, a))
       for p, s, d, a in [("SAME", 1, 1, "NONE"), ("VALID", 2, 1, "NONE"), ("SAME", 2, 1, "RELU"),
                          ("VALID", 1, 2, "RELU6")]},
    "depthwise_mult2": _depthwise_case,
    "conv_grouped": lambda: _conv_case("SAME", 1, 1, "NONE", groups=2),
    "fc_per_channel": lambda: _fc_case(True),
    "fc_per_tensor": lambda: _fc_case(False),
    "tconv_same": lambda: _tconv_case("SAME", 10),
    "tconv_valid": lambda: _tconv_case("VALID", 11),
    **{f"{op.lower()}_{act.lower()}": (lambda op=op, act=act: _binary(op, act))
       for op in ("ADD", "SUB", "MUL") for act in ("NONE", "RELU6")},
    "add_broadcast": lambda: _binary("ADD", "NONE", (1, 1, 6)),
    "div": lambda: _div(Q(0.02, 13), Q(0.015, -128), Q(0.0056, 3)),
    "div_signed_divisor": lambda: _div(Q(0.05, -20), Q(0.04, 0), Q(0.2, 5)),
    "squared_difference_broadcast": lambda: (single_op(
        "SQUARED_DIFFERENCE", [("int8", (30, 5, 6), A, None), ("int8", (30, 5, 1), B, None)],
        [("int8", (30, 5, 6), Q(0.2, -128))], {}, 2), [i8(30, 5, 6), i8(30, 5, 1)]),
    "squared_difference_small_scale": lambda: (single_op(
        "SQUARED_DIFFERENCE", [("int8", (30, 5, 6), Q(0.01, 3), None), ("int8", (30, 5, 6), Q(0.02, -9), None)],
        [("int8", (30, 5, 6), Q(0.001, -128))], {}, 2), [i8(30, 5, 6), i8(30, 5, 6)]),
    "prelu_broadcast": lambda: (single_op(
        "PRELU", [("int8", (8, 4, 4, 3), A, None), ("int8", (1, 1, 3), Q(0.004, 0), [[[-90, 20, 127]]])],
        [("int8", (8, 4, 4, 3), OUT)], {}, 1), [i8(8, 4, 4, 3)]),
    "batch_matmul_adj_y": lambda: (single_op(
        "BATCH_MATMUL", [("int8", (6, 5, 8), A, None), ("int8", (6, 7, 8), B, None)],
        [("int8", (6, 5, 7), Q(0.2, 4))], {"adj_x": False, "adj_y": True}, 2), [i8(6, 5, 8), i8(6, 7, 8)]),
    "batch_matmul_adj_x": lambda: (single_op(
        "BATCH_MATMUL", [("int8", (6, 8, 5), A, None), ("int8", (6, 8, 7), B, None)],
        [("int8", (6, 5, 7), Q(0.2, 4))], {"adj_x": True, "adj_y": False}, 2), [i8(6, 8, 5), i8(6, 8, 7)]),
    "tile": lambda: (single_op("TILE", [("int8", (4, 1, 3), A, None), ("int32", (3,), None, [1, 5, 2])],
                               [("int8", (4, 5, 6), A)], {}, 2), [i8(4, 1, 3)]),
    "softmax": lambda: _unary("SOFTMAX", Q(0.1, 4), Q(1 / 256, -128), {"beta": 1.0}, shape=(40, 10)),
    "softmax_small_scale": lambda: _unary("SOFTMAX", Q(0.01, 4), Q(1 / 256, -128), {"beta": 1.0}, shape=(40, 10)),
    "logistic": lambda: _unary("LOGISTIC", Q(0.05, 4), Q(1 / 256, -128)),
    "gelu": lambda: _unary("GELU", Q(0.03, -4), Q(0.015, -110), {"approximate": False}),
    "gelu_approximate": lambda: _unary("GELU", Q(0.05, 10), Q(0.02, -100), {"approximate": True}),
    "exp": lambda: _unary("EXP", Q(0.02, 3), Q(0.05, -128)),
    "log": lambda: _unary("LOG", Q(0.05, -128), Q(0.03, 20)),
    "log_of_negative_values": lambda: _unary("LOG", Q(0.1, -100), Q(0.02, -10)),
    "abs": lambda: _unary("ABS", Q(0.05, -7), Q(0.03, -128)),
    "abs_same_scale": lambda: _unary("ABS", Q(0.05, -7), Q(0.05, -7)),
    **{f"log_softmax_{i}": (lambda q=q: _unary("LOG_SOFTMAX", q, Q(16 / 256, 127), shape=(60, 12))) for i, q in
       enumerate([Q(0.1, 4), Q(0.02, -10), Q(0.5, 0)])},
    **{f"rsqrt_{i}": (lambda q=q: _rsqrt(*q)) for i, q in enumerate([
        (Q(0.01, -128), Q(0.05, -128)), (Q(0.0001, -128), Q(1.5, -128)), (Q(3.0, -128), Q(0.002, -128)),
        (Q(0.02, -128), Q(0.3, -128))])},
    "exp_wide": lambda: _unary("EXP", Q(0.06, -20), Q(2.0, -128)),
    "tanh": lambda: _unary("TANH", Q(0.03, -4), Q(1 / 128, 0)),
    "leaky_relu": lambda: _unary("LEAKY_RELU", Q(0.03, -4), Q(0.02, -60), {"alpha": 0.2}, 1),
    "relu": lambda: _unary("RELU", Q(0.03, -4), Q(0.02, -128)),
    "relu6": lambda: _unary("RELU6", Q(0.05, -4), Q(0.025, -128)),
    "requantize": lambda: _unary("QUANTIZE", Q(0.05, 3), Q(0.031, -9)),
    "max_pool_same": lambda: _pool("MAX_POOL_2D", "SAME"),
    "avg_pool_same": lambda: _pool("AVERAGE_POOL_2D", "SAME"),
    "avg_pool_valid": lambda: _pool("AVERAGE_POOL_2D", "VALID"),
    "mean_hw": lambda: _mean((3, 7, 5, 6), [1, 2], False),
    "mean_hw_keepdims": lambda: _mean((5, 6, 10, 8), [1, 2], True),
    "mean_hw_keepdims_40_channels": lambda: _mean((3, 5, 7, 40), [1, 2], True),  # NEON blocks and a tail
    "mean_axis1": lambda: _mean((4, 13, 6), [1], False),
    "pad": lambda: (single_op("PAD", [("int8", (2, 3, 4, 2), A, None),
                                      ("int32", (4, 2), None, [[0, 0], [1, 2], [2, 0], [0, 0]])],
                              [("int8", (2, 6, 6, 2), A)], {}, 2), [i8(2, 3, 4, 2)]),
    **{f"resize_{kind}_{align}_{half}": (lambda kind=kind, align=align, half=half: _resize(
        "RESIZE_BILINEAR" if kind == "bilinear" else "RESIZE_NEAREST_NEIGHBOR", align, half))
       for kind in ("bilinear", "nearest") for align, half in ((False, False), (False, True), (True, False))},
    "quantize_float": _quantize_float,
    "dequantize": lambda: (single_op("DEQUANTIZE", [("int8", (60, 50), Q(0.05, 3), None)],
                                     [("float32", (60, 50), None)], {}, 2), [i8(60, 50)]),
}
# LiteRT's optimized DEQUANTIZE computes x * scale - zp * scale, which can land one ulp away.
BUILTIN_ULP = {"dequantize"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_matches_litert(case):
    import runtime.lite
    from converters.lite.writer import serialize

    model, xs = CASES[case]()
    blob = serialize(model)
    feeds = dict(zip(model.inputs, xs, strict=True))
    ref = litert(blob, xs, "reference")[0]
    ours = runtime.lite.from_bytes(blob).interpreter.run(feeds)[model.outputs[0]]
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)
    builtin = litert(blob, xs, "builtin")[0]
    ours_b = runtime.lite.from_bytes(blob, kernels="builtin").interpreter.run(feeds)[model.outputs[0]]
    if case in BUILTIN_ULP:
        np.testing.assert_array_max_ulp(ours_b, builtin, maxulp=1)
    else:
        np.testing.assert_array_equal(ours_b, builtin)


def test_builtin_and_reference_kernels_really_differ_on_fully_connected():
    """Why the runtime has two kernel sets: on near-ties LiteRT's own kernels disagree."""
    from converters.lite.writer import serialize

    model, xs = _fc_case(True)
    blob = serialize(model)
    assert not np.array_equal(litert(blob, xs, "reference")[0], litert(blob, xs, "builtin")[0])


def test_concatenation_refuses_mixed_quantization_like_litert():
    import runtime.lite
    from converters.lite.writer import serialize
    from runtime.lite.kernels import KernelError

    model = single_op("CONCATENATION", [("int8", (2, 3), A, None), ("int8", (2, 3), B, None)],
                      [("int8", (2, 6), A)], {"axis": -1}, 2)
    with pytest.raises(KernelError, match=r"operator 0 \(CONCATENATION\): int8 input 1 is quantized"):
        runtime.lite.from_bytes(serialize(model))
    with pytest.raises(RuntimeError, match="scale"):
        litert(serialize(model), [i8(2, 3), i8(2, 3)])


@pytest.mark.parametrize("real", [0.3, 1e-4, 0.999999, 1.0, 7.5, 2.0 ** -33])
def test_quantize_multiplier_round_trips(real):
    m, s = fx.quantize_multiplier(real)
    if m:
        assert (1 << 30) <= m < (1 << 31)
        assert abs(m * 2.0 ** (s - 31) - real) <= real * 2.0 ** -30
    else:
        assert real < 2.0 ** -31


def test_fixed_point_primitives_match_gemmlowp_definitions():
    x = np.array([5, -5, 6, -6, 7, -7, 1 << 30, -(1 << 30)], np.int64)
    assert fx.rounding_divide_by_pot(x, 1).tolist() == [3, -3, 3, -3, 4, -4, 1 << 29, -(1 << 29)]
    a = np.array([fx.INT32_MIN, 1 << 30, -(1 << 30), 12345], np.int64)
    b = np.array([fx.INT32_MIN, 1 << 30, 1 << 30, -(1 << 31) + 1], np.int64)
    assert fx.saturating_rounding_doubling_high_mul(a, b).tolist() == [fx.INT32_MAX, 1 << 29, -(1 << 29), -12345]
    assert fx.round_div(np.array([7, -7, 5, -5]), 2).tolist() == [4, -4, 3, -3]
    assert fx.round_half_away(np.array([0.5, -0.5, 1.5, 2.4999])).tolist() == [1, -1, 2, 2]


@pytest.mark.parametrize("in_q, out_q", [(Q(0.05, 4), Q(0.03, -60)), (Q(0.2, -10), Q(0.05, -90)),
                                          (Q(0.01, 0), Q(0.004, -100))])
def test_hard_swish_int8_matches_litert(in_q, out_q):
    import runtime.lite
    from converters.lite.writer import serialize

    model = single_op("HARD_SWISH", [("int8", (4, 64), in_q, None)], [("int8", (4, 64), out_q)], {}, 1)
    x = np.arange(-128, 128, dtype=np.int8).reshape(4, 64)
    blob = serialize(model)
    ours = runtime.lite.from_bytes(blob).interpreter.run({0: x})[1]
    np.testing.assert_array_equal(ours, litert(blob, [x], "reference")[0])
    np.testing.assert_array_equal(ours, litert(blob, [x], "builtin")[0])


def test_rsqrt_refuses_negative_int8_inputs_like_litert():
    import runtime.lite
    from converters.lite.writer import serialize
    from runtime.lite.kernels import KernelError

    model = single_op("RSQRT", [("int8", (2, 3), Q(0.1, 0), None)], [("int8", (2, 3), Q(0.1, -128))], {}, 2)
    x = np.array([[4, 9, 1], [2, -1, 3]], np.int8)
    blob = serialize(model)
    with pytest.raises(KernelError, match=r"operator 0 \(RSQRT\): int8 input below the zero point 0"):
        runtime.lite.from_bytes(blob).interpreter.run({0: x})
    with pytest.raises(RuntimeError, match="Rsqrt is only defined for positive values"):
        litert(blob, [x])


@pytest.mark.parametrize("channels", [8, 16, 40])
def test_builtin_mean_over_h_and_w_matches_litert_on_many_quantizations(channels):
    """LiteRT's optimized MEAN rounds differently from its reference kernel (its bias, and NEON blocks of 16
    channels): many random scales and zero points, every output equal."""
    import runtime.lite
    from converters.lite.writer import serialize

    rng = np.random.default_rng(channels)
    for _ in range(40):
        in_q = Q(float(rng.uniform(0.005, 0.2)), int(rng.integers(-40, 40)))
        out_q = Q(float(rng.uniform(0.005, 0.2)), int(rng.integers(-40, 40)))
        model = single_op("MEAN", [("int8", (3, 5, 7, channels), in_q, None), ("int32", (2,), None, [1, 2])],
                          [("int8", (3, 1, 1, channels), out_q)], {"keep_dims": True}, 2)
        x = rng.integers(-128, 128, (3, 5, 7, channels)).astype(np.int8)
        blob = serialize(model)
        ours = runtime.lite.from_bytes(blob, kernels="builtin").interpreter.run({0: x})[model.outputs[0]]
        np.testing.assert_array_equal(ours, litert(blob, [x], "builtin")[0])


def test_builtin_softmax_matches_litert_on_many_quantizations():
    """LiteRT's optimized int8 SOFTMAX uses a float table of exp, not the reference's fixed point."""
    import runtime.lite
    from converters.lite.writer import serialize

    rng = np.random.default_rng(11)
    for _ in range(30):
        in_q = Q(float(rng.uniform(0.005, 0.3)), int(rng.integers(-40, 40)))
        depth = int(rng.integers(2, 40))
        model = single_op("SOFTMAX", [("int8", (16, depth), in_q, None)], [("int8", (16, depth), Q(1 / 256, -128))],
                          {"beta": 1.0}, 2)
        x = rng.integers(-128, 128, (16, depth)).astype(np.int8)
        blob = serialize(model)
        ours = runtime.lite.from_bytes(blob, kernels="builtin").interpreter.run({0: x})[model.outputs[0]]
        np.testing.assert_array_equal(ours, litert(blob, [x], "builtin")[0])


def test_int8_div_matches_litert_on_many_quantizations():
    """DIV's fixed-point reciprocal and its shifts past 31 bits (dividends of magnitude 1), in both kernel sets."""
    rng = np.random.default_rng(12)
    for _ in range(25):
        qs = [Q(float(rng.uniform(0.005, 0.3)), int(rng.integers(-60, 60))) for _ in range(3)]
        model, xs = _div(*qs)
        ours, ref, builtin = run_both(model, xs)
        np.testing.assert_array_equal(ours, ref)
        np.testing.assert_array_equal(ours, builtin)


def test_int8_div_by_the_divisor_zero_point_is_refused():
    import runtime.lite
    from converters.lite.writer import serialize
    from runtime.lite.kernels import KernelError

    model, (a, b) = _div(Q(0.05, 0), Q(0.04, 3), Q(0.2, 5))
    b[0, 0] = 3
    with pytest.raises(KernelError, match=r"operator 0 \(DIV\): int8 divisor equal to its zero point 3"):
        runtime.lite.from_bytes(serialize(model)).interpreter.run({0: a, 1: b})


def _bad_grouped_conv():
    w = np.ones((6, 1, 1, 3), np.int8)  # 3 input channels per group do not divide the input's 4
    return single_op("CONV_2D", [("int8", (1, 2, 2, 4), A, None), ("int8", w.shape, Q(0.01, 0), w)],
                     [("int8", (1, 2, 2, 6), OUT)], {"padding": "VALID", "stride_w": 1, "stride_h": 1}, 3)


@pytest.mark.parametrize("model, match", [
    (lambda: single_op("LOG_SOFTMAX", [("int8", (2, 5), A, None)], [("int8", (2, 5), Q(1 / 256, -128))], {}, 2),
     r"operator 0 \(LOG_SOFTMAX\): int8 output must have scale 16/256 and zero point 127; received scale "
     r"0.00390625 and zero point -128"),
    (_bad_grouped_conv, r"operator 0 \(CONV_2D\): the input has 4 channels; expected a multiple of the filter's 3 "
                        r"input channels that also divides its 6 output channels"),
    (lambda: single_op("GREATER", [("int8", (2, 5), A, None), ("int8", (2, 5), A, None)], [("bool", (2, 5), None)],
                       {}, 2), r"operator 0 \(GREATER\): only float32 GREATER is supported"),
    (lambda: single_op("SELECT_V2", [("bool", (2, 5), None, None), ("int8", (2, 5), A, None),
                                     ("int8", (2, 5), A, None)], [("int8", (2, 5), A)], {}, 2),
     r"operator 0 \(SELECT_V2\): only float32 SELECT_V2 is supported"),
    (lambda: single_op("TILE", [("int8", (2, 5), A, None), ("int32", (2,), None, None)], [("int8", (2, 10), A)],
                       {}, 2), r"operator 0 \(TILE\): TILE multiples computed at run time is not supported"),
])
def test_kernels_refuse_what_they_cannot_run_at_load(model, match):
    import runtime.lite
    from converters.lite.writer import serialize
    from runtime.lite.kernels import KernelError

    with pytest.raises(KernelError, match=match):
        runtime.lite.from_bytes(serialize(model()))
