"""The weights manifest and its binary shards: pack on write, unpack and check on read.

TF.js concatenates every group's shards (in ``paths`` order) and slices the
weights out one after the other in manifest order, so the bytes of a weight
may straddle two shards. Shards are named deterministically
(``group1-shard1of3.bin``) and none is larger than the shard size.

>>> manifest, files = pack_weights([("dense/kernel", np.ones((2, 2), "f4"))])
>>> manifest[0]["paths"], len(files["group1-shard1of1.bin"])
(['group1-shard1of1.bin'], 16)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from converters.web import format as fmt
from converters.web.errors import ConversionError
from converters.web.quantize import dequantize, quantize
from savedmodel.errors import FormatError

Manifest = list[dict[str, Any]]


def logical_dtype(array: np.ndarray, name: str) -> str:
    """The manifest dtype of ``array``: float32, int32 or bool (what TF.js variables can hold)."""
    kind = array.dtype.kind
    if kind == "f":
        return "float32"
    if kind in "iu":
        if array.size and (array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max):
            raise ConversionError(f"weight {name!r} does not fit in int32, the widest integer TF.js holds", what=name)
        return "int32"
    if kind == "b":
        return "bool"
    raise ConversionError(f"weight {name!r} has dtype {array.dtype}; TF.js weights are float32, int32 or bool",
                          what=name)


def pack_weights(
    weights: Iterable[tuple[str, np.ndarray]],
    *,
    quantization: str | None = None,
    shard_size: int = fmt.DEFAULT_SHARD_SIZE,
    quantize_names: set[str] | None = None,
) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest (one group) and shard files holding ``weights`` in the given order.

    ``quantization`` (uint8, uint16 or float16) applies to every float weight,
    or only to those named in ``quantize_names`` when given.
    """
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ConversionError(f"the shard size must be a positive number of bytes, got {shard_size!r}")
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in weights:
        array = np.asarray(value)
        dtype = logical_dtype(array, name)
        entry: dict[str, Any] = {fmt.KEY_NAME: name, fmt.KEY_SHAPE: [int(d) for d in array.shape],
                                 fmt.KEY_DTYPE: dtype}
        if quantization and dtype == "float32" and (quantize_names is None or name in quantize_names):
            stored, meta = quantize(array, quantization, name=name)
            entry[fmt.KEY_QUANTIZATION] = meta
        else:
            stored = array.astype(fmt.WEIGHT_DTYPES[dtype])
        chunks.append(np.ascontiguousarray(stored).tobytes())
        entries.append(entry)
    blob = b"".join(chunks)
    count = max(1, math.ceil(len(blob) / shard_size))
    files = {fmt.shard_name(i + 1, count): blob[i * shard_size:(i + 1) * shard_size] for i in range(count)}
    return [{fmt.KEY_PATHS: list(files), fmt.KEY_WEIGHTS: entries}], files


def entry_nbytes(entry: dict[str, Any]) -> int:
    """Bytes of one manifest entry in the shards."""
    quant = entry.get(fmt.KEY_QUANTIZATION)
    stored = quant[fmt.KEY_DTYPE] if quant else entry[fmt.KEY_DTYPE]
    layout = fmt.QUANT_DTYPES.get(stored) or fmt.WEIGHT_DTYPES[stored]
    return math.prod(entry[fmt.KEY_SHAPE]) * np.dtype(layout).itemsize


def unpack_weights(
    manifest: Any, model_json: Path, read: Callable[[str], bytes | None] | None = None
) -> dict[str, np.ndarray]:
    """Every manifest weight as a numpy array (quantized ones dequantized to float32).

    ``read(path)`` returns a shard's bytes or None when it is missing; by
    default shards are files next to ``model_json``. Raises FormatError
    naming ``model_json`` and the entry on a missing shard, a malformed
    entry, or shards whose size does not match the manifest.
    """
    if read is None:
        base = model_json.parent

        def read(path: str) -> bytes | None:
            file = base / path
            return file.read_bytes() if file.is_file() else None

    if not isinstance(manifest, list):
        raise FormatError(model_json, f"'{fmt.KEY_MANIFEST}' must be a list of weight groups")
    out: dict[str, np.ndarray] = {}
    for g, group in enumerate(manifest):
        where = f"{fmt.KEY_MANIFEST}[{g}]"
        if not isinstance(group, dict) or not isinstance(group.get(fmt.KEY_PATHS), list) \
                or not isinstance(group.get(fmt.KEY_WEIGHTS), list):
            raise FormatError(model_json, f"{where} must be an object with lists 'paths' and 'weights'")
        blobs = []
        for path in group[fmt.KEY_PATHS]:
            data = read(path) if isinstance(path, str) and _safe_relative(path) else None
            if data is None:
                raise FormatError(model_json, f"{where}: shard {path!r} is missing (looked next to the model.json)")
            blobs.append(data)
        blob = b"".join(blobs)
        sizes = [_check_entry(model_json, f"{where}.weights[{i}]", e) for i, e in enumerate(group[fmt.KEY_WEIGHTS])]
        if sum(sizes) != len(blob):
            ends = np.cumsum(sizes) if sizes else np.zeros(0, int)
            first = int(np.searchsorted(ends, len(blob), side="right")) if sum(sizes) > len(blob) else len(sizes) - 1
            name = group[fmt.KEY_WEIGHTS][first][fmt.KEY_NAME] if sizes else None
            problem = "is cut short" if sum(sizes) > len(blob) else "is followed by bytes no entry describes"
            raise FormatError(
                model_json,
                f"{where}.weights[{first}] ({name!r}) {problem}: the manifest describes {sum(sizes)} bytes, the "
                f"shards {group[fmt.KEY_PATHS]} hold {len(blob)}; the manifest does not match the shard sizes",
            )
        offset = 0
        for i, (entry, size) in enumerate(zip(group[fmt.KEY_WEIGHTS], sizes)):
            name = entry[fmt.KEY_NAME]
            if name in out:
                raise FormatError(model_json, f"{where}.weights[{i}] ({name!r}): the weight name appears twice")
            out[name] = _decode(entry, blob[offset:offset + size])
            offset += size
    return out


def _safe_relative(path: str) -> bool:
    p = Path(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts and "\\" not in path and ":" not in path


def _check_entry(model_json: Path, what: str, entry: Any) -> int:
    if not isinstance(entry, dict) or not isinstance(entry.get(fmt.KEY_NAME), str):
        raise FormatError(model_json, f"{what}: a weight entry needs a string 'name'")
    shape = entry.get(fmt.KEY_SHAPE)
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise FormatError(model_json, f"{what}: 'shape' must be a list of non-negative integers, got {shape!r}")
    if entry.get(fmt.KEY_DTYPE) not in fmt.WEIGHT_DTYPES:
        raise FormatError(model_json, f"{what}: dtype {entry.get(fmt.KEY_DTYPE)!r} is not one of "
                                      f"{sorted(fmt.WEIGHT_DTYPES)}")
    quant = entry.get(fmt.KEY_QUANTIZATION)
    if quant is not None:
        qd = quant.get(fmt.KEY_DTYPE) if isinstance(quant, dict) else None
        if qd not in fmt.QUANT_DTYPES:
            raise FormatError(model_json, f"{what}: unknown quantization dtype {qd!r}; expected one of "
                                          f"{sorted(fmt.QUANT_DTYPES)}")
        if qd in fmt.AFFINE_QUANT_DTYPES and not all(
                isinstance(quant.get(k), (int, float)) for k in (fmt.KEY_SCALE, fmt.KEY_MIN)):
            raise FormatError(model_json, f"{what}: {qd} quantization needs numeric 'scale' and 'min'")
    return entry_nbytes(entry)


def _decode(entry: dict[str, Any], raw: bytes) -> np.ndarray:
    shape = tuple(entry[fmt.KEY_SHAPE])
    quant = entry.get(fmt.KEY_QUANTIZATION)
    if quant:
        stored = np.frombuffer(raw, fmt.QUANT_DTYPES[quant[fmt.KEY_DTYPE]]).reshape(shape)
        values = dequantize(stored, quant)
        return values if entry[fmt.KEY_DTYPE] == "float32" else np.round(values).astype(np.int32)
    array = np.frombuffer(raw, fmt.WEIGHT_DTYPES[entry[fmt.KEY_DTYPE]]).reshape(shape)
    return array.astype(array.dtype.newbyteorder("="))
