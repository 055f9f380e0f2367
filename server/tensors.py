"""JSON values to numpy arrays of a given dtype, and the dtype names of both protocols.

The JSON rules are TF Serving's (``util/json_tensor.cc``): float inputs take
any JSON number, integer inputs only integers, bool inputs only true/false,
string inputs JSON strings or ``{"b64": "..."}``; nested lists must be
rectangular. Errors use TF Serving's wording where it has one.

>>> json_to_array([[1, 2.5], [3, 4]], "float32")
array([[1. , 2.5],
       [3. , 4. ]], dtype=float32)
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from savedmodel.dtypes import to_numpy
from server.errors import InvalidArgument

# IR dtype -> TF's DataType enum name (metadata) and TF's DataTypeString (messages).
TF_ENUM = {
    "float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
    "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64",
    "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32", "uint64": "DT_UINT64",
    "bool": "DT_BOOL", "string": "DT_STRING",
}
TF_NAME = {"float16": "half", "float32": "float", "float64": "double"}

# IR dtype <-> V2 / Open Inference Protocol datatype.
V2_DATATYPE = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "string": "BYTES",
}
FROM_V2_DATATYPE = {v: k for k, v in V2_DATATYPE.items()}


def tf_name(dtype: str) -> str:
    """TF's DataTypeString of an IR dtype ("float", "int32", "string", ...)."""
    return TF_NAME.get(dtype, dtype)


def _json_type(value: Any) -> str:
    """rapidjson's name of a value's JSON type, as TF Serving's messages print it."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _json_text(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def type_error(value: Any, dtype: str) -> InvalidArgument:
    return InvalidArgument(
        f"JSON Value: {_json_text(value)} Type: {_json_type(value)} is not of expected type: {tf_name(dtype)}"
    )


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def json_shape(value: Any) -> tuple[int, ...]:
    """The shape of a nested JSON list, checked to be rectangular."""
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    _check_level(value, shape, 0)
    return tuple(shape)


def _check_level(value: Any, shape: list[int], level: int) -> None:
    if level == len(shape):
        if isinstance(value, list):
            raise InvalidArgument(
                f"Encountered list at unexpected level: {level}; expected a scalar of a tensor of rank {len(shape)}"
            )
        return
    if not isinstance(value, list):
        raise InvalidArgument(
            f"Encountered scalar {_json_text(value, 40)} at level: {level}; expected a list of size: {shape[level]}"
        )
    if len(value) != shape[level]:
        raise InvalidArgument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}"
        )
    for item in value:
        _check_level(item, shape, level + 1)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _accepts(value: Any, kind: str) -> bool:
    if kind == "f":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in "iu":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "b":
        return isinstance(value, bool)
    return False


def json_to_array(value: Any, dtype: str) -> np.ndarray:
    """A JSON value (scalar or nested lists) as an array of IR dtype ``dtype``.

    Raises InvalidArgument naming the first value that does not fit.
    """
    if dtype == "string":
        return _strings(value)
    want = to_numpy(dtype)
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError):
        json_shape(value)  # raises the precise ragged-list error
        arr = np.asarray(value, dtype=object)
    kind = arr.dtype.kind
    if arr.size == 0 and kind == "f":  # [] parses as float64; it fits any dtype
        kind = want.kind
    ok = kind in "fiu" if want.kind == "f" else kind in "iu" if want.kind in "iu" else kind == "b"
    if not ok:
        json_shape(value)
        for leaf in _leaves(value):
            if not _accepts(leaf, want.kind):
                raise type_error(leaf, dtype)
        if want.kind in "iu":  # integers too big for int64 make an object array
            _check_range(value, want, dtype)
        raise type_error(value, dtype)  # pragma: no cover - numpy inferred an odd dtype for valid leaves
    if want.kind in "iu" and arr.size:
        info = np.iinfo(want)
        if arr.min() < info.min or arr.max() > info.max:
            _check_range(value, want, dtype)
    return arr.astype(want, copy=False)


def _check_range(value: Any, want: np.dtype, dtype: str) -> None:
    info = np.iinfo(want)
    for leaf in _leaves(value):
        if not info.min <= leaf <= info.max:
            raise InvalidArgument(f"JSON Value: {leaf} is out of range for type: {tf_name(dtype)}")


def decode_b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise InvalidArgument(f"JSON Value: {_json_text(text)} for 'b64' must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidArgument(f"Unable to base64 decode: {_json_text(text, 60)}") from e


def _strings(value: Any) -> np.ndarray:
    shape = json_shape(value)
    flat = []
    for leaf in _leaves(value) if shape else [value]:
        if isinstance(leaf, str):
            flat.append(leaf.encode())
        elif is_b64(leaf):
            flat.append(decode_b64(leaf["b64"]))
        else:
            raise type_error(leaf, "string")
    arr = np.empty(math.prod(shape), dtype=object)
    arr[:] = flat
    return arr.reshape(shape)
