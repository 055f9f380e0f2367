"""JSON text the way TF Serving writes it, and JSON parsing that accepts NaN.

TF Serving prints a float with 6 significant digits when that reads back as
the same value, else with all the digits of its type (9 for float32, 17 for
float64); whole numbers get a ``.0``; non-finite values are the bare tokens
``NaN``, ``Infinity`` and ``-Infinity`` (not strict JSON, as its docs say).
A tensor is written as nested lists in row-major order.

>>> dumps({"predictions": np.array([[0.2, 3.0], [np.nan, 1e-5]], np.float32)})
b'{"predictions":[[0.2,3.0],[NaN,1e-05]]}'
"""

from __future__ import annotations

import base64
import functools
import json
import math
import struct
from typing import Any

import numpy as np
import orjson

from server.errors import InvalidArgument

_FULL_DIGITS = {np.dtype(np.float16): 5, np.dtype(np.float32): 9, np.dtype(np.float64): 17}
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}



def loads(body: bytes) -> Any:
    """Parse a request body; NaN / Infinity / -Infinity are accepted as TF Serving's parser does.

    Raises InvalidArgument("JSON Parse error: ...") on malformed input.
    """
    if not body.strip():
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)  # several times faster than json
    except orjson.JSONDecodeError:
        pass  # maybe NaN/Infinity, which orjson refuses: let json decide, and word the error
    try:
        return json.loads(body)
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from e
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"JSON Parse error: {e.msg} at offset: {e.pos}") from e


# Up to this many values, float_tokens reads its 6-digit texts back with struct, not numpy, whose array
# round trip has a fixed cost (a model's 10 class scores: 27.5 -> 22.6 us per response, same process).
_LOOP_LIMIT = 32
# float16 / float32 / float64 as struct codes; packing rounds to nearest even, as numpy's casts do.
_STRUCT_CODES = {np.dtype(np.float16): "e", np.dtype(np.float32): "f", np.dtype(np.float64): "d"}


@functools.lru_cache(maxsize=3 * _LOOP_LIMIT)
def _packer(code: str, count: int) -> struct.Struct:
    return struct.Struct(f"{count}{code}")


def float_tokens(values: np.ndarray) -> list[str]:
    """Each element of a float array as TF Serving prints it (flattened, row-major)."""
    flat = values.ravel()
    as_list = flat.tolist()
    spec = f".{_FULL_DIGITS.get(flat.dtype, 17)}g"
    short = [f"{v:.6g}" for v in as_list]
    code = _STRUCT_CODES.get(flat.dtype)
    if len(as_list) <= _LOOP_LIMIT and code is not None:
        # No overflow: rounding to 6 digits is monotonic, and the largest float16 / float32 rounds down.
        packer = _packer(code, len(as_list))
        back = packer.unpack(packer.pack(*map(float, short)))
        redo = [i for i, (b, v) in enumerate(zip(back, as_list)) if b != v]
    else:
        back = np.array(short, dtype=np.float64).astype(flat.dtype)
        redo = np.flatnonzero(back != flat).tolist()
    for i in redo:  # NaN != NaN too: it prints the same with more digits
        short[i] = format(as_list[i], spec)
    # "nan", "inf" and "-inf" are the only tokens with an "n"; whole numbers have neither "." nor "e"
    return [_NON_FINITE.get(s, s) if "n" in s else s if "." in s or "e" in s else s + ".0" for s in short]


def _string_token(value: Any, as_b64: bool) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode()
    if not as_b64:
        try:
            return json.dumps(raw.decode(), ensure_ascii=False)
        except UnicodeDecodeError:
            pass  # not text: base64 is the only faithful JSON form
    return '{"b64":' + json.dumps(base64.b64encode(raw).decode()) + "}"


def tensor_tokens(array: np.ndarray, *, bytes_as_b64: bool = False) -> list[str]:
    """Each element of an array as a JSON token (flattened, row-major)."""
    kind = array.dtype.kind
    if kind == "f":
        return float_tokens(array)
    if kind in "iu":
        return [str(v) for v in array.ravel().tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in array.ravel().tolist()]
    return [_string_token(v, bytes_as_b64) for v in array.ravel().tolist()]


def nest(tokens: list[str], shape: tuple[int, ...]) -> str:
    """Row-major tokens as nested JSON lists of ``shape`` (a scalar when shape is ())."""
    if not shape:
        return tokens[0]
    items = tokens
    for axis in range(len(shape) - 1, -1, -1):
        size = shape[axis]
        outer = math.prod(shape[:axis])
        items = ["[" + ",".join(items[j * size:(j + 1) * size]) + "]" for j in range(outer)]
    return items[0]


def tensor_json(array: np.ndarray, *, bytes_as_b64: bool = False) -> str:
    """A whole array as TF Serving's JSON: nested lists, TF number formatting."""
    array = np.asarray(array)
    return nest(tensor_tokens(array, bytes_as_b64=bytes_as_b64), array.shape)


class Raw:
    """Pre-rendered JSON text to splice into ``dumps`` output as it is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _write(obj: Any, out: list[str]) -> None:
    if isinstance(obj, Raw):
        out.append(obj.text)
    elif isinstance(obj, dict):
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _write(value, out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _write(value, out)
        out.append("]")
    elif isinstance(obj, (np.ndarray, np.generic)):
        out.append(tensor_json(np.asarray(obj)))
    elif isinstance(obj, float):
        out.append(float_tokens(np.array([obj]))[0])
    else:
        out.append(json.dumps(obj, ensure_ascii=False))


def dumps(obj: Any) -> bytes:
    """JSON bytes of plain values, arrays and ``Raw`` fragments, TF Serving's number style."""
    out: list[str] = []
    _write(obj, out)
    return "".join(out).encode()
