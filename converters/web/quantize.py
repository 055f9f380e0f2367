"""Weight quantization as TF.js dequantizes it: affine uint8/uint16 and float16.

Affine: ``value = q * scale + min`` with the range widened to contain 0 and
``min`` nudged onto the grid so that 0.0 is represented exactly (a zero bias
or padding stays zero). The error is at most ``scale / 2`` per value.

>>> q, meta = quantize(np.array([-1.0, 0.0, 2.0], np.float32), "uint8")
>>> dequantize(q, meta)[1]
0.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.web import format as fmt
from converters.web.errors import ConversionError

_FLOAT16_MAX = float(np.finfo(np.float16).max)


def quantize(values: np.ndarray, dtype: str, *, name: str = "weight") -> tuple[np.ndarray, dict[str, Any]]:
    """``values`` (float) stored as ``dtype``; returns the stored array and the manifest's quantization dict."""
    values = np.asarray(values)
    if dtype == "float16":
        peak = float(np.max(np.abs(values))) if values.size else 0.0
        if not np.isfinite(peak) or peak > _FLOAT16_MAX:
            raise ConversionError(
                f"weight {name!r} has values up to {peak:g}, beyond float16's range ({_FLOAT16_MAX:g}); "
                "use --quantize uint16 or uint8, or no quantization",
                what=name,
            )
        return values.astype(fmt.QUANT_DTYPES["float16"]), {fmt.KEY_DTYPE: "float16"}
    if dtype not in fmt.AFFINE_QUANT_DTYPES:
        raise ConversionError(
            f"unknown quantization {dtype!r}; expected one of {sorted(fmt.QUANT_DTYPES)}", what=name
        )
    qmax = int(np.iinfo(np.dtype(fmt.QUANT_DTYPES[dtype])).max)
    v = values.astype(np.float64)
    if v.size and not np.all(np.isfinite(v)):
        raise ConversionError(f"weight {name!r} holds inf or NaN, which cannot be quantized", what=name)
    lo = min(0.0, float(v.min())) if v.size else 0.0
    hi = max(0.0, float(v.max())) if v.size else 0.0
    scale = (hi - lo) / qmax if hi > lo else 1.0
    zero_point = round(-lo / scale)
    offset = -zero_point * scale  # "min" in the manifest; q == zero_point decodes to exactly 0.0
    q = np.clip(np.round(v / scale) + zero_point, 0, qmax).astype(fmt.QUANT_DTYPES[dtype])
    return q, {fmt.KEY_DTYPE: dtype, fmt.KEY_SCALE: scale, fmt.KEY_MIN: offset}


def dequantize(stored: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """The float32 values TF.js computes from ``stored`` (doubles, rounded once to float32)."""
    if meta[fmt.KEY_DTYPE] == "float16":
        return stored.astype(np.float32)
    return (stored.astype(np.float64) * float(meta[fmt.KEY_SCALE]) + float(meta[fmt.KEY_MIN])).astype(np.float32)
