"""The .tflite writer, reader and validator: file conventions, round trips, malformed files, broken rules."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from converters import lite
from converters.errors import ConversionError
from converters.lite import format as fmt
from converters.lite.model import LiteModel, QuantParams, Tensor
from savedmodel.errors import FormatError
from tests.converters.lite_helpers import Q, cnn, litert, sample_inputs

pytest.importorskip("ai_edge_litert")
pytestmark = pytest.mark.lite


@pytest.fixture(scope="module")
def int8_blob() -> bytes:
    g = cnn()
    return lite.convert(g, representative_data=sample_inputs(g, 32), progress=False).content


def test_file_conventions(int8_blob):
    m = lite.parse(int8_blob)
    assert int8_blob[4:8] == b"TFL3"
    root = struct.unpack_from("<I", int8_blob, 0)[0]
    from converters.lite.schema import T

    raw = T.Model.GetRootAs(int8_blob, 0)
    assert root > 0 and raw.Version() == 3
    assert raw.Buffers(0).DataLength() == 0  # the empty sentinel buffer
    assert m.metadata[fmt.METADATA_MIN_RUNTIME] == b"1.14.0".ljust(16, b"\0")
    assert [s.key for s in m.signatures] == ["serving_default"]
    x = m.tensors[m.inputs[0]]
    assert x.shape == (1, 12, 12, 3) and x.shape_signature == (-1, 12, 12, 3)
    versions = {o.op: o.version for o in m.operators}
    assert versions["CONV_2D"] == 3 and versions["FULLY_CONNECTED"] == 4 and versions["QUANTIZE"] == 1
    assert versions["DEQUANTIZE"] == 2 and versions["SOFTMAX"] == 2 and versions["MEAN"] == 2


def test_constant_buffers_are_16_byte_aligned(int8_blob):
    from converters.lite.schema import T

    raw = T.Model.GetRootAs(int8_blob, 0)
    for i in range(1, raw.BuffersLength()):
        b = raw.Buffers(i)
        if b.DataLength():
            start = b._tab.Vector(b._tab.Offset(4))
            assert start % 16 == 0


def test_read_write_round_trip_is_stable(int8_blob):
    m = lite.parse(int8_blob)
    again = lite.serialize(m)
    m2 = lite.parse(again)
    assert [(o.op, o.inputs, o.outputs, o.options, o.version) for o in m.operators] == \
        [(o.op, o.inputs, o.outputs, o.options, o.version) for o in m2.operators]
    for a, b in zip(m.tensors, m2.tensors, strict=True):
        assert (a.name, a.dtype, a.shape, a.shape_signature) == (b.name, b.dtype, b.shape, b.shape_signature)
        assert (a.data is None) == (b.data is None)
        if a.data is not None:
            np.testing.assert_array_equal(a.data, b.data)
        assert (a.quant is None and b.quant is None) or a.quant.same_as(b.quant)
    x = sample_inputs(cnn(), 3)
    np.testing.assert_array_equal(litert(again, [x])[0], litert(int8_blob, [x])[0])


def test_scalar_and_large_opcode_tensors_survive():
    m = LiteModel()
    x = m.add_tensor(Tensor("x", "float32", (1, 4), (-1, 4)))
    y = m.add_tensor(Tensor("y", "float32", (1, 4), (-1, 4)))
    m.add_operator("GELU", [x], [y], {"approximate": True})  # builtin code 150 > 127
    m.add_constant("scalar", np.float32(2.5))
    m.inputs, m.outputs = [x], [y]
    back = lite.parse(lite.serialize(m))
    assert back.operators[0].op == "GELU" and back.operators[0].options == {"approximate": True}
    assert back.tensors[2].shape == () and float(back.tensors[2].data) == 2.5
    out = litert(lite.serialize(m), [np.ones((3, 4), np.float32)])[0]
    assert out.shape == (3, 4)


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[:6], "too short"),
    (lambda b: b[:4] + b"XXXX" + b[8:], "file identifier is b'XXXX'"),
    (lambda b: struct.pack("<I", len(b) + 100) + b[4:], "root table offset"),
    (lambda b: b[: len(b) // 3], "truncated"),
])
def test_malformed_files_raise_format_error(int8_blob, damage, match):
    with pytest.raises(FormatError, match=match):
        lite.parse(damage(int8_blob))


def test_every_truncation_raises_format_error(int8_blob):
    for cut in range(8, len(int8_blob), max(1, len(int8_blob) // 97)):
        with pytest.raises(FormatError):
            lite.parse(int8_blob[:cut])


def test_wrong_schema_version_and_bad_indices(int8_blob):
    from converters.lite.schema import T

    raw = T.Model.GetRootAs(int8_blob, 0)
    pos = raw._tab.Offset(4) + raw._tab.Pos
    blob = bytearray(int8_blob)
    struct.pack_into("<I", blob, pos, 2)
    with pytest.raises(FormatError, match="schema version 2 is not supported; expected 3"):
        lite.parse(bytes(blob))
    m = lite.parse(int8_blob)
    m.operators[1].inputs[0] = 999
    with pytest.raises(FormatError, match=r"operator 1 \(CONV_2D\) refers to tensors \[999\]"):
        lite.parse(lite.serialize(m))


def test_reader_errors_name_the_file(tmp_path, int8_blob):
    path = tmp_path / "bad.tflite"
    path.write_bytes(int8_blob[:40])
    with pytest.raises(FormatError, match="bad.tflite"):
        lite.read(path)
    with pytest.raises(FormatError, match="is a directory"):
        lite.read(tmp_path)


# -- the validator ----------------------------------------------------------------------------


def _fc_model(*, w_zp=0, bias_scale_factor=1.0, reshape_q=None, softmax_q=(1 / 256, -128)):
    m = LiteModel()
    x = m.add_tensor(Tensor("x", "int8", (1, 4), None, None, Q(0.1, 0)))
    w = m.add_constant("w", np.ones((3, 4), np.int8), QuantParams([0.02] * 3, [w_zp] * 3, 0))
    b = m.add_constant("b", np.zeros(3, np.int32),
                       QuantParams(np.float32(0.1) * np.float32(0.02) * bias_scale_factor * np.ones(3), [0] * 3, 0))
    h = m.add_tensor(Tensor("h", "int8", (1, 3), None, None, Q(0.05, -3)))
    m.add_operator("FULLY_CONNECTED", [x, w, b], [h], {}, 4)
    r = m.add_tensor(Tensor("r", "int8", (1, 3), None, None, reshape_q or Q(0.05, -3)))
    m.add_operator("RESHAPE", [h, m.add_constant("s", np.array([1, 3], np.int32))], [r])
    y = m.add_tensor(Tensor("y", "int8", (1, 3), None, None, Q(*softmax_q)))
    m.add_operator("SOFTMAX", [r], [y], {"beta": 1.0}, 2)
    m.inputs, m.outputs = [x], [y]
    return m


def test_validator_accepts_a_sound_model():
    lite.validate(_fc_model())


@pytest.mark.parametrize("kwargs, match", [
    ({"w_zp": 20}, r"operator 0 \(FULLY_CONNECTED\) .* weights 'w' must be symmetric \(zero point 0\)"),
    ({"bias_scale_factor": 1.1}, r"bias scale must be input scale x weight scale; channel 0"),
    ({"reshape_q": Q(0.07, -3)}, r"operator 1 \(RESHAPE\) .* output must keep its input's quantization"),
    ({"softmax_q": (1 / 255, -128)}, r"operator 2 \(SOFTMAX\) .* scale 0.00390625 and zero point -128"),
])
def test_validator_refuses_what_litert_computes_wrong(kwargs, match):
    with pytest.raises(ConversionError, match=match):
        lite.validate(_fc_model(**kwargs))


def test_validator_refuses_unquantized_int8_and_mixed_concatenation():
    m = _fc_model()
    m.tensors[0].quant = None
    with pytest.raises(ConversionError, match="tensor 0 \\('x'\\) is int8 without quantization parameters"):
        lite.validate(m)
    m = LiteModel()
    a = m.add_tensor(Tensor("a", "int8", (1, 2), None, None, Q(0.1, 0)))
    b = m.add_tensor(Tensor("b", "int8", (1, 2), None, None, Q(0.2, 0)))
    c = m.add_tensor(Tensor("c", "int8", (1, 4), None, None, Q(0.1, 0)))
    m.add_operator("CONCATENATION", [a, b], [c], {"axis": -1}, 2)
    m.inputs, m.outputs = [a, b], [c]
    with pytest.raises(ConversionError, match="input 1 is quantized .* int8 CONCATENATION needs one quantization"):
        lite.validate(m)


def test_litert_really_ignores_a_weight_zero_point():
    """The reason for the validator: LiteRT runs asymmetric weights without complaint, as if symmetric."""
    good, bad = _fc_model(), _fc_model(w_zp=20)
    x = np.full((1, 4), 10, np.int8)
    np.testing.assert_array_equal(litert(lite.serialize(good), [x])[0], litert(lite.serialize(bad), [x])[0])
