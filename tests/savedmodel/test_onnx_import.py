"""The ONNX importer on hand-built ONNX models, checked against onnxruntime and onnx's reference evaluator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import runtime  # noqa: E402
import savedmodel  # noqa: E402
from savedmodel.errors import FormatError, UnsupportedError  # noqa: E402
from savedmodel.importers.onnx import import_onnx_file, import_onnx_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RTOL, ATOL = 1e-4, 1e-5
F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "test", inputs, outputs, [numpy_helper.from_array(np.asarray(v), k)
                                                                 for k, v in dict(initializers).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # readable by every onnxruntime the test extra allows
    onnx.checker.check_model(model)
    return model


def _value(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def _rng_weights(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ours(model, feeds, tmp_path):
    """Outputs of the model imported, saved as a bundle and run by our runtime."""
    path = savedmodel.save(model, tmp_path / "m")
    return runtime.load(path).signatures["serving_default"](**feeds)


def _onnxruntime(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def _reference(model, feeds):
    names = [o.name for o in model.graph.output]
    return dict(zip(names, ReferenceEvaluator(model).run(None, feeds)))


def _assert_same(got, expected):
    assert set(got) == set(expected)
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        assert got[name].dtype == want.dtype, name
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(got[name], want, err_msg=name)
        else:
            np.testing.assert_allclose(got[name], want, rtol=RTOL, atol=ATOL, err_msg=name)


# -- a channels-first CNN against onnxruntime -------------------------------------------

def _cnn() -> onnx.ModelProto:
    """NCHW convs (one strided with asymmetric pads, one depthwise), concat and softmax over channels,
    padding, max pooling with pads, a channel-wise reduction and a per-channel PRelu."""
    w = {
        "w1": _rng_weights(6, 3, 3, 3, seed=1), "b1": _rng_weights(6, seed=2),
        "w2": _rng_weights(6, 1, 3, 3, seed=3), "w3": _rng_weights(4, 3, 1, 1, seed=4),
        "slope": np.abs(_rng_weights(10, 1, 1, seed=5)),
        "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "axes": np.array([2, 3], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=6),
        helper.make_node("Conv", ["x", "w3"], ["c3"], kernel_shape=[1, 1], strides=[2, 2]),
        helper.make_node("Concat", ["c2", "c3"], ["cat"], axis=1),
        helper.make_node("PRelu", ["cat", "slope"], ["pr"]),
        helper.make_node("Softmax", ["pr"], ["sm"], axis=1),
        helper.make_node("Pad", ["sm", "pads"], ["pad"], mode="constant"),
        helper.make_node("MaxPool", ["pad"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["mp", "axes"], ["y"], keepdims=1),
        helper.make_node("Flatten", ["mp"], ["flat"], axis=1),
    ]
    return _model(nodes, [_value("x", ["N", 3, 12, 12])], [_value("y", ["N", 10, 1, 1]), _value("flat", ["N", 250])],
                  w, opset=18)


@pytest.mark.parametrize("batch", [1, 3])
def test_channels_first_cnn_matches_onnxruntime(batch, tmp_path):
    model = _cnn()
    x = np.random.default_rng(batch).standard_normal((batch, 3, 12, 12)).astype(np.float32)
    _assert_same(_ours(model, {"x": x}, tmp_path), _onnxruntime(model, {"x": x}))


def test_cnn_is_channels_last_inside_and_keeps_onnx_names_and_nchw_input():
    graph, source = import_onnx_model(_cnn())
    assert [s.name for s in graph.inputs] == ["x"]
    assert graph.inputs[0].shape == (None, 3, 12, 12)
    assert [s.name for s in graph.outputs] == ["y", "flat"]
    assert graph.outputs[0].shape == (None, 10, 1, 1)
    convs = [n for n in graph.nodes if n.op in ("Conv2D", "DepthwiseConv2D")]
    assert [n.op for n in convs] == ["Conv2D", "DepthwiseConv2D", "Conv2D"]
    # one transpose in (shared by both convs), one back for each NCHW output
    assert sum(n.op in ("Permute", "Transpose") for n in graph.nodes) <= 3
    assert source["framework"] == "onnx"
    assert source["opset"] == 18


def test_onnx_file_saved_and_run_with_the_cli_without_onnxruntime_or_torch(tmp_path):
    """`savedmodel export model.onnx base` in a process where onnxruntime, torch and keras cannot be imported."""
    model = _cnn()
    onnx.save(model, tmp_path / "model.onnx")
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('onnxruntime', 'torch', 'keras', 'tensorflow'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from savedmodel.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "export", str(tmp_path / "model.onnx"), str(tmp_path / "m")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    got = runtime.load(tmp_path / "m").signatures["serving_default"](x=x)
    _assert_same(got, _onnxruntime(model, {"x": x}))
    assert savedmodel.load(tmp_path / "m").metadata["source"]["framework"] == "onnx"


# -- opsets where signatures differ -----------------------------------------------------

def _reduce_split(opset: int) -> onnx.ModelProto:
    """ReduceMean's axes are an attribute up to opset 17 and an input from 18; Split's sizes are an input
    from 13 and may be num_outputs from 18."""
    inits = {}
    if opset < 18:
        reduce = helper.make_node("ReduceMean", ["x"], ["m"], axes=[2], keepdims=0)
        split = helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1)
        inits["sizes"] = np.array([2, 2], np.int64)
    else:
        inits["axes"] = np.array([2], np.int64)
        reduce = helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0)
        split = helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2)
    nodes = [reduce, split, helper.make_node("Sub", ["a", "b"], ["d"])]
    outputs = [_value("m", ["N", 4]), _value("d", ["N", 2, 5])]
    return _model(nodes, [_value("x", ["N", 4, 5])], outputs, inits, opset=opset)


@pytest.mark.parametrize("opset", [13, 21])
def test_opset_specific_signatures_match_the_reference(opset, tmp_path):
    model = _reduce_split(opset)
    x = np.random.default_rng(opset).standard_normal((3, 4, 5)).astype(np.float32)
    _assert_same(_ours(model, {"x": x}, tmp_path), _reference(model, {"x": x}))


@pytest.mark.parametrize("opset", [12, 22])
def test_opsets_outside_13_to_21_are_refused(opset):
    with pytest.raises(UnsupportedError, match=rf"the model uses ONNX opset {opset}; the importer reads opsets 13 "
                                               r"to 21"):
        import_onnx_model(_model([helper.make_node("Relu", ["x"], ["y"])], [_value("x", ["N", 2])],
                                 [_value("y", ["N", 2])], opset=opset))


# -- elementwise math, constants and shapes ------------------------------------------------

def test_elementwise_math_with_constants_matches_the_reference(tmp_path):
    inits = {"scale": np.array([0.5, -2.0, 3.0, 1.5], np.float32), "two": np.array(2.0, np.float32),
             "ten": np.array(10.0, np.float32), "zero": np.array(0.0, np.float32),
             "grid": _rng_weights(3, 4, seed=9), "axes": np.array([1, 2], np.int64)}
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["m"]),
        helper.make_node("Sub", ["ten", "m"], ["s"]),
        helper.make_node("Div", ["s", "two"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["p"]),
        helper.make_node("Add", ["p", "grid"], ["g"]),
        helper.make_node("Greater", ["x", "zero"], ["pos"]),
        helper.make_node("Neg", ["x"], ["neg"]),
        helper.make_node("Where", ["pos", "x", "neg"], ["absx"]),
        helper.make_node("Sqrt", ["absx"], ["root"]),
        helper.make_node("Max", ["root", "g"], ["mx"]),
        helper.make_node("Erf", ["mx"], ["e"]),
        helper.make_node("ArgMax", ["g"], ["am"], axis=2, keepdims=0),
        helper.make_node("Cast", ["pos"], ["posf"], to=F),
        helper.make_node("ReduceSum", ["posf", "axes"], ["count"], keepdims=0),  # axes an input from opset 13
    ]
    outputs = [_value("e", ["N", 3, 4]), _value("am", ["N", 3], TensorProto.INT64), _value("count", ["N"])]
    model = _model(nodes, [_value("x", ["N", 3, 4])], outputs, inits, opset=13)
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    _assert_same(_ours(model, {"x": x}, tmp_path), _reference(model, {"x": x}))


def test_shape_arithmetic_on_the_batch_is_folded_into_a_batch_keeping_reshape():
    """x.view(x.size(0), -1) as PyTorch exports it: Shape, Gather, Unsqueeze, Concat, Reshape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1d"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = {"zero": np.array(0, np.int64), "zero1d": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    graph, _ = import_onnx_model(_model(nodes, [_value("x", ["N", 2, 3])], [_value("y", ["N", 6])], inits))
    assert [n.op for n in graph.nodes] == ["Reshape"]
    assert graph.nodes[0].attrs["target_shape"] == [6]
    assert graph.outputs[0].shape == (None, 6)


def test_a_fixed_batch_in_the_file_is_kept():
    graph, _ = import_onnx_model(_model([helper.make_node("Relu", ["x"], ["y"])], [_value("x", [1, 4])],
                                        [_value("y", [1, 4])]))
    assert graph.inputs[0].shape == (1, 4)
    assert graph.outputs[0].shape == (1, 4)


def test_a_reshape_merging_the_batch_axis_is_refused():
    model = _model([helper.make_node("Reshape", ["x", "t"], ["y"])], [_value("x", ["N", 2, 3])],
                   [_value("y", ["M", 3])], {"t": np.array([-1, 3], np.int64)})
    with pytest.raises(UnsupportedError, match=r"tensor 'x' merges the batch axis with other axes \(ONNX dims "
                                               r"\['2\*batch', 3\]\)"):
        import_onnx_model(model)


# -- errors ---------------------------------------------------------------------------------

def test_every_unsupported_op_is_reported_at_once():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="fine"),
        helper.make_node("Det", ["r"], ["det"], name="determinant"),
        helper.make_node("Hardmax", ["x"], ["h1"], name="hard_a"),
        helper.make_node("Hardmax", ["h1"], ["h2"], name="hard_b"),
        helper.make_node("Gemm", ["x2", "w"], ["g"], name="gemm_t", transA=1),
    ]
    model = _model(nodes, [_value("x", ["N", 3, 3]), _value("x2", [4, 3])],
                   [_value("det", ["N"]), _value("h2", ["N", 3, 3]), _value("g", [3, 2])], {"w": _rng_weights(4, 2)})
    with pytest.raises(UnsupportedError) as info:
        import_onnx_model(model)
    message = str(info.value)
    assert "2 op type(s) the importer cannot convert: Det (nodes 'determinant'); Hardmax (nodes 'hard_a', " \
           "'hard_b')" in message
    assert "Gemm node 'gemm_t': transA=1 (the batch axis would be transposed)" in message
    assert info.value.kind == "Det, Gemm, Hardmax"
    assert "ai.onnx::Conv" in info.value.supported


def test_an_unsupported_attribute_names_the_node():
    model = _model([helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="rnn", hidden_size=2, clip=1.0)],
                   [_value("x", [5, "N", 3])], [_value("y", [5, 1, "N", 2])],
                   {"w": _rng_weights(1, 8, 3), "r": _rng_weights(1, 8, 2)})
    with pytest.raises(UnsupportedError, match=r"LSTM node 'rnn': clip / input_forget are not supported"):
        import_onnx_model(model)


def test_malformed_file_is_a_format_error_naming_it(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07 not a protobuf \xff\xff\xff")
    with pytest.raises(FormatError, match=r"broken\.onnx: is not a readable ONNX model \(DecodeError"):
        import_onnx_file(bad)


def test_empty_file_is_a_format_error(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match=r"empty\.onnx: is not a valid ONNX model: The model does not have an "
                                          r"ir_version set properly"):
        savedmodel.save(empty, tmp_path / "m")


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match=r"nowhere\.onnx: no such file"):
        import_onnx_file(tmp_path / "nowhere.onnx")


def test_a_model_object_that_is_not_a_model_proto_is_refused():
    with pytest.raises(FormatError, match=r"<onnx.ModelProto>: expected an onnx.ModelProto, got GraphProto"):
        import_onnx_model(helper.make_graph([], "g", [], []))


# -- one row per op (or op form), against onnxruntime --------------------------------------

ROWS = {
    "ConvTranspose": ("ConvTranspose", (3, 5, 5), {"strides": [2, 2], "pads": [1, 1, 0, 0], "output_padding": [1, 1]},
                      {"w": _rng_weights(3, 4, 3, 3, seed=11), "b": _rng_weights(4, seed=12)}, ["w", "b"]),
    "AveragePool_same": ("AveragePool", (2, 7, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
                         {}, []),
    "AveragePool_include_pad": ("AveragePool", (2, 6, 6), {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0],
                                                           "count_include_pad": 1}, {}, []),
    "GlobalMaxPool": ("GlobalMaxPool", (4, 5, 3), {}, {}, []),
    "Conv1D": ("Conv", (3, 9), {"kernel_shape": [3], "pads": [1, 1], "dilations": [2]},
               {"w": _rng_weights(5, 3, 3, seed=13)}, ["w"]),
    "BatchNormalization": ("BatchNormalization", (3, 4, 4), {"epsilon": 1e-3},
                           {"s": _rng_weights(3, seed=1), "b": _rng_weights(3, seed=2), "m": _rng_weights(3, seed=3),
                            "v": np.abs(_rng_weights(3, seed=4)) + 0.5}, ["s", "b", "m", "v"]),
    "LayerNormalization": ("LayerNormalization", (4, 6), {"axis": -1, "epsilon": 1e-5},
                           {"s": _rng_weights(6, seed=5), "b": _rng_weights(6, seed=6)}, ["s", "b"]),
    "Resize_nearest_x2": ("Resize", (2, 3, 4), {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                                "nearest_mode": "floor"},
                          {"scales": np.array([1, 1, 2, 2], np.float32)}, ["", "scales"]),
    "Resize_linear_sizes": ("Resize", (2, 3, 4), {"mode": "linear", "axes": [2, 3]},
                            {"sizes": np.array([5, 7], np.int64)}, ["", "", "sizes"], 18),
    "Resize_cubic_scales": ("Resize", (2, 3, 4), {"mode": "cubic"},
                            {"scales": np.array([1, 1, 1.5, 0.5], np.float32)}, ["", "scales"]),
    "Gelu": ("Gelu", (5,), {}, {}, [], 20),
    "Gelu_tanh": ("Gelu", (5,), {"approximate": "tanh"}, {}, [], 20),
    "HardSwish": ("HardSwish", (5,), {}, {}, []),
    "HardSigmoid": ("HardSigmoid", (5,), {"alpha": 0.3, "beta": 0.4}, {}, []),
    "LeakyRelu": ("LeakyRelu", (5,), {"alpha": 0.2}, {}, []),
    "Elu": ("Elu", (5,), {"alpha": 0.7}, {}, []),
    "Selu": ("Selu", (5,), {}, {}, []),
    "Softplus": ("Softplus", (5,), {}, {}, []),
    "Softsign": ("Softsign", (5,), {}, {}, []),
    "Sigmoid": ("Sigmoid", (5,), {}, {}, []),
    "Tanh": ("Tanh", (5,), {}, {}, []),
    "LogSoftmax": ("LogSoftmax", (3, 5), {"axis": -1}, {}, []),
    "Softmax_axis1": ("Softmax", (3, 5), {"axis": 1}, {}, []),
    "Clip": ("Clip", (5,), {}, {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, ["lo", "hi"]),
    "Exp": ("Exp", (5,), {}, {}, []),
    "Log_of_abs": ("Log", (5,), {}, {}, []),
    "Squeeze": ("Squeeze", (1, 4, 1), {}, {"axes": np.array([1, 3], np.int64)}, ["axes"]),
    "Unsqueeze": ("Unsqueeze", (4,), {}, {"axes": np.array([1, -1], np.int64)}, ["axes"]),
    "Transpose": ("Transpose", (2, 3, 4), {"perm": [0, 3, 1, 2]}, {}, []),
    "Slice_negative_step": ("Slice", (6, 4), {}, {"s": np.array([-1, 1], np.int64), "e": np.array([0, 4], np.int64),
                                                 "a": np.array([1, 2], np.int64), "st": np.array([-2, 2], np.int64)},
                            ["s", "e", "a", "st"]),
    "Gather_axis2": ("Gather", (3, 5), {"axis": 2}, {"i": np.array([4, 0, -1], np.int64)}, ["i"]),
    "Expand": ("Expand", (1, 4), {}, {"shape": np.array([3, 1], np.int64)}, ["shape"]),
    "Tile": ("Tile", (2, 3), {}, {"r": np.array([1, 2, 3], np.int64)}, ["r"]),
    "Pad_reflect": ("Pad", (2, 5, 5), {"mode": "reflect"}, {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)},
                    ["p"]),
    "ReduceMax_attr_axes": ("ReduceMax", (3, 4), {"axes": [1], "keepdims": 0}, {}, [], 13),
    "ReduceL2_input_axes": ("ReduceL2", (3, 4), {"keepdims": 1}, {"a": np.array([-1], np.int64)}, ["a"], 18),
    "ArgMin": ("ArgMin", (3, 4), {"axis": -1, "keepdims": 1}, {}, []),
    "CumSum": ("CumSum", (4,), {"reverse": 1}, {"a": np.array(1, np.int64)}, ["a"]),
    "MatMul_constant": ("MatMul", (2, 3), {}, {"w": _rng_weights(3, 4, seed=8)}, ["w"]),
    "Gemm_transB_alpha_beta": ("Gemm", (3,), {"transB": 1, "alpha": 0.5, "beta": 2.0},
                               {"w": _rng_weights(4, 3, seed=9), "c": _rng_weights(4, seed=10)}, ["w", "c"]),
    "Dropout": ("Dropout", (4,), {}, {}, []),
    "Identity": ("Identity", (4,), {}, {}, []),
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_op_matches_onnxruntime(row, tmp_path):
    op, shape, attrs, inits, extra, *opset = ROWS[row]
    opset = opset[0] if opset else 17
    node = helper.make_node(op, ["x", *extra], ["y"], **attrs)
    graph = helper.make_graph([node], row, [_value("x", ["N", *shape])], [helper.make_empty_tensor_value_info("y")],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)  # declares y's dtype and shape
    x = np.random.default_rng(len(row)).standard_normal((3, *shape)).astype(np.float32)
    if op == "Log":
        x = np.abs(x) + 0.1
    _assert_same(_ours(model, {"x": x}, tmp_path), _onnxruntime(model, {"x": x}))


def test_matmul_then_bias_add_becomes_one_dense(tmp_path):
    """A linear layer as exporters write it (MatMul by a constant, then Add of a vector) is one Dense."""
    inits = {"w": _rng_weights(4, 3, seed=20), "b": _rng_weights(3, seed=21)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["b", "xw"], ["y"])]
    model = _model(nodes, [_value("x", ["N", 5, 4])], [_value("y", ["N", 5, 3])], inits)
    graph, _ = import_onnx_model(model)
    assert [n.op for n in graph.nodes] == ["Dense"]
    assert graph.nodes[0].attrs["use_bias"] is True
    x = np.random.default_rng(5).standard_normal((2, 5, 4)).astype(np.float32)
    _assert_same(_ours(model, {"x": x}, tmp_path), _onnxruntime(model, {"x": x}))


def test_a_product_read_twice_keeps_its_own_add():
    """The bias is not folded into the Dense when another node also reads the product."""
    inits = {"w": _rng_weights(4, 3, seed=20), "b": _rng_weights(3, seed=21)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"]),
             helper.make_node("Relu", ["xw"], ["r"])]
    model = _model(nodes, [_value("x", ["N", 4])], [_value("y", ["N", 3]), _value("r", ["N", 3])], inits)
    graph, _ = import_onnx_model(model)
    dense = next(n for n in graph.nodes if n.op == "Dense")
    assert dense.attrs["use_bias"] is False
    assert "Rescaling" in [n.op for n in graph.nodes]
