"""BATCH_MATMUL and PRELU: products of two activations (or an activation and a constant alpha).

int8 follows TFLite's reference kernels: integer products of the
zero-point-corrected inputs, requantised once with MultiplyByQuantizedMultiplier
(gemmlowp double rounding); the real multipliers are formed as TFLite forms
them (float32 scale products).
"""

from __future__ import annotations

import numpy as np

from runtime.lite import fixedpoint as fx
from runtime.lite.kernels import INT8_MAX, INT8_MIN, OpContext, kernel, scale_zp


def _adjoint(v: np.ndarray, flag: bool) -> np.ndarray:
    return np.swapaxes(v, -1, -2) if flag else v


@kernel("BATCH_MATMUL")
def batch_matmul(ctx: OpContext):
    """x @ y over the last two axes, batch axes broadcast; adj_x / adj_y transpose an operand first."""
    adj_x, adj_y = bool(ctx.options.get("adj_x", False)), bool(ctx.options.get("adj_y", False))
    x, y, out = ctx.input(0), ctx.input(1), ctx.output()
    if x.dtype == "int8":
        (sx, zx), (sy, zy) = scale_zp(ctx.quant(x, "lhs")), scale_zp(ctx.quant(y, "rhs"))
        out_s, out_zp = scale_zp(ctx.quant(out, "output"))
        # GetQuantizedConvolutionMultipler: the scale product in float32, the division in double
        mult, shift = fx.quantize_multiplier(float(np.float32(sx) * np.float32(sy)) / out_s)

        def run_int8(xv, yv):
            acc = np.matmul(_adjoint(xv.astype(np.int64) - zx, adj_x), _adjoint(yv.astype(np.int64) - zy, adj_y))
            return np.clip(fx.multiply_by_quantized_multiplier(acc, mult, shift) + out_zp, INT8_MIN,
                           INT8_MAX).astype(np.int8)

        return run_int8

    def run_float(xv, yv):
        return np.matmul(_adjoint(xv, adj_x), _adjoint(yv, adj_y)).astype(np.float32)

    return run_float


@kernel("PRELU")
def prelu(ctx: OpContext):
    """x for x >= 0, alpha * x below; alpha (the second input) broadcasts against x."""
    x, alpha, out = ctx.input(0), ctx.input(1), ctx.output()
    if x.dtype == "int8":
        f32 = np.float32
        (sx, zx), (sa, za) = scale_zp(ctx.quant(x, "input")), scale_zp(ctx.quant(alpha, "alpha"))
        out_s, out_zp = scale_zp(ctx.quant(out, "output"))
        # PreluPrepare computes both real multipliers in float32
        m_id, s_id = fx.quantize_multiplier(float(f32(sx) / f32(out_s)))
        m_a, s_a = fx.quantize_multiplier(float(f32(f32(sx) * f32(sa)) / f32(out_s)))

        def run_int8(xv, av):
            v = xv.astype(np.int64) - zx
            pos = fx.multiply_by_quantized_multiplier(v, m_id, s_id)
            neg = fx.multiply_by_quantized_multiplier(v * (av.astype(np.int64) - za), m_a, s_a)
            return np.clip(np.where(v >= 0, pos, neg) + out_zp, INT8_MIN, INT8_MAX).astype(np.int8)

        return run_int8
    return lambda xv, av: np.where(xv >= 0, xv, xv * av).astype(np.float32)
