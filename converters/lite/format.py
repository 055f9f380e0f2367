"""Every constant of the .tflite format as converters.lite writes it.

File-level conventions follow TensorFlow 2.x's converter (measured against
TF 2.21 and LiteRT 2.3): schema version 3, file identifier ``TFL3``, buffer 0
the empty sentinel, one SignatureDef per signature, a ``min_runtime_version``
metadata entry, and TF's choice of op version for each op and tensor type.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from converters.lite.schema import T

FILE_IDENTIFIER = b"TFL3"
FILE_SUFFIX = ".tflite"
SCHEMA_VERSION = 3
DESCRIPTION = "savedmodel-toolkit converters.lite"
SUBGRAPH_NAME = "main"
DEFAULT_SIGNATURE = "serving_default"
BUFFER_ALIGNMENT = 16

# Metadata entries (name -> a buffer). min_runtime_version is a NUL-padded
# 16-byte string, as TF writes it; ours is a JSON object describing the
# conversion (producer, mode, source).
METADATA_MIN_RUNTIME = "min_runtime_version"
METADATA_TOOLKIT = "savedmodel_toolkit"
MIN_RUNTIME_WIDTH = 16
MIN_RUNTIME = {"int8": "1.14.0", "float16": "1.14.0", "dynamic": "1.14.0", "float32": "1.6.0"}

# TensorType <-> numpy dtype names.
DTYPES: dict[int, str] = {
    T.TensorType.FLOAT32: "float32",
    T.TensorType.FLOAT16: "float16",
    T.TensorType.INT32: "int32",
    T.TensorType.UINT8: "uint8",
    T.TensorType.INT64: "int64",
    T.TensorType.BOOL: "bool",
    T.TensorType.INT16: "int16",
    T.TensorType.INT8: "int8",
    T.TensorType.FLOAT64: "float64",
    T.TensorType.UINT32: "uint32",
    T.TensorType.UINT16: "uint16",
}
TENSOR_TYPES: dict[str, int] = {v: k for k, v in DTYPES.items()}


def enum_names(enum: type) -> dict[int, str]:
    """value -> member name of a generated enum class."""
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


BUILTIN_CODES: dict[str, int] = {k: v for v, k in enum_names(T.BuiltinOperator).items()}
BUILTIN_NAMES: dict[int, str] = enum_names(T.BuiltinOperator)
# Builtin codes from 127 on live only in OperatorCode.builtin_code; the
# deprecated int8 field then holds this placeholder.
PLACEHOLDER_CODE = T.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES

# The options table of each builtin op (ops missing here take none).
OPTIONS: dict[str, str] = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "SOFTMAX": "SoftmaxOptions",
    "CONCATENATION": "ConcatenationOptions",
    "ADD": "AddOptions",
    "SUB": "SubOptions",
    "MUL": "MulOptions",
    "DIV": "DivOptions",
    "RESHAPE": "ReshapeOptions",
    "MEAN": "ReducerOptions",
    "SUM": "ReducerOptions",
    "REDUCE_MAX": "ReducerOptions",
    "PAD": "PadOptions",
    "PADV2": "PadV2Options",
    "MIRROR_PAD": "MirrorPadOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions",
    "LEAKY_RELU": "LeakyReluOptions",
    "TRANSPOSE_CONV": "TransposeConvOptions",
    "STRIDED_SLICE": "StridedSliceOptions",
    "SLICE": "SliceOptions",
    "SQUEEZE": "SqueezeOptions",
    "TRANSPOSE": "TransposeOptions",
    "HARD_SWISH": "HardSwishOptions",
    "QUANTIZE": "QuantizeOptions",
    "DEQUANTIZE": "DequantizeOptions",
    "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions",
    "SHAPE": "ShapeOptions",
    "PACK": "PackOptions",
    "GELU": "GeluOptions",
    "EXP": "ExpOptions",
    "LOG_SOFTMAX": "LogSoftmaxOptions",
    "SQUARED_DIFFERENCE": "SquaredDifferenceOptions",
    "ABS": "AbsOptions",
    "CAST": "CastOptions",
    "BATCH_MATMUL": "BatchMatMulOptions",
}
OPTIONS_TYPES: dict[str, int] = {k: v for v, k in enum_names(T.BuiltinOptions).items()}

# Option fields holding an enum: stored as the member name in our models.
ENUM_FIELDS: dict[str, type] = {
    "padding": T.Padding,
    "fused_activation_function": T.ActivationFunctionType,
    "quantized_bias_type": T.TensorType,
    "weights_format": T.FullyConnectedOptionsWeightsFormat,
    "mode": T.MirrorPadMode,
    "in_data_type": T.TensorType,
    "out_data_type": T.TensorType,
    "out_type": T.TensorType,
}

# The fused activation of TFLite for each IR activation name that has one.
FUSED_ACTIVATIONS = {"linear": "NONE", "relu": "RELU", "relu6": "RELU6"}

# Quantization conventions of TFLite's int8 kernels.
INT8_MIN, INT8_MAX = -128, 127
WEIGHT_QMAX = 127  # weights are symmetric in [-127, 127]
# Ops whose int8 output has a fixed scale and zero point (enforced by LiteRT).
FIXED_OUTPUT_QPARAMS: dict[str, tuple[float, int]] = {
    "SOFTMAX": (1.0 / 256.0, -128),
    "LOGISTIC": (1.0 / 256.0, -128),
    "TANH": (1.0 / 128.0, 0),
    "LOG_SOFTMAX": (16.0 / 256.0, 127),
}


@cache
def option_fields(table: str) -> tuple[tuple[str, str, bool], ...]:
    """(snake_case name, CamelCase name, is_vector) of each field of an options table,
    read off the generated builder functions."""
    prefix = f"{table}Add"
    fields = []
    for attr in dir(T):
        if attr.startswith(prefix) and attr != f"{table}Add":
            camel = attr[len(prefix):]
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
            fields.append((snake, camel, hasattr(T, f"{table}Start{camel}Vector")))
    return tuple(fields)


def tensor_type(dtype: str) -> int:
    try:
        return TENSOR_TYPES[str(np.dtype(dtype))]
    except (KeyError, TypeError):
        raise ValueError(f"dtype {dtype!r} has no TFLite tensor type; supported: {sorted(TENSOR_TYPES)}") from None
