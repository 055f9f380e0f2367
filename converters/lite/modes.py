"""The weight-only modes: float16 weights, and dynamic-range (int8 weights, float activations).

Both keep float32 activations. ``float16`` stores the weights and biases of
FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV as float16
behind a DEQUANTIZE, as TF's converter does. ``dynamic`` stores weights of
FULLY_CONNECTED and CONV_2D with at least 1024 elements as symmetric
per-channel int8, which LiteRT's hybrid kernels consume directly; smaller
weights stay float32 (TF's threshold).
"""

from __future__ import annotations

import numpy as np

from converters.lite.model import LiteModel, Operator, QuantParams, Tensor
from converters.lite.quantize import WEIGHTED, quantize_weights

DYNAMIC_OPS = {"FULLY_CONNECTED": 0, "CONV_2D": 0}  # op -> weight channel axis
DYNAMIC_MIN_ELEMENTS = 1024


def to_float16(model: LiteModel) -> LiteModel:
    """Weights and biases of the weighted ops as float16 constants behind DEQUANTIZE ops (in place)."""
    dequantized: dict[int, int] = {}
    front: list[Operator] = []
    for op in model.operators:
        spec = WEIGHTED.get(op.op)
        if spec is None:
            continue
        w_i, _, b_i = spec
        for i in (w_i, b_i):
            if i >= len(op.inputs) or op.inputs[i] < 0:
                continue
            t = op.inputs[i]
            src = model.tensors[t]
            if src.data is None or src.dtype != "float32":
                continue
            if t not in dequantized:
                half = model.add_constant(f"{src.name}/float16", src.data.astype(np.float16))
                out = model.add_tensor(Tensor(src.name, "float32", src.shape))
                front.append(Operator("DEQUANTIZE", [half], [out], {}, 3, op.source))
                dequantized[t] = out
            op.inputs[i] = dequantized[t]
    model.operators[:0] = front
    return model


def to_dynamic(model: LiteModel, min_elements: int = DYNAMIC_MIN_ELEMENTS) -> LiteModel:
    """Large FULLY_CONNECTED / CONV_2D weights as per-channel int8 (in place)."""
    for op in model.operators:
        axis = DYNAMIC_OPS.get(op.op)
        if axis is None:
            continue
        t = model.tensors[op.inputs[1]]
        if t.data is None or t.dtype != "float32" or t.data.size < min_elements:
            continue
        q, scales = quantize_weights(t.data, axis)
        op.inputs[1] = model.add_constant(t.name, q, QuantParams(scales, np.zeros(scales.size), axis))
        if op.op == "FULLY_CONNECTED":
            op.options["asymmetric_quantize_inputs"] = True
    return model
