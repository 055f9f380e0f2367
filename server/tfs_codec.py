"""TF Serving's REST JSON: predict / classify / regress payloads to arrays, and results back.

Follows ``api_rest.md`` and ``util/json_tensor.cc`` of TF Serving, with its
error messages. Row format (``instances``) answers ``predictions``,
columnar format (``inputs``) answers ``outputs``; classify and regress read
``examples`` (plus an optional shared ``context``) and answer ``results``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any, NamedTuple

import numpy as np
import orjson

import runtime
from server.errors import FailedPrecondition, InvalidArgument
from server.jsonfmt import Raw, dumps, float_tokens, nest, tensor_tokens
from server.tensors import TF_ENUM, is_b64, json_to_array

BYTES_SUFFIX = "_bytes"  # a string output named like this is written as {"b64": ...}
Inputs = dict[str, np.ndarray]


def _named(value: Any) -> bool:
    """A JSON object naming inputs (a ``{"b64": ...}`` object is a value, not names)."""
    return isinstance(value, dict) and not is_b64(value)


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def request_object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidArgument("Is not object")
    return doc


def signature_name(doc: dict[str, Any], default: str) -> str:
    name = doc.get("signature_name", default)
    if not isinstance(name, str):
        raise InvalidArgument("'signature_name' key must be a string value.")
    return name


def predict_inputs(doc: dict[str, Any], fn: runtime.SignatureFunction) -> tuple[Inputs, bool]:
    """The arrays of a predict request and whether it used the row (``instances``) format."""
    has_rows, has_columns = "instances" in doc, "inputs" in doc
    if has_rows and has_columns:
        raise InvalidArgument("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if not has_rows and not has_columns:
        raise InvalidArgument("Missing 'inputs' or 'instances' key")
    specs = {spec.name: spec for spec in fn.inputs}
    if has_rows:
        return _rows(doc["instances"], specs), True
    return _columns(doc["inputs"], specs), False


def _rows(instances: Any, specs: dict[str, Any]) -> Inputs:
    if not isinstance(instances, list):
        raise InvalidArgument("Expecting 'instances' to be an list/array")
    if not instances:
        raise InvalidArgument("No values in 'instances' array")
    names = list(specs)
    if any(_named(item) for item in instances) or len(names) > 1:
        for i, item in enumerate(instances):
            if not _named(item) or set(item) != set(names):
                if not _named(item) and i == 0 and len(names) > 1:
                    raise InvalidArgument(
                        "instances is a plain list, but expecting list of objects as multiple input tensors "
                        "required as per tensorinfo_map"
                    )
                raise InvalidArgument(
                    f"Failed to process element: {i} of 'instances' list. JSON object: {_short(item)} "
                    f"keys must be equal to: {','.join(names)}"
                )
        columns = {name: [item[name] for item in instances] for name in names}
    else:
        columns = {names[0]: instances}
    return {name: json_to_array(column, specs[name].dtype) for name, column in columns.items()}


# The fast path for the common predict body {"instances": <nested numbers>[, "signature_name": ...]}: the
# array's brackets are checked against the shape the signature expects and blanked out, so orjson parses one
# flat list instead of building a Python list per innermost row (for a 28x28x1 image, 784 one-element lists).
# Anything else takes the general path, which reports the exact error.
_INSTANCES = re.compile(rb'"instances"\s*:\s*\[')
_NUMBER_CHARS = b"0123456789eE+-. \t\r\n"  # what is left once these are deleted: brackets and commas
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")
_FAST_KEYS = {"instances", "signature_name"}


class NumericInstances(NamedTuple):
    """A predict body whose ``instances`` is one array of plain numbers, taken apart."""

    doc: dict[str, Any]  # the request object, with 0 in place of the array
    text: bytes  # the array's text
    brackets: bytes  # its brackets and commas: the text without the numbers and white space


def split_numeric_instances(body: bytes) -> NumericInstances | None:
    """The body taken apart when ``instances`` is one array of plain numbers and the only other key is
    ``signature_name``; else None."""
    if body.count(b'"instances"') != 1 or (match := _INSTANCES.search(body)) is None:
        return None
    start = match.end() - 1
    end = body.rfind(b"]") + 1  # the array's end when it holds only numbers (checked next)
    text = body[start:end]
    brackets = text.translate(None, _NUMBER_CHARS)
    if end <= start or brackets.translate(None, b"[],"):
        return None  # strings, objects, literals, or the array is not the last value holding a ']'
    try:
        doc = orjson.loads(body[:start] + b"0" + body[end:])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("instances") != 0 or not set(doc) <= _FAST_KEYS:
        return None
    return NumericInstances(doc, text, brackets)


@functools.lru_cache(maxsize=64)
def _row_brackets(dims: tuple[int, ...]) -> bytes:
    """The brackets and commas of one row of shape ``dims`` with the numbers taken out: (2, 1) -> b'[],[]'."""
    if not dims:
        return b""
    inner = _row_brackets(dims[1:])
    return b"[" + b",".join([inner] * dims[0]) + b"]"


def numeric_rows(split: NumericInstances, fn: runtime.SignatureFunction) -> Inputs | None:
    """The one input of ``fn`` from a numeric ``instances`` array, or None when the signature or the array
    does not fit the fast path (a ragged or misshapen array, another dtype, several inputs)."""
    if len(fn.inputs) != 1:
        return None
    spec = fn.inputs[0]
    dims = tuple(spec.shape[1:])
    if spec.dtype not in ("float16", "float32", "float64") or not spec.shape or None in dims:
        return None
    row = _row_brackets(dims) if dims else b""
    brackets = split.brackets
    rows, extra = divmod(len(brackets) - 1, len(row) + 1)
    if extra or rows < 1 or brackets != b"[" + b",".join([row] * rows) + b"]":
        return None
    try:
        values = orjson.loads(b"[" + split.text.translate(_BRACKETS_TO_SPACES) + b"]")
    except orjson.JSONDecodeError:
        return None
    if len(values) != rows * math.prod(dims):  # [] as a row of scalars
        return None
    # Only ints and floats are left (the character check): each is rounded once, straight to the input's
    # float type (the same values as float64 then a cast, without the float64 array).
    return {spec.name: np.fromiter(values, spec.dtype, len(values)).reshape(rows, *dims)}


def _columns(inputs: Any, specs: dict[str, Any]) -> Inputs:
    names = list(specs)
    if _named(inputs):
        for name in names:
            if name not in inputs:
                raise InvalidArgument(f"Missing named input: {name} in 'inputs' object.")
        for name in inputs:
            if name not in specs:
                raise InvalidArgument(
                    f"Unknown named input: {name} in 'inputs' object; the signature's inputs are: {','.join(names)}"
                )
        return {name: json_to_array(inputs[name], specs[name].dtype) for name in names}
    if len(names) > 1:
        raise InvalidArgument(
            "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
            "tensorinfo_map"
        )
    return {names[0]: json_to_array(inputs, specs[names[0]].dtype)}


def _one_key(key: str, json_text: str) -> bytes:
    """``dumps({key: Raw(json_text)})`` for a plain key, without the general writer."""
    return f'{{"{key}":{json_text}}}'.encode()


def predict_response(outputs: Inputs, rows: bool) -> bytes:
    """``{"predictions": ...}`` for a row request, ``{"outputs": ...}`` for a columnar one."""
    tokens = {name: tensor_tokens(np.asarray(arr), bytes_as_b64=name.endswith(BYTES_SUFFIX))
              for name, arr in outputs.items()}
    if not rows:
        if len(outputs) == 1:
            (name, arr), = outputs.items()
            return _one_key("outputs", nest(tokens[name], np.shape(arr)))
        return dumps({"outputs": {name: Raw(nest(tokens[name], np.shape(arr))) for name, arr in outputs.items()}})
    batch = None
    for name, arr in outputs.items():
        if np.ndim(arr) == 0:
            raise InvalidArgument(f"Tensor name: {name} has no shape information")
        if batch is None:
            batch = len(arr)
        elif len(arr) != batch:
            raise InvalidArgument(f"Tensor name: {name} has inconsistent batch size: {len(arr)} expecting: {batch}")
    if len(outputs) == 1:
        (name, arr), = outputs.items()
        return _one_key("predictions", nest(tokens[name], np.shape(arr)))
    per_row = []
    for i in range(batch or 0):
        row = {}
        for name, arr in outputs.items():
            shape = np.shape(arr)[1:]
            size = int(np.prod(shape, dtype=np.int64))
            row[name] = Raw(nest(tokens[name][i * size:(i + 1) * size], shape))
        per_row.append(row)
    return dumps({"predictions": per_row})


# -- classify / regress ----------------------------------------------------------------------------

def _feature_kind(name: str, value: Any) -> str:
    """TF Example feature kind of a JSON feature value: float_list, int64_list or bytes_list."""
    leaves = value if isinstance(value, list) else [value]
    flat: list[Any] = []
    stack = list(leaves)
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            flat.append(item)
    kinds = set()
    for item in flat:
        if item is None:
            raise InvalidArgument(f"Feature: {name} has a null value; expected numbers, strings or b64 objects")
        if isinstance(item, str) or is_b64(item):
            kinds.add("bytes_list")
        elif isinstance(item, float):
            kinds.add("float_list")
        elif isinstance(item, (bool, int)):
            kinds.add("int64_list")
        else:
            raise InvalidArgument(f"Feature: {name} has a value of unsupported type: {_short(item, 60)}")
    if "bytes_list" in kinds and len(kinds) > 1:
        kind = "bytes_list" if isinstance(flat[0], str) or is_b64(flat[0]) else "float_list"
        raise InvalidArgument(f"Unexpected element type in feature: {name} expecting type: {kind}")
    if "bytes_list" in kinds:
        return "bytes_list"
    return "float_list" if "float_list" in kinds else "int64_list"


def example_inputs(doc: dict[str, Any], fn: runtime.SignatureFunction, method: str) -> Inputs:
    """The arrays of a classify / regress request: one row per example, features by input name.

    A feature is a scalar or a flat list, reshaped to the input's row shape
    (nested lists are accepted too). A feature missing from an example is
    taken from ``context``.
    """
    if "examples" not in doc:
        raise InvalidArgument(f"When method is {method}, key 'examples' is expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise InvalidArgument("Expecting 'examples' to be an list/array")
    if not examples:
        raise InvalidArgument("No values in 'examples' array")
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise InvalidArgument("'context' must be a JSON object of features")
    columns: dict[str, list[np.ndarray]] = {spec.name: [] for spec in fn.inputs}
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise InvalidArgument(f"Failed to process element: {i} of 'examples' list. Expecting a JSON object, "
                                  f"got: {_short(example)}")
        for spec in fn.inputs:
            value = example.get(spec.name, context.get(spec.name))
            if value is None:
                raise InvalidArgument(f"Example {i} has no feature '{spec.name}' (and 'context' has none either); "
                                      f"the signature's inputs are: {','.join(columns)}")
            kind = _feature_kind(spec.name, value)
            if kind == "float_list" and spec.dtype not in ("float16", "float32", "float64"):
                raise InvalidArgument(f"Feature: {spec.name} is a float_list but input '{spec.name}' is "
                                      f"{spec.dtype}")
            columns[spec.name].append(_fit_row(json_to_array(value, spec.dtype), spec, i))
    return {name: np.stack(rows) for name, rows in columns.items()}


def _fit_row(arr: np.ndarray, spec: Any, index: int) -> np.ndarray:
    row_shape = tuple(spec.shape[1:])
    if row_shape and all(d is not None for d in row_shape):
        need = int(np.prod(row_shape))
        if arr.size != need:
            raise InvalidArgument(f"Feature: {spec.name} of example {index} has {arr.size} values; input "
                                  f"'{spec.name}' needs {need} per example (shape {list(row_shape)})")
        return arr.reshape(row_shape)
    if arr.ndim == 0 and len(row_shape) == 1:
        return arr.reshape(1)
    return arr


def _scores_output(result_outputs: Inputs, method: str) -> tuple[str, np.ndarray]:
    preferred = "scores" if method == "classify" else "outputs"
    if preferred in result_outputs:
        return preferred, result_outputs[preferred]
    numeric = [(n, a) for n, a in result_outputs.items() if np.asarray(a).dtype.kind == "f"]
    if len(numeric) == 1:
        return numeric[0]
    raise FailedPrecondition(f"The {method} signature has no '{preferred}' output to read results from; "
                             f"its outputs are: {','.join(result_outputs)}")


def classify_response(outputs: Inputs, labels: list[str] | None) -> bytes:
    """``{"results": [[[label, score], ...], ...]}``, one list of classes per example."""
    _name, scores = _scores_output(outputs, "classify")
    scores = np.asarray(scores)
    if scores.ndim == 1:
        scores = scores[:, None]
    scores = scores.reshape(len(scores), -1)
    classes = outputs.get("classes")
    tokens = float_tokens(scores.astype(np.float32, copy=False))
    per_example = []
    width = scores.shape[1]
    for i in range(len(scores)):
        entries = []
        for j in range(width):
            if classes is not None:
                label = np.asarray(classes).reshape(len(scores), -1)[i, j]
                label = label.decode(errors="replace") if isinstance(label, bytes) else str(label)
            elif labels is not None and j < len(labels):
                label = labels[j]
            else:
                label = ""
            entries.append(Raw("[" + json.dumps(label, ensure_ascii=False) + "," + tokens[i * width + j] + "]"))
        per_example.append(entries)
    return dumps({"results": per_example})


def regress_response(outputs: Inputs) -> bytes:
    """``{"results": [value, ...]}``, one value per example."""
    _name, values = _scores_output(outputs, "regress")
    values = np.asarray(values)
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise InvalidArgument(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {list(values.shape)}"
        )
    return dumps({"results": Raw(nest(float_tokens(values.reshape(-1)), (len(values),)))})


# -- status and metadata -------------------------------------------------------------------------

def status_response(statuses: list[Any]) -> bytes:
    return orjson.dumps({"model_version_status": [
        {"version": str(s.version), "state": s.state,
         "status": {"error_code": s.error_code, "error_message": s.error_message}}
        for s in statuses
    ]})


def _tensor_info(alias: str, spec: Any, tensor_name: str) -> dict[str, Any]:
    return {
        "dtype": TF_ENUM.get(spec.dtype, "DT_INVALID"),
        "tensor_shape": {
            "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape],
            "unknown_rank": False,
        },
        "name": tensor_name,
    }


def _graph_names(fn: runtime.SignatureFunction, kind: str) -> dict[str, str]:
    specs = getattr(getattr(fn, "signature", None), kind, None) or {}
    return {alias: getattr(spec, "name", alias) for alias, spec in specs.items()}


def signature_def(fn: runtime.SignatureFunction) -> dict[str, Any]:
    in_names, out_names = _graph_names(fn, "inputs"), _graph_names(fn, "outputs")
    return {
        "inputs": {s.name: _tensor_info(s.name, s, in_names.get(s.name, s.name)) for s in fn.inputs},
        "outputs": {s.name: _tensor_info(s.name, s, out_names.get(s.name, s.name)) for s in fn.outputs},
        "method_name": f"tensorflow/serving/{fn.method}",
        "defaults": {},
    }


def metadata_response(name: str, version: int, model: runtime.Model) -> bytes:
    return orjson.dumps({
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": {
            sig: signature_def(fn) for sig, fn in model.signatures.items()
        }}},
    })
