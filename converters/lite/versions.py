"""TFLite op versions and the minimum runtime version, as TF 2.x's converter chooses them.

An op's version tells older runtimes, TFLite Micro and delegates which
features of the op a file uses (int8 tensors, per-channel weights, options
added later). LiteRT 2.3 runs any known version, but mirroring TF keeps the
files loadable wherever TF's are.
"""

from __future__ import annotations

from converters.lite.model import LiteModel, Operator

# Versions of ops on int8 tensors (measured on TF 2.21's output).
INT8_VERSIONS = {
    "QUANTIZE": 1, "DEQUANTIZE": 2, "FULLY_CONNECTED": 4, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3,
    "TRANSPOSE_CONV": 3, "MAX_POOL_2D": 2, "AVERAGE_POOL_2D": 2, "MEAN": 2, "REDUCE_MAX": 2, "ADD": 2, "SUB": 2,
    "MUL": 2, "CONCATENATION": 2, "RESHAPE": 1, "SQUEEZE": 1, "SOFTMAX": 2, "LOGISTIC": 2, "TANH": 2,
    "LEAKY_RELU": 1, "RELU": 2, "RELU6": 2, "PAD": 2, "RESIZE_BILINEAR": 2, "RESIZE_NEAREST_NEIGHBOR": 2,
    "STRIDED_SLICE": 2, "SLICE": 2, "TRANSPOSE": 2, "MAXIMUM": 2, "MINIMUM": 2, "HARD_SWISH": 1,
    "PRELU": 1, "BATCH_MATMUL": 2, "TILE": 3, "SQUARED_DIFFERENCE": 2, "GELU": 2, "EXP": 2, "RSQRT": 2,
    "LOG_SOFTMAX": 2, "LOG": 2, "ABS": 2, "DIV": 1,
}
# The runtime release that introduced each (op, version) we write; the file's
# min_runtime_version is the latest of them.
RUNTIME = {
    ("FULLY_CONNECTED", 4): "1.14.0", ("FULLY_CONNECTED", 5): "2.0.0", ("FULLY_CONNECTED", 12): "2.17.0",
    ("CONV_2D", 3): "1.14.0", ("CONV_2D", 5): "2.4.0", ("DEPTHWISE_CONV_2D", 3): "1.14.0",
    ("DEPTHWISE_CONV_2D", 6): "2.3.0", ("TRANSPOSE_CONV", 3): "2.3.0", ("RESIZE_BILINEAR", 3): "2.3.0",
    ("RESIZE_NEAREST_NEIGHBOR", 3): "2.3.0", ("DEQUANTIZE", 3): "1.15.0", ("QUANTIZE", 2): "1.15.0",
    ("HARD_SWISH", 1): "1.15.0", ("GELU", 1): "2.9.0", ("LEAKY_RELU", 1): "1.13.1",
}
_BASE_RUNTIME = {"int8": "1.14.0", "float": "1.5.0"}


def _is_int8(model: LiteModel, op: Operator) -> bool:
    types = [model.tensors[t].dtype for t in [*op.inputs, *op.outputs] if t >= 0]
    return "int8" in types


def op_version(model: LiteModel, op: Operator) -> int:
    """The version TF writes for ``op`` as used in ``model``."""
    o = op.options
    half_pixel = bool(o.get("half_pixel_centers", False))
    if op.op == "QUANTIZE":
        return 2 if model.tensors[op.inputs[0]].dtype == "int8" else 1
    if op.op == "DEQUANTIZE":
        return 3 if model.tensors[op.inputs[0]].dtype == "float16" else 2
    if op.op in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR") and half_pixel:
        return 3
    if op.op == "TRANSPOSE_CONV" and len(op.inputs) > 3 and op.inputs[3] >= 0:
        return 3
    weights = model.tensors[op.inputs[1]] if op.op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") else None
    hybrid = weights is not None and weights.dtype == "int8" and model.tensors[op.inputs[0]].dtype == "float32"
    if hybrid:  # dynamic-range: int8 weights, float activations
        return {"FULLY_CONNECTED": 12, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 6}[op.op]
    if op.op == "FULLY_CONNECTED" and o.get("keep_num_dims"):
        return 5
    if _is_int8(model, op):
        return INT8_VERSIONS.get(op.op, 1)
    return 1


def assign_versions(model: LiteModel) -> None:
    for op in model.operators:
        op.version = op_version(model, op)


def min_runtime_version(model: LiteModel) -> str:
    """The oldest TFLite runtime that has every (op, version) of ``model``."""
    base = _BASE_RUNTIME["int8" if any(t.dtype == "int8" for t in model.tensors) else "float"]
    versions = [base] + [RUNTIME[(o.op, o.version)] for o in model.operators if (o.op, o.version) in RUNTIME]
    return max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))
