"""converters.lite.convert on whole models: LiteRT (reference and builtin kernels) is the judge.

Every converted model must give, in LiteRT, exactly what runtime.lite gives
(bit for bit), and stay within quantization error of the float model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters import lite
from converters.errors import CalibrationDataError, ConversionError
from savedmodel import GraphBuilder
from tests.converters.lite_helpers import GRAPHS, litert, sample_inputs

pytest.importorskip("ai_edge_litert")
pytestmark = pytest.mark.lite

RNG = np.random.default_rng(7)


def _w(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype("f4")


def op_zoo():
    """Most mapped ops in one graph: separable and transposed convolutions, resizes, padding, cropping,
    elementwise merges, activations, reshapes, rescaling, a standalone BatchNormalization."""
    b = GraphBuilder()
    x = b.input("image", (None, 10, 10, 3))
    h = b.op("Rescaling", x, scale=0.5, offset=0.1, name="rescale")
    h = b.op("ZeroPadding2D", h, padding=[[1, 0], [0, 1]], name="pad")
    h = b.op("SeparableConv2D", h, filters=6, kernel_size=[3, 3], padding="same", depth_multiplier=2,
             depthwise_kernel=_w(3, 3, 3, 2), pointwise_kernel=_w(1, 1, 6, 6), bias=_w(6, scale=0.1), name="sep")
    h = b.op("LeakyReLU", h, negative_slope=0.1, name="leaky")
    h = b.op("Activation", h, activation="hard_silu", name="hard_swish")
    s = b.op("Activation", h, activation="sigmoid", name="sigmoid")
    t = b.op("Activation", h, activation="tanh", name="tanh")
    h = b.op("Multiply", s, t, name="mul")
    h = b.op("Subtract", h, t, name="sub")
    h2 = b.op("Maximum", h, t, name="maximum")
    h = b.op("Average", h, h2, name="average")
    h = b.op("BatchNormalization", h, gamma=RNG.uniform(0.5, 1.5, 6).astype("f4"), beta=_w(6),
             moving_mean=_w(6), moving_variance=RNG.uniform(0.5, 2, 6).astype("f4"), name="bn")
    h = b.op("Conv2DTranspose", h, filters=4, kernel_size=[3, 3], strides=[2, 2], padding="same",
             kernel=_w(3, 3, 4, 6), bias=_w(4, scale=0.1), name="tconv")
    h = b.op("UpSampling2D", h, size=[2, 2], interpolation="bilinear", name="up_bilinear")
    h = b.op("Cropping2D", h, cropping=[[2, 2], [1, 3]], name="crop")
    h = b.op("MaxPooling2D", h, pool_size=[2, 2], strides=[2, 2], name="pool")
    h = b.op("UpSampling2D", h, size=[2, 1], interpolation="nearest", name="up_nearest")
    g = b.op("GlobalMaxPooling2D", h, name="gmp")
    h = b.op("Permute", h, dims=[2, 1, 3], name="permute")
    h = b.op("Reshape", h, target_shape=[-1, 4], name="reshape")
    h = b.op("GlobalAveragePooling1D", h, name="gap1d")
    h = b.op("Concatenate", h, g, axis=-1, name="concat")
    y = b.op("Dense", h, units=5, activation="softmax", kernel=_w(8, 5), bias=_w(5, scale=0.1), name="probs")
    return b.build(y)


ALL_GRAPHS = {**GRAPHS, "op_zoo": op_zoo}


@pytest.fixture(scope="module")
def converted():
    out = {}
    for name, fn in ALL_GRAPHS.items():
        g = fn()
        calib = sample_inputs(g, 64, seed=1)
        out[name] = (g, lite.convert(g, representative_data=calib, progress=False),
                     lite.convert(g, representative_data=calib, progress=False, int8_io=True))
    return out


@pytest.mark.parametrize("name", sorted(ALL_GRAPHS))
@pytest.mark.parametrize("kernels", ["reference", "builtin"])
def test_int8_model_is_bit_exact_with_litert(converted, name, kernels):
    import runtime.lite

    g, report, _ = converted[name]
    x = sample_inputs(g, 48, seed=2)
    ours = runtime.lite.from_bytes(report.content, kernels=kernels).predict(x)
    theirs = litert(report.content, [x], kernels)[0]
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", sorted(ALL_GRAPHS))
def test_int8_io_model_is_bit_exact_with_litert(converted, name):
    import runtime.lite

    g, _, report = converted[name]
    m = runtime.lite.from_bytes(report.content)
    assert m.inputs[0].dtype == "int8" and m.outputs[0].dtype == "int8"
    assert "QUANTIZE" not in m.lite.op_counts() or name == "op_zoo"  # op_zoo requantizes inside
    q = m.lite.tensors[m.lite.inputs[0]].quant
    x = sample_inputs(g, 16, seed=3)
    xq = np.clip(np.round(x / q.scale[0]) + q.zero_point[0], -128, 127).astype(np.int8)
    np.testing.assert_array_equal(m.predict(xq), litert(report.content, [xq])[0])


@pytest.mark.parametrize("name", sorted(ALL_GRAPHS))
def test_int8_model_is_within_quantization_error_of_the_float_model(converted, name):
    import runtime

    g, report, _ = converted[name]
    x = sample_inputs(g, 64, seed=4)
    want = runtime.from_graph(g).predict(x)
    got = lite.convert(g, representative_data=sample_inputs(g, 64, seed=1), validation_data=x,
                       progress=False).outputs[0]
    span = max(float(want.max() - want.min()), 0.5)  # softmax outputs: on the probability scale
    # op_zoo pays for TF's shared-scale rules: MAXIMUM imposes its output range on SUB's output, and
    # CONCATENATION its range on TRANSPOSE_CONV's output through a chain of resizes and pooling.
    assert got.mean_abs_error < (0.04 if name == "op_zoo" else 0.03) * span
    assert got.max_abs_error < 0.5 * span  # random weights: a few samples sit on a decision boundary
    if got.top1_agreement is not None:
        assert got.top1_agreement >= 0.85


def test_report_says_what_happened(converted):
    g, report, _ = converted["cnn"]
    text = str(report)
    assert "int8 model" in text and "per-layer error" in text and "top-1 agreement" in text
    assert report.calibration_samples == 64 and report.evaluated_on == "calibration data"
    assert report.tflite_bytes == len(report.content) and report.float32_weight_bytes == 4 * 1256
    worst = report.worst_layers(3)
    assert len(worst) == 3 and worst[0].relative >= worst[-1].relative
    assert {e.tensor for e in report.layers} >= {"relu", "dw", "probs"}  # conv + bn + relu became one op
    json.dumps(report.to_dict())


def test_ops_without_int8_kernel_stay_float_and_are_reported():
    """ELU stays float32 between DEQUANTIZE and QUANTIZE (TF's converter keeps it float too)."""
    b = GraphBuilder()
    x = b.input("x", (None, 6))
    h = b.op("Dense", x, units=8, kernel=_w(6, 8), bias=_w(8), name="fc")
    h = b.op("Activation", h, activation="elu", name="elu")
    y = b.op("Dense", h, units=3, kernel=_w(8, 3), bias=_w(3), name="out")
    g = b.build(y)
    data = RNG.standard_normal((50, 6)).astype("f4")
    report = lite.convert(g, representative_data=data, progress=False)
    assert report.float_ops == ["ELU (elu)"]
    model = lite.parse(report.content)
    ops = model.op_counts()
    assert ops["ELU"] == 1 and ops["DEQUANTIZE"] == 2 and ops["QUANTIZE"] == 2
    elu = next(o for o in model.operators if o.op == "ELU")
    assert model.tensors[elu.inputs[0]].dtype == model.tensors[elu.outputs[0]].dtype == "float32"
    import runtime.lite

    ours = runtime.lite.from_bytes(report.content, kernels="builtin").predict(data)
    # LiteRT has no reference ELU; its optimized DEQUANTIZE computes q * scale - zp * scale, a few ulp
    # away from (q - zp) * scale: every int8 step must still agree.
    theirs = litert(report.content, [data], "builtin")[0]
    step = float(model.tensors[model.operators[-1].inputs[0]].quant.scale[0])
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
    assert np.abs(ours - theirs).max() < step / 100
    assert "kept float32 (no int8 kernel): ELU (elu)" in str(report)


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic"])
def test_float_modes_run_in_litert_close_to_the_float_model(mode):
    import runtime
    import runtime.lite

    g = GRAPHS["mlp"]()
    x = sample_inputs(g, 32)
    report = lite.convert(g, mode=mode, validation_data=x, progress=False)
    want = runtime.from_graph(g).predict(x)
    tol = {"float32": 1e-5, "float16": 2e-3, "dynamic": 3e-2}[mode]
    np.testing.assert_allclose(litert(report.content, [x], "builtin")[0], want, atol=tol)
    np.testing.assert_allclose(runtime.lite.from_bytes(report.content).predict(x), want, atol=tol)
    tensors = lite.parse(report.content).tensors
    if mode == "float16":
        assert any(t.dtype == "float16" for t in tensors) and "DEQUANTIZE" in report.op_counts
    if mode == "dynamic":  # only weights of >= 1024 elements are int8 (fc1: 36 x 32)
        assert [t.name for t in tensors if t.dtype == "int8"] == ["fc1/kernel"]
    assert report.outputs[0].max_abs_error < tol


def test_sizes_shrink_with_the_mode():
    g = GRAPHS["mlp"]()
    sizes = {m: lite.convert(g, mode=m, representative_data=sample_inputs(g, 8), progress=False).tflite_bytes
             for m in ("float32", "float16", "int8")}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]


# -- representative data ------------------------------------------------------------------------


def test_every_form_of_representative_data_gives_the_same_file(tmp_path):
    g = GRAPHS["cnn"]()
    x = sample_inputs(g, 40)
    np.save(tmp_path / "calib.npy", x)
    np.savez(tmp_path / "calib.npz", image=x)
    # (batches as the default batch_size=32 cuts them: float GEMMs may round differently for other sizes)
    forms = [x, {"image": x}, str(tmp_path / "calib.npy"), tmp_path / "calib.npz",
             (x[i:i + 32] for i in range(0, 40, 32)), [{"image": x[:32]}, {"image": x[32:]}]]
    blobs = {lite.convert(g, representative_data=f, progress=False).content for f in forms}
    assert len(blobs) == 1


@pytest.mark.parametrize("data, match", [
    (np.zeros((4, 12, 12, 1), "f4"), r"input 'image': expected float32 with shape \(None, 12, 12, 3\), "
                                     r"received float32 with shape \(4, 12, 12, 1\)"),
    (np.array([["a"]]), r"input 'image': expected .* received <U1 with shape \(1, 1\)"),
    ({"pixels": np.zeros((4, 12, 12, 3), "f4")}, r"expected inputs \['image'\], received \['pixels'\]"),
    (np.zeros((0, 12, 12, 3), "f4"), "representative data holds no samples"),
    ([], "representative data holds no batches"),
    ([np.zeros((2, 12, 12, 3), "f4"), np.zeros((2, 5), "f4")], r"representative batch 1: input 'image': expected"),
    (42, "representative data of type int is not supported"),
    ("missing.npy", "calibration file 'missing.npy' does not exist"),
])
def test_bad_representative_data_names_the_input(data, match):
    with pytest.raises(CalibrationDataError, match=match) as info:
        lite.convert(GRAPHS["cnn"](), representative_data=data, progress=False)
    if "input 'image'" in match:
        assert info.value.input == "image" and info.value.expected and info.value.received


def test_int8_needs_representative_data():
    with pytest.raises(CalibrationDataError, match="int8 conversion needs representative_data"):
        lite.convert(GRAPHS["mlp"]())


def test_npz_with_wrong_keys(tmp_path):
    np.savez(tmp_path / "c.npz", a=np.zeros((2, 6, 6, 1), "f4"), b=np.zeros((2, 6, 6, 1), "f4"))
    with pytest.raises(CalibrationDataError, match=r"has arrays \['a', 'b'\]; expected one per input \['image'\]"):
        lite.convert(GRAPHS["mlp"](), representative_data=tmp_path / "c.npz")


def test_percentile_calibration_clips_outliers():
    g = GRAPHS["mlp"]()
    x = sample_inputs(g, 200)
    x[0, 0, 0, 0] = 60.0  # one outlier
    q_minmax = lite.parse(lite.convert(g, representative_data=x, progress=False).content)
    q_pct = lite.parse(lite.convert(g, representative_data=x, calibration="percentile", percentile=99.9,
                                    progress=False).content)

    def input_scale(m):
        return float(next(t for t in m.tensors if t.name == "image/quantized").quant.scale[0])

    assert input_scale(q_pct) < input_scale(q_minmax) / 4


def test_tf_compatible_calibration_widens_inputs_overwritten_in_place():
    b = GraphBuilder()
    x = b.input("x", (None, 8))
    a = b.op("Dense", x, units=8, kernel=_w(8, 8), bias=_w(8), name="a")
    c = b.op("Dense", a, units=8, kernel=_w(8, 8, scale=0.05), name="c")
    s = b.op("Add", a, c, name="sum")  # a is read twice, c only here: TFLite adds in place over c
    y = b.op("Dense", s, units=2, kernel=_w(8, 2), name="y")
    g = b.build(y)
    data = RNG.standard_normal((64, 8)).astype("f4")
    compat = lite.parse(lite.convert(g, representative_data=data, progress=False).content)
    exact = lite.parse(lite.convert(g, representative_data=data, progress=False, tf_compatible=False).content)

    def scale(m, name):
        return float(next(t for t in m.tensors if t.name == name).quant.scale[0])

    # TFLite's calibrator logs c after ADD overwrote it with the sum: c gets the sum's (wider) range.
    assert scale(compat, "c") == scale(compat, "sum") > scale(exact, "c")
    assert scale(compat, "a") == scale(exact, "a") and scale(compat, "sum") == scale(exact, "sum")


# -- what cannot be converted -------------------------------------------------------------------


def _graph(op, *, shape=(None, 4, 4, 2), **kwargs):
    b = GraphBuilder()
    x = b.input("x", shape)
    y = b.op(op, x, name="the_node", **kwargs)
    return b.build(y)


def _dot_graph(shape_a, shape_b, **kwargs):
    b = GraphBuilder()
    x, y = b.input("x", shape_a), b.input("y", shape_b)
    return b.build(b.op("Dot", x, y, name="the_node", axes=[1, 1], **kwargs))


@pytest.mark.parametrize("graph, match", [
    (lambda: _graph("Transpose", perm=[0, 2, 1, 3]),
     r"cannot convert node 'the_node' \(op Transpose\): op Transpose has no TFLite mapping; the converter maps: "),
    (lambda: _graph("LayerNormalization", axis=[0, -1], center=False, scale=False),
     r"\(op LayerNormalization\): LayerNormalization over the batch axis has no TFLite mapping"),
    (lambda: _graph("Conv1D", shape=(None, None, 2), filters=2, kernel_size=[1], kernel=np.ones((1, 2, 2), "f4")),
     r"\(op Conv1D\): cannot reshape to \[None, 1, None, 2\]: only the batch dim may be unknown"),
    (lambda: _graph("BatchNormalization", shape=(4, 3), axis=0, gamma=np.ones(4, "f4"), beta=np.zeros(4, "f4"),
                    moving_mean=np.zeros(4, "f4"), moving_variance=np.ones(4, "f4")),
     r"\(op BatchNormalization\): BatchNormalization over the batch axis has no TFLite mapping"),
    (lambda: _graph("Softmax", axis=[1, 2]),
     r"\(op Softmax\): softmax over axis \[1, 2\] has no TFLite equivalent \(expected one non-batch axis\)"),
    (lambda: _graph("ReLU", threshold=0.5), r"\(op ReLU\): ReLU with max_value=None, threshold=0.5"),
    (lambda: _dot_graph((None, 4), (None, 4, 1)), r"\(op Dot\): Dot of inputs of rank 2 and 3: expected two rank-2"),
    (lambda: _dot_graph((None, 4), (None, 4), normalize=True), r"\(op Dot\): Dot with normalize=True has no TFLite"),
])
def test_unconvertible_ops_are_named_with_the_reason(graph, match):
    with pytest.raises(ConversionError, match=match) as info:
        lite.convert(graph(), mode="float32")
    assert info.value.node == "the_node"


def test_integer_graphs_are_refused_by_tensor_name():
    """Graphs with integer tensors (token ids of the sequence ops, ...) are not converted."""
    b = GraphBuilder()
    x = b.input("ids", (None, 4), dtype="int32")
    g = b.build(b.op("Reshape", x, target_shape=[2, 2], name="the_node"))
    with pytest.raises(ConversionError, match=r"tensor 'ids' has dtype int32; only float32 graphs are supported"):
        lite.convert(g, mode="float32")


def test_an_activation_without_mapping_is_named():
    """Every activation of the catalogue has a lowering; one added later without a mapping is refused by name."""
    from converters.lite.lowering import Lowering, emit_activation, prepare_graph

    g, specs, fused = prepare_graph(_graph("Activation", activation="relu"))
    low = Lowering(g, specs, fused)
    low.node = g.nodes[0]
    x, y = low.tensor(g.nodes[0].inputs[0]), low.tensor(g.nodes[0].outputs[0])
    with pytest.raises(ConversionError, match=r"\(op Activation\): activation 'swirl' has no TFLite equivalent in "
                                              r"this converter; supported: elu, exponential, gelu"):
        emit_activation(low, "swirl", x, y)


def test_bad_arguments():
    g = GRAPHS["mlp"]()
    with pytest.raises(ValueError, match="unknown mode 'int4'; expected one of int8, float16, dynamic, float32"):
        lite.convert(g, mode="int4")
    with pytest.raises(ConversionError, match="int8_io needs mode='int8', not 'float16'"):
        lite.convert(g, mode="float16", int8_io=True)
    with pytest.raises(ValueError, match="unknown calibration method 'mse'"):
        lite.convert(g, representative_data=sample_inputs(g, 4), calibration="mse")


# -- sources and files -----------------------------------------------------------------------------


def test_convert_a_bundle_path_and_load_the_file_with_runtime(tmp_path):
    import runtime
    import savedmodel

    g = GRAPHS["residual"]()
    base = tmp_path / "models" / "residual"
    savedmodel.save(g, base)
    x = sample_inputs(g, 20)
    out = tmp_path / "residual.tflite"
    report = lite.convert(base, out, representative_data=x, progress=False)
    assert report.path == str(out) and out.stat().st_size == report.tflite_bytes
    assert report.source_bytes and report.source_bytes > 0
    m = runtime.load(out)
    assert [s.name for s in m.inputs] == ["image"] and list(m.signatures) == ["serving_default"]
    np.testing.assert_array_equal(m.predict(x), litert(out.read_bytes(), [x])[0])


def test_cli_convert(tmp_path, capsys):
    import argparse

    import savedmodel
    from converters import cli

    g = GRAPHS["mlp"]()
    base = tmp_path / "mlp"
    savedmodel.save(g, base)
    np.savez(tmp_path / "calib.npz", image=sample_inputs(g, 16))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "mlp.tflite"
    args = parser.parse_args([str(base), "--to", "lite", "--out", str(out), "--calibration",
                              str(tmp_path / "calib.npz"), "--int8-io", "--quiet"])
    assert cli.run(args) == 0
    printed = capsys.readouterr().out
    assert "int8 model" in printed and out.exists()
    args = parser.parse_args([str(base), "--out", str(tmp_path / "f16.tflite"), "--mode", "float16", "--json",
                              "--quiet"])
    assert cli.run(args) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "float16"
    args = parser.parse_args([str(base), "--out", str(tmp_path / "x.tflite")])
    with pytest.raises(CalibrationDataError, match="int8 conversion needs representative_data"):
        cli.run(args)
