"""Serialise a :class:`LiteModel` to .tflite bytes with the generated schema builders.

Flatbuffers are built back to front, children before the table that refers
to them. Constant data goes into 16-byte aligned buffers (TF aligns to 4;
both run, 16 suits mmap and SIMD loads); every non-constant tensor points at
the empty buffer 0, which makes files smaller than TF's one-buffer-per-tensor.

>>> blob = serialize(model)                        # doctest: +SKIP
>>> blob[4:8]                                      # doctest: +SKIP
b'TFL3'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

from converters.lite import format as fmt
from converters.lite.model import LiteModel, Operator, QuantParams, Tensor
from converters.lite.schema import T


def write(model: LiteModel, path: str | os.PathLike) -> Path:
    """Serialise ``model`` to ``path`` (written whole, then renamed into place)."""
    return write_bytes(serialize(model), path)


def write_bytes(blob: bytes, path: str | os.PathLike) -> Path:
    """Write .tflite bytes to ``path`` atomically: a temporary file renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
    return path


def serialize(model: LiteModel) -> bytes:
    """The .tflite bytes of ``model``."""
    size = sum(t.data.nbytes for t in model.tensors if t.data is not None)
    b = flatbuffers.Builder(size + 4096 + 256 * len(model.tensors))
    buffers: list[bytes] = [b""]
    tensor_buffer: list[int] = []
    for t in model.tensors:
        if t.data is None:
            tensor_buffer.append(0)
        else:
            buffers.append(np.ascontiguousarray(t.data, dtype=t.dtype).tobytes())
            tensor_buffer.append(len(buffers) - 1)
    metadata = []
    for name, value in model.metadata.items():
        buffers.append(bytes(value))
        metadata.append((name, len(buffers) - 1))

    codes: dict[tuple[str, int], int] = {}
    for o in model.operators:
        codes.setdefault((o.op, o.version), len(codes))

    buffer_offsets = [_buffer(b, data) for data in buffers]
    tensor_offsets = [_tensor(b, t, tensor_buffer[i]) for i, t in enumerate(model.tensors)]
    operator_offsets = [_operator(b, o, codes[(o.op, o.version)]) for o in model.operators]
    code_offsets = [_operator_code(b, op, version) for (op, version) in codes]

    name = b.CreateString(model.subgraph_name)
    tensors = _table_vector(b, T.SubGraphStartTensorsVector, tensor_offsets)
    inputs = _ints(b, model.inputs)
    outputs = _ints(b, model.outputs)
    operators = _table_vector(b, T.SubGraphStartOperatorsVector, operator_offsets)
    T.SubGraphStart(b)
    T.SubGraphAddTensors(b, tensors)
    T.SubGraphAddInputs(b, inputs)
    T.SubGraphAddOutputs(b, outputs)
    T.SubGraphAddOperators(b, operators)
    T.SubGraphAddName(b, name)
    subgraph = T.SubGraphEnd(b)

    signature_offsets = [_signature(b, s.key, s.inputs, s.outputs) for s in model.signatures]
    metadata_offsets = []
    for meta_name, index in metadata:
        s = b.CreateString(meta_name)
        T.MetadataStart(b)
        T.MetadataAddName(b, s)
        T.MetadataAddBuffer(b, index)
        metadata_offsets.append(T.MetadataEnd(b))

    description = b.CreateString(model.description)
    code_vec = _table_vector(b, T.ModelStartOperatorCodesVector, code_offsets)
    subgraphs = _table_vector(b, T.ModelStartSubgraphsVector, [subgraph])
    buffer_vec = _table_vector(b, T.ModelStartBuffersVector, buffer_offsets)
    meta_vec = _table_vector(b, T.ModelStartMetadataVector, metadata_offsets) if metadata_offsets else None
    sig_vec = _table_vector(b, T.ModelStartSignatureDefsVector, signature_offsets) if signature_offsets else None
    T.ModelStart(b)
    T.ModelAddVersion(b, fmt.SCHEMA_VERSION)
    T.ModelAddOperatorCodes(b, code_vec)
    T.ModelAddSubgraphs(b, subgraphs)
    T.ModelAddDescription(b, description)
    T.ModelAddBuffers(b, buffer_vec)
    if meta_vec is not None:
        T.ModelAddMetadata(b, meta_vec)
    if sig_vec is not None:
        T.ModelAddSignatureDefs(b, sig_vec)
    b.Finish(T.ModelEnd(b), file_identifier=fmt.FILE_IDENTIFIER)
    return bytes(b.Output())


# -- pieces -------------------------------------------------------------------------------


def _ints(b: flatbuffers.Builder, values, dtype=np.int32) -> int:
    return b.CreateNumpyVector(np.asarray(list(values), dtype))


def _table_vector(b: flatbuffers.Builder, start, offsets: list[int]) -> int:
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _raw_bytes(b: flatbuffers.Builder, data: bytes, alignment: int) -> int:
    """A [ubyte] vector holding ``data``, its first byte aligned to ``alignment``."""
    b.StartVector(1, len(data), alignment)
    b.head = b.head - len(data)
    b.Bytes[b.head:b.head + len(data)] = data
    return b.EndVector()


def _buffer(b: flatbuffers.Builder, data: bytes) -> int:
    vec = _raw_bytes(b, data, fmt.BUFFER_ALIGNMENT) if data else None
    T.BufferStart(b)
    if vec is not None:
        T.BufferAddData(b, vec)
    return T.BufferEnd(b)


def _quantization(b: flatbuffers.Builder, q: QuantParams) -> int:
    scale = b.CreateNumpyVector(np.asarray(q.scale, np.float32))
    zero_point = b.CreateNumpyVector(np.asarray(q.zero_point, np.int64))
    T.QuantizationParametersStart(b)
    T.QuantizationParametersAddScale(b, scale)
    T.QuantizationParametersAddZeroPoint(b, zero_point)
    T.QuantizationParametersAddQuantizedDimension(b, int(q.axis))
    return T.QuantizationParametersEnd(b)


def _tensor(b: flatbuffers.Builder, t: Tensor, buffer: int) -> int:
    name = b.CreateString(t.name)
    shape = _ints(b, t.shape)
    signature = _ints(b, t.shape_signature) if t.shape_signature is not None else None
    quant = _quantization(b, t.quant) if t.quant is not None else None
    T.TensorStart(b)
    T.TensorAddShape(b, shape)
    T.TensorAddType(b, fmt.tensor_type(t.dtype))
    T.TensorAddBuffer(b, buffer)
    T.TensorAddName(b, name)
    if quant is not None:
        T.TensorAddQuantization(b, quant)
    if signature is not None:
        T.TensorAddShapeSignature(b, signature)
    return T.TensorEnd(b)


def _enum_value(field: str, value: Any) -> int:
    if isinstance(value, str):
        return getattr(fmt.ENUM_FIELDS[field], value)
    return int(value)


def _options(b: flatbuffers.Builder, op: Operator) -> tuple[int, int] | None:
    table = fmt.OPTIONS.get(op.op)
    if table is None:
        return None
    fields = {snake: (camel, vec) for snake, camel, vec in fmt.option_fields(table)}
    unknown = set(op.options) - set(fields)
    if unknown:
        raise ValueError(f"{op.op}: unknown option fields {sorted(unknown)}; {table} has {sorted(fields)}")
    vectors = {k: _ints(b, v) for k, v in op.options.items() if fields[k][1]}
    getattr(T, f"{table}Start")(b)
    for key, value in op.options.items():
        camel, is_vector = fields[key]
        add = getattr(T, f"{table}Add{camel}")
        if is_vector:
            add(b, vectors[key])
        elif key in fmt.ENUM_FIELDS:
            add(b, _enum_value(key, value))
        elif isinstance(value, (bool, np.bool_)):
            add(b, bool(value))
        elif isinstance(value, (float, np.floating)):
            add(b, float(value))
        else:
            add(b, int(value))
    return fmt.OPTIONS_TYPES[table], getattr(T, f"{table}End")(b)


def _operator(b: flatbuffers.Builder, op: Operator, code_index: int) -> int:
    inputs = _ints(b, op.inputs)
    outputs = _ints(b, op.outputs)
    options = _options(b, op)
    T.OperatorStart(b)
    T.OperatorAddOpcodeIndex(b, code_index)
    T.OperatorAddInputs(b, inputs)
    T.OperatorAddOutputs(b, outputs)
    if options is not None:
        T.OperatorAddBuiltinOptionsType(b, options[0])
        T.OperatorAddBuiltinOptions(b, options[1])
    return T.OperatorEnd(b)


def _operator_code(b: flatbuffers.Builder, op: str, version: int) -> int:
    code = fmt.BUILTIN_CODES[op]
    T.OperatorCodeStart(b)
    T.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, fmt.PLACEHOLDER_CODE))
    T.OperatorCodeAddVersion(b, version)
    T.OperatorCodeAddBuiltinCode(b, code)
    return T.OperatorCodeEnd(b)


def _tensor_maps(b: flatbuffers.Builder, start, items: dict[str, int]) -> int:
    offsets = []
    for alias, index in items.items():
        s = b.CreateString(alias)
        T.TensorMapStart(b)
        T.TensorMapAddName(b, s)
        T.TensorMapAddTensorIndex(b, index)
        offsets.append(T.TensorMapEnd(b))
    return _table_vector(b, start, offsets)


def _signature(b: flatbuffers.Builder, key: str, inputs: dict[str, int], outputs: dict[str, int]) -> int:
    ins = _tensor_maps(b, T.SignatureDefStartInputsVector, inputs)
    outs = _tensor_maps(b, T.SignatureDefStartOutputsVector, outputs)
    k = b.CreateString(key)
    T.SignatureDefStart(b)
    T.SignatureDefAddInputs(b, ins)
    T.SignatureDefAddOutputs(b, outs)
    T.SignatureDefAddSignatureKey(b, k)
    T.SignatureDefAddSubgraphIndex(b, 0)
    return T.SignatureDefEnd(b)
