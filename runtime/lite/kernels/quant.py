"""QUANTIZE and DEQUANTIZE: the boundaries between float and integer tensors."""

from __future__ import annotations

import numpy as np

from runtime.lite import fixedpoint as fx
from runtime.lite.kernels import OpContext, kernel, scale_zp


@kernel("QUANTIZE")
def quantize(ctx: OpContext):
    """float32 -> int8 as round(x / scale) + zero_point; int8 -> int8 requantisation."""
    x, y = ctx.input(0), ctx.output()
    out_s, out_zp = scale_zp(ctx.quant(y, "output"))
    lo, hi = (-128, 127) if y.dtype == "int8" else (0, 255) if y.dtype == "uint8" else (None, None)
    if lo is None:
        raise ctx.fail(f"QUANTIZE to {y.dtype} is not supported")
    out_dtype = np.dtype(y.dtype)
    if x.dtype == "float32":
        scale = np.float32(out_s)
        builtin = ctx.kernels == "builtin"

        def run_float(xv):
            v = np.asarray(xv, np.float32) / scale
            # reference: std::round (ties away from zero); optimized: ties to even
            q = np.rint(v) if builtin else fx.round_half_away(v)
            q = np.clip(q, lo - out_zp - 1, hi - out_zp + 1).astype(np.int64) + out_zp
            return np.clip(q, lo, hi).astype(out_dtype)

        return run_float
    if x.dtype in ("int8", "uint8"):
        in_s, in_zp = scale_zp(ctx.quant(x, "input"))
        mult, shift = fx.quantize_multiplier(in_s / out_s)

        def run_requantize(xv):
            q = fx.multiply_by_quantized_multiplier(xv.astype(np.int64) - in_zp, mult, shift) + out_zp
            return np.clip(q, lo, hi).astype(out_dtype)

        return run_requantize
    raise ctx.fail(f"QUANTIZE from {x.dtype} is not supported")


@kernel("DEQUANTIZE")
def dequantize(ctx: OpContext):
    """int8 -> float32 as scale * (q - zero_point) (per channel for weights); float16 -> float32."""
    x = ctx.input(0)
    if x.dtype == "float16":
        return lambda xv: xv.astype(np.float32)
    q = ctx.quant(x, "input")
    if q.per_channel:
        return lambda xv: q.dequantize(xv)
    scale, zp = np.float32(q.scale[0]), int(q.zero_point[0])
    if ctx.kernels == "builtin":  # the optimized kernel computes x * scale - zp * scale
        offset = np.float32(zp) * scale
        return lambda xv: xv.astype(np.float32) * scale - offset
    return lambda xv: scale * (xv.astype(np.int32) - zp).astype(np.float32)
