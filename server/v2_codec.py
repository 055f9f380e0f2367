"""KServe V2 / Open Inference Protocol payloads, with the binary tensor data extension.

A request body is JSON, optionally followed by raw tensor bytes; the
``Inference-Header-Content-Length`` header says where the JSON ends. An input
with ``parameters.binary_data_size`` takes its bytes, in input order, from
that binary part (little-endian, row-major; BYTES elements are a 4-byte
length and the bytes). Outputs are returned as binary when the request asks,
per output (``binary_data``) or for all (``binary_data_output``).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

import runtime
from savedmodel.dtypes import as_dtype, to_numpy
from server.errors import InvalidArgument
from server.jsonfmt import dumps, float_tokens, loads
from server.tensors import FROM_V2_DATATYPE, V2_DATATYPE, json_to_array

HEADER = "inference-header-content-length"
PLATFORM = "savedmodel_h5"
EXTENSIONS = ["binary_tensor_data", "classification"]

Parameters = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestInput(_Strict):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: Any = None


class RequestOutput(_Strict):
    name: str
    parameters: Parameters | None = None


class InferenceRequest(_Strict):
    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def split_body(body: bytes, header: str | None) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part of a request body."""
    if header is None:
        return body, memoryview(b"")
    try:
        size = int(header)
    except ValueError:
        raise InvalidArgument(f"Inference-Header-Content-Length must be an integer, got '{header}'") from None
    if not 0 <= size <= len(body):
        raise InvalidArgument(
            f"Inference-Header-Content-Length {size} is outside the request body of {len(body)} bytes"
        )
    return body[:size], memoryview(body)[size:]


def parse_request(body: bytes, header: str | None) -> tuple[InferenceRequest, dict[str, np.ndarray]]:
    """The request's envelope and its input arrays (typed by their declared datatypes)."""
    head, binary = split_body(body, header)
    doc = loads(head)
    if not isinstance(doc, dict):
        raise InvalidArgument("Invalid inference request: the JSON body must be an object")
    try:
        request = InferenceRequest.model_validate(doc)
    except ValidationError as e:
        raise InvalidArgument(f"Invalid inference request: {_validation_message(e)}") from None
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for item in request.inputs:
        if item.name in arrays:
            raise InvalidArgument(f"Input '{item.name}' appears more than once")
        dtype = FROM_V2_DATATYPE.get(item.datatype)
        if dtype is None:
            raise InvalidArgument(f"Input '{item.name}' has unsupported datatype '{item.datatype}'; supported: "
                                  f"{', '.join(FROM_V2_DATATYPE)}")
        if any(d < 0 for d in item.shape):
            raise InvalidArgument(f"Input '{item.name}' has a negative dimension in shape {item.shape}")
        count = math.prod(item.shape)
        size = (item.parameters or {}).get("binary_data_size")
        if size is not None:
            if header is None:
                raise InvalidArgument(f"Input '{item.name}' has binary_data_size but the request has no "
                                      "Inference-Header-Content-Length header")
            if item.data is not None:
                raise InvalidArgument(f"Input '{item.name}' has both data and binary_data_size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidArgument(f"Input '{item.name}' has an invalid binary_data_size: {size!r}")
            if offset + size > len(binary):
                raise InvalidArgument(f"Input '{item.name}' has binary_data_size {size} but only "
                                      f"{len(binary) - offset} bytes of binary data are left")
            arrays[item.name] = _from_binary(binary[offset:offset + size], dtype, item)
            offset += size
        else:
            if item.data is None:
                raise InvalidArgument(f"Input '{item.name}' has no data")
            try:
                arr = json_to_array(item.data, dtype)
            except InvalidArgument as e:
                raise InvalidArgument(f"Input '{item.name}': {e.message}") from None
            if arr.size != count:
                raise InvalidArgument(f"Input '{item.name}' has {arr.size} elements in data but shape "
                                      f"{item.shape} needs {count}")
            arrays[item.name] = arr.reshape(item.shape)
    if offset != len(binary):
        raise InvalidArgument(f"The request has {len(binary) - offset} bytes of binary data that no input claims")
    return request, arrays


def _from_binary(blob: memoryview, dtype: str, item: RequestInput) -> np.ndarray:
    count = math.prod(item.shape)
    if dtype == "string":
        values, pos = [], 0
        while pos < len(blob):
            if pos + 4 > len(blob):
                raise InvalidArgument(f"Input '{item.name}': BYTES element {len(values)} has a truncated length")
            (length,) = struct.unpack_from("<I", blob, pos)
            pos += 4
            if pos + length > len(blob):
                raise InvalidArgument(f"Input '{item.name}': BYTES element {len(values)} of {length} bytes runs "
                                      "past the end of its binary data")
            values.append(bytes(blob[pos:pos + length]))
            pos += length
        if len(values) != count:
            raise InvalidArgument(f"Input '{item.name}' has {len(values)} BYTES elements in its binary data but "
                                  f"shape {item.shape} needs {count}")
        arr = np.empty(count, dtype=object)
        arr[:] = values
        return arr.reshape(item.shape)
    wire = to_numpy(dtype).newbyteorder("<")
    need = count * wire.itemsize
    if len(blob) != need:
        raise InvalidArgument(f"Input '{item.name}' has {len(blob)} bytes of binary data but shape {item.shape} "
                              f"of {item.datatype} needs {need}")
    return np.frombuffer(blob, dtype=wire).reshape(item.shape).astype(to_numpy(dtype), copy=False)


# -- outputs ---------------------------------------------------------------------------------------

def _flag(params: Parameters | None, key: str, default: bool = False) -> bool:
    value = (params or {}).get(key, default)
    if not isinstance(value, bool):
        raise InvalidArgument(f"Parameter '{key}' must be a boolean, got {value!r}")
    return value


def _classification(params: Parameters | None, name: str) -> int | None:
    k = (params or {}).get("classification")
    if k is None:
        return None
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InvalidArgument(f"Output '{name}': parameter 'classification' must be a positive integer, got {k!r}")
    return k


def check_outputs(request: InferenceRequest, fn: runtime.SignatureFunction) -> None:
    """Refuse unknown requested outputs and bad output parameters before running anything."""
    names = [spec.name for spec in fn.outputs]
    _flag(request.parameters, "binary_data_output")
    for out in request.outputs or []:
        if out.name not in names:
            raise InvalidArgument(f"Unknown output '{out.name}'; the model's outputs are: {', '.join(names)}")
        _flag(out.parameters, "binary_data")
        _classification(out.parameters, out.name)


def classify_scores(scores: np.ndarray, k: int, labels: list[str] | None) -> np.ndarray:
    """Top-k classes per row as ``"score:index[:label]"`` strings (the classification extension)."""
    rows = scores.reshape(1, -1) if scores.ndim <= 1 else scores.reshape(len(scores), -1)
    k = min(k, rows.shape[1])
    top = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(rows, top, axis=1)
    tokens = float_tokens(picked.astype(np.float32, copy=False))
    out = np.empty(top.shape, dtype=object)
    for i, (idx, tok) in enumerate(zip(top.ravel().tolist(), tokens, strict=True)):
        text = f"{tok}:{idx}"
        if labels is not None and idx < len(labels):
            text += f":{labels[idx]}"
        out.flat[i] = text.encode()
    return out if scores.ndim > 1 else out[0]


def _to_binary(arr: np.ndarray) -> bytes:
    if arr.dtype.kind == "O":
        parts = []
        for value in arr.ravel().tolist():
            raw = value if isinstance(value, bytes) else str(value).encode()
            parts.append(struct.pack("<I", len(raw)))
            parts.append(raw)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _json_data(arr: np.ndarray) -> Any:
    flat = np.ascontiguousarray(arr.ravel())
    if flat.dtype.kind == "O":
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in flat.tolist()]
    if flat.dtype == np.float16:
        return flat.astype(np.float32)
    return flat


def encode_response(
    request: InferenceRequest, name: str, version: int, outputs: dict[str, np.ndarray], labels: list[str] | None
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (Inference-Header-Content-Length when binary)."""
    binary_all = _flag(request.parameters, "binary_data_output")
    wanted = [(o.name, o.parameters) for o in request.outputs] if request.outputs else [(n, None) for n in outputs]
    entries, blobs, finite = [], [], True
    for out_name, params in wanted:
        arr = np.asarray(outputs[out_name])
        k = _classification(params, out_name)
        if k is not None:
            arr = classify_scores(arr, k, labels)
        entry: dict[str, Any] = {"name": out_name, "datatype": V2_DATATYPE[as_dtype(arr.dtype)],
                                 "shape": list(arr.shape)}
        if _flag(params, "binary_data", binary_all):
            blob = _to_binary(arr)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(arr)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                finite = False
        entries.append(entry)
    response: dict[str, Any] = {"model_name": name, "model_version": str(version)}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = entries
    # orjson is fast but writes NaN as null; keep NaN / Infinity tokens as TF Serving writes them.
    head = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY) if finite else dumps(response)
    if not blobs:
        return head, {}
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


def tensor_metadata(fn: runtime.SignatureFunction) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def one(spec: Any) -> dict[str, Any]:
        return {"name": spec.name, "datatype": V2_DATATYPE[spec.dtype],
                "shape": [-1 if d is None else d for d in spec.shape]}

    return [one(s) for s in fn.inputs], [one(s) for s in fn.outputs]
