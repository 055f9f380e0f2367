"""runtime.load on .tflite files: the runtime.Model interface, input checks and load errors."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from converters import lite
from converters.lite.model import LiteModel, Tensor
from runtime.errors import InputError, UnsupportedOpError
from savedmodel import GraphBuilder
from savedmodel.errors import FormatError
from tests.converters.lite_helpers import GRAPHS, litert, sample_inputs

pytest.importorskip("ai_edge_litert")
pytestmark = pytest.mark.lite


@pytest.fixture(scope="module")
def two_input_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    a = b.input("a", (None, 4))
    c = b.input("c", (None, 4))
    s = b.op("Add", a, c, name="sum")
    y = b.op("Dense", s, units=3, kernel=rng.standard_normal((4, 3)).astype("f4"), name="y")
    z = b.op("Activation", s, activation="relu", name="z")
    g = b.build(y, z)
    path = tmp_path_factory.mktemp("lite") / "two.tflite"
    data = {"a": rng.standard_normal((30, 4)).astype("f4"), "c": rng.standard_normal((30, 4)).astype("f4")}
    lite.convert(g, path, representative_data=data, progress=False)
    return g, path, data


def test_runtime_load_dispatches_tflite(two_input_file):
    g, path, data = two_input_file
    m = runtime.load(path)
    assert [s.name for s in m.inputs] == ["a", "c"] and [s.name for s in m.outputs] == ["y", "z"]
    assert m.inputs[0].shape == (None, 4) and m.inputs[0].dtype == "float32"
    out = m.predict(data)
    assert sorted(out) == ["y", "z"] and out["y"].shape == (30, 3) and out["y"].dtype == np.float32
    sig = m.signatures["serving_default"](a=data["a"][:2], c=data["c"][:2])
    np.testing.assert_array_equal(sig["z"], out["z"][:2])
    want = runtime.from_graph(g).predict(data)
    np.testing.assert_allclose(out["z"], want["z"], atol=0.05)
    assert "two.tflite" in repr(m)


def test_batch_of_one_and_of_zero(two_input_file):
    _, path, data = two_input_file
    m = runtime.load(path)
    assert m.predict({k: v[:1] for k, v in data.items()})["y"].shape == (1, 3)
    assert m.predict({k: v[:0] for k, v in data.items()})["y"].shape == (0, 3)


@pytest.mark.parametrize("inputs, match", [
    ({"a": np.zeros((2, 5), "f4"), "c": np.zeros((2, 4), "f4")},
     r"input 'a': expected float32 with shape \(None, 4\), received float32 with shape \(2, 5\)"),
    ({"a": np.zeros((2, 4), "f4")}, r"signature 'serving_default': missing \['c'\] inputs"),
    ({"a": np.zeros((2, 4), "f4"), "c": np.zeros((3, 4), "f4")}, r"inputs have different batch sizes \[2, 3\]"),
    ({"a": np.array([["x"] * 4]), "c": np.zeros((1, 4), "f4")}, r"input 'a': expected float32 .* received <U1"),
])
def test_bad_inputs_raise_input_error(two_input_file, inputs, match):
    _, path, _ = two_input_file
    with pytest.raises(InputError, match=match):
        runtime.load(path).predict(inputs)


def test_positional_input_needs_a_single_input_model(two_input_file):
    _, path, _ = two_input_file
    with pytest.raises(InputError, match=r"this model has 2 inputs; pass a dict with keys \['a', 'c'\]"):
        runtime.load(path).predict(np.zeros((1, 4), "f4"))


def test_malformed_file_raises_format_error(tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"\x00" * 3)
    with pytest.raises(FormatError, match="junk.tflite: file is 3 bytes long"):
        runtime.load(path)


def test_op_without_kernel_is_named(tmp_path):
    m = LiteModel()
    x = m.add_tensor(Tensor("x", "float32", (1, 3)))
    y = m.add_tensor(Tensor("y", "float32", (1, 3)))
    m.add_operator("SQRT", [x], [y])
    m.inputs, m.outputs = [x], [y]
    path = tmp_path / "sqrt.tflite"
    lite.write(m, path)
    with pytest.raises(UnsupportedOpError, match="the runtime has no kernel for op 'SQRT'; it has: "):
        runtime.load(path)


def test_unsorted_operators_are_refused(tmp_path):
    m = LiteModel()
    x = m.add_tensor(Tensor("x", "float32", (1, 3)))
    h = m.add_tensor(Tensor("h", "float32", (1, 3)))
    y = m.add_tensor(Tensor("y", "float32", (1, 3)))
    m.add_operator("RELU", [h], [y])
    m.add_operator("RELU", [x], [h])
    m.inputs, m.outputs = [x], [y]
    with pytest.raises(FormatError, match=r"operator 0 \(RELU\) reads tensor 1 \('h'\) before any operator"):
        runtime.lite.from_bytes(lite.serialize(m))


def test_unknown_kernel_set():
    with pytest.raises(ValueError, match="unknown kernels 'fast'; expected one of reference, builtin"):
        runtime.lite.from_bytes(lite.convert(GRAPHS["mlp"](), mode="float32").content, kernels="fast")


def test_int8_throughput_uses_blas_not_python_loops():
    """A 256-sample batch through the CNN stays fast: the integer GEMMs go through float64 BLAS."""
    import time

    g = GRAPHS["cnn"]()
    blob = lite.convert(g, representative_data=sample_inputs(g, 32), progress=False).content
    m = runtime.lite.from_bytes(blob)
    x = sample_inputs(g, 256)
    m.predict(x[:8])
    start = time.perf_counter()
    out = m.predict(x)
    assert time.perf_counter() - start < 2.0
    np.testing.assert_array_equal(out[:4], litert(blob, [x[:4]])[0])
