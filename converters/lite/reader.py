"""Parse .tflite bytes into a :class:`LiteModel`, refusing malformed files.

Python flatbuffers trusts its input, so every offset the reader follows is
checked first (or the failure it causes is caught) and reported as a
``FormatError`` naming the file and the problem. Files written by TF's
converter read too; ops outside the schema subset keep their code as
``"BUILTIN_<code>"`` so the runtime can name them.

>>> model = read("mnist_int8.tflite")      # doctest: +SKIP
>>> model.op_counts()                      # doctest: +SKIP
{'QUANTIZE': 1, 'FULLY_CONNECTED': 3, 'SOFTMAX': 1, 'DEQUANTIZE': 1}
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from converters.lite import format as fmt
from converters.lite.model import LiteModel, Operator, QuantParams, SignatureDef, Tensor
from converters.lite.schema import T
from savedmodel.errors import FormatError

_MIN_SIZE = 8  # root offset + file identifier


def read(path: str | os.PathLike) -> LiteModel:
    """Read a .tflite file; FormatError if it is not a valid one."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except IsADirectoryError as e:
        raise FormatError(path, "is a directory, not a .tflite file") from e
    return parse(blob, source=path)


def parse(blob: bytes, source: object = "<bytes>") -> LiteModel:
    """Parse .tflite bytes; ``source`` names them in errors."""
    blob = bytes(blob)
    if len(blob) < _MIN_SIZE:
        raise FormatError(source, f"file is {len(blob)} bytes long, too short for a TFLite flatbuffer")
    if blob[4:8] != fmt.FILE_IDENTIFIER:
        raise FormatError(
            source, f"file identifier is {blob[4:8]!r}, expected {fmt.FILE_IDENTIFIER!r} (not a .tflite file)")
    root = struct.unpack_from("<I", blob, 0)[0]
    if root + 4 > len(blob):
        raise FormatError(
            source, f"root table offset {root} lies past the end of the {len(blob)}-byte file (truncated?)")
    try:
        return _Parser(blob, source).model()
    except FormatError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError, OverflowError) as e:
        raise FormatError(
            source, f"malformed flatbuffer ({type(e).__name__}: {e}); the file is truncated or corrupt") from e


class _Parser:
    def __init__(self, blob: bytes, source: object) -> None:
        self.blob = blob
        self.source = source
        self.size = len(blob)

    def fail(self, problem: str) -> FormatError:
        return FormatError(self.source, problem)

    # -- checked access ------------------------------------------------------------------
    def _check_table(self, table: Any, what: str) -> None:
        pos = table._tab.Pos
        if not 0 <= pos <= self.size - 4:
            raise self.fail(f"{what} table at offset {pos} lies outside the file (truncated?)")
        vt = pos - struct.unpack_from("<i", self.blob, pos)[0]
        if not 0 <= vt <= self.size - 4:
            raise self.fail(f"{what} vtable at offset {vt} lies outside the file (truncated?)")
        vt_len = struct.unpack_from("<H", self.blob, vt)[0]
        if vt + vt_len > self.size:
            raise self.fail(f"{what} vtable runs past the end of the file (truncated?)")

    @staticmethod
    def _length(table: Any, name: str) -> int:
        """Length of vector field ``name`` (0 when absent); a bad offset raises, caught by parse()."""
        return int(getattr(table, f"{name}Length")())

    def _numpy(self, table: Any, name: str, what: str, dtype: str) -> np.ndarray:
        if self._length(table, name) == 0:
            return np.zeros(0, dtype)
        # AsNumpy is a view of the file's bytes; numpy refuses one past the end.
        return np.asarray(getattr(table, f"{name}AsNumpy")(), dtype)

    def _string(self, value: bytes | None) -> str:
        return "" if value is None else value.decode("utf-8")

    # -- tables --------------------------------------------------------------------------
    def model(self) -> LiteModel:
        m = T.Model.GetRootAs(self.blob, 0)
        self._check_table(m, "Model")
        if m.Version() != fmt.SCHEMA_VERSION:
            raise self.fail(f"schema version {m.Version()} is not supported; expected {fmt.SCHEMA_VERSION}")
        n_sub = self._length(m, "Subgraphs")
        if n_sub != 1:
            raise self.fail(f"the model has {n_sub} subgraphs; only single-subgraph models are supported")
        buffers = [self._buffer(m, i) for i in range(self._length(m, "Buffers"))]
        codes = [self._operator_code(m.OperatorCodes(i)) for i in range(self._length(m, "OperatorCodes"))]
        sg = m.Subgraphs(0)
        self._check_table(sg, "SubGraph")
        tensors = [self._tensor(sg.Tensors(i), i, buffers) for i in range(self._length(sg, "Tensors"))]
        n_tensors = len(tensors)
        operators = []
        for i in range(self._length(sg, "Operators")):
            operators.append(self._operator(sg.Operators(i), i, codes, n_tensors))
        inputs = [int(v) for v in self._numpy(sg, "Inputs", "SubGraph", "int32")]
        outputs = [int(v) for v in self._numpy(sg, "Outputs", "SubGraph", "int32")]
        for kind, idx in (("input", inputs), ("output", outputs)):
            bad = [i for i in idx if not 0 <= i < n_tensors]
            if bad:
                raise self.fail(f"subgraph {kind} tensor indices {bad} are out of range (the subgraph has {n_tensors})")
        metadata = {}
        for i in range(self._length(m, "Metadata")):
            md = m.Metadata(i)
            self._check_table(md, "Metadata")
            index = md.Buffer()
            if index >= len(buffers):
                raise self.fail(f"metadata entry {i} refers to buffer {index}, the model has {len(buffers)}")
            metadata[self._string(md.Name())] = b"" if buffers[index] is None else buffers[index].tobytes()
        signatures = [self._signature(m.SignatureDefs(i), n_tensors)
                      for i in range(self._length(m, "SignatureDefs"))]
        return LiteModel(tensors, operators, inputs, outputs, signatures, self._string(m.Description()),
                         metadata, self._string(sg.Name()))

    def _buffer(self, m: Any, i: int) -> np.ndarray | None:
        buf = m.Buffers(i)
        self._check_table(buf, f"Buffer {i}")
        offset, size = buf.Offset(), buf.Size()
        if offset > 1:  # data stored after the flatbuffer (models past 2 GB)
            if offset + size > self.size:
                raise self.fail(f"buffer {i} refers to bytes {offset}..{offset + size} past the end of the file")
            return np.frombuffer(self.blob, np.uint8, size, offset)
        if self._length(buf, "Data") == 0:
            return None
        return buf.DataAsNumpy()

    def _operator_code(self, oc: Any) -> tuple[str, int]:
        self._check_table(oc, "OperatorCode")
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if oc.CustomCode() is not None:
            return f"CUSTOM:{self._string(oc.CustomCode())}", oc.Version()
        return fmt.BUILTIN_NAMES.get(code, f"BUILTIN_{code}"), oc.Version()

    def _tensor(self, t: Any, i: int, buffers: list[np.ndarray | None]) -> Tensor:
        self._check_table(t, f"Tensor {i}")
        name = self._string(t.Name())
        type_code = t.Type()
        if type_code not in fmt.DTYPES:
            raise self.fail(f"tensor {i} ({name!r}) has tensor type {type_code}, which is not supported")
        dtype = fmt.DTYPES[type_code]
        shape = tuple(int(d) for d in self._numpy(t, "Shape", f"Tensor {i}", "int32"))
        signature = None
        if self._length(t, "ShapeSignature"):
            signature = tuple(int(d) for d in self._numpy(t, "ShapeSignature", f"Tensor {i}", "int32"))
        if any(d < 0 for d in shape):
            raise self.fail(f"tensor {i} ({name!r}) has a negative dim in its shape {list(shape)}")
        if t.Sparsity() is not None:
            raise self.fail(f"tensor {i} ({name!r}) is sparse; sparse tensors are not supported")
        index = t.Buffer()
        if index >= len(buffers):
            raise self.fail(f"tensor {i} ({name!r}) refers to buffer {index}, the model has {len(buffers)}")
        data = None
        raw = buffers[index]
        if raw is not None and index != 0:
            count = int(np.prod(shape, dtype=np.int64))
            want = count * np.dtype(dtype).itemsize
            if raw.size != want:
                raise self.fail(f"tensor {i} ({name!r}): buffer {index} holds {raw.size} bytes, its shape "
                                f"{list(shape)} of {dtype} needs {want}")
            data = raw.view(dtype).reshape(shape)
        quant = self._quant(t.Quantization(), i, name, shape)
        return Tensor(name, dtype, shape, signature, data, quant)

    def _quant(self, q: Any, i: int, name: str, shape: tuple[int, ...]) -> QuantParams | None:
        if q is None:
            return None
        self._check_table(q, f"QuantizationParameters of tensor {i}")
        scale = self._numpy(q, "Scale", f"tensor {i}", "float32")
        zp = self._numpy(q, "ZeroPoint", f"tensor {i}", "int64")
        if scale.size == 0:
            return None
        if zp.size == 0:
            zp = np.zeros(scale.size, np.int64)
        axis = q.QuantizedDimension()
        if zp.size != scale.size and zp.size != 1:
            raise self.fail(f"tensor {i} ({name!r}) has {scale.size} scales but {zp.size} zero points")
        if zp.size != scale.size:
            zp = np.full(scale.size, zp[0], np.int64)
        if scale.size > 1 and not (0 <= axis < len(shape) and shape[axis] == scale.size):
            raise self.fail(f"tensor {i} ({name!r}) has {scale.size} scales along dimension {axis} of shape "
                            f"{list(shape)}")
        return QuantParams(scale.copy(), zp.copy(), int(axis))

    def _operator(self, o: Any, i: int, codes: list[tuple[str, int]], n_tensors: int) -> Operator:
        self._check_table(o, f"Operator {i}")
        index = o.OpcodeIndex()
        if index >= len(codes):
            raise self.fail(f"operator {i} has opcode index {index}, the model has {len(codes)} operator codes")
        op, version = codes[index]
        inputs = [int(v) for v in self._numpy(o, "Inputs", f"Operator {i}", "int32")]
        outputs = [int(v) for v in self._numpy(o, "Outputs", f"Operator {i}", "int32")]
        bad = [t for t in inputs if not -1 <= t < n_tensors] + [t for t in outputs if not 0 <= t < n_tensors]
        if bad:
            raise self.fail(f"operator {i} ({op}) refers to tensors {bad}, the subgraph has {n_tensors}")
        return Operator(op, inputs, outputs, self._options(o, op, i), version)

    def _options(self, o: Any, op: str, i: int) -> dict[str, Any]:
        kind = o.BuiltinOptionsType()
        table_name = fmt.OPTIONS.get(op)
        if kind == 0 or table_name is None:
            return {}
        if kind != fmt.OPTIONS_TYPES[table_name]:
            raise self.fail(f"operator {i} ({op}) carries options of type {kind}, expected {table_name}")
        raw = o.BuiltinOptions()
        if raw is None:
            return {}
        table = getattr(T, table_name)()
        table.Init(raw.Bytes, raw.Pos)
        self._check_table(table, f"{table_name} of operator {i}")
        options: dict[str, Any] = {}
        for snake, camel, is_vector in fmt.option_fields(table_name):
            if is_vector:
                options[snake] = [int(v) for v in self._numpy(table, camel, f"{table_name} of operator {i}", "int32")]
                continue
            value = getattr(table, camel)()
            if snake in fmt.ENUM_FIELDS:
                names = fmt.enum_names(fmt.ENUM_FIELDS[snake])
                value = names.get(value, value)
            options[snake] = value
        return options

    def _signature(self, s: Any, n_tensors: int) -> SignatureDef:
        self._check_table(s, "SignatureDef")
        maps = []
        for kind in ("Inputs", "Outputs"):
            items = {}
            for j in range(self._length(s, kind)):
                tm = getattr(s, kind)(j)
                self._check_table(tm, "TensorMap")
                index = tm.TensorIndex()
                if index >= n_tensors:
                    raise self.fail(f"signature entry {self._string(tm.Name())!r} refers to tensor {index}, "
                                    f"the subgraph has {n_tensors}")
                items[self._string(tm.Name())] = int(index)
            maps.append(items)
        return SignatureDef(self._string(s.SignatureKey()), maps[0], maps[1])
