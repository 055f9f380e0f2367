"""Keras layers that TFLite runs as several builtins (converters.lite.decompositions), and the
activations lowered one by one: each tiny Keras model is converted by our converter and
LiteRT (reference and builtin kernels) is the judge.

- int8: runtime.lite equals LiteRT bit for bit and the result stays within quantization
  error of Keras' predict;
- float32: LiteRT and runtime.lite agree with Keras' predict to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from converters import lite
from tests.converters.lite_helpers import litert

keras = pytest.importorskip("keras")
pytest.importorskip("ai_edge_litert")
pytestmark = [pytest.mark.lite, pytest.mark.keras]

L = keras.layers


def _model(shape, build, seed):
    inp = keras.Input(shape, name="x")
    model = keras.Model(inp, build(inp))
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = (rng.standard_normal(w.shape) * 0.4).astype("f4")
        w.assign(np.abs(value) + 0.5 if "variance" in w.path else value)
    return model


# name -> (input shape without batch, layer builder, builtins the lowering must use)
LAYERS = {
    "conv1d_same": ((12, 3), lambda x: L.Conv1D(5, 3, padding="same", activation="relu")(x), {"CONV_2D"}),
    "conv1d_causal_dilated": ((12, 3), lambda x: L.Conv1D(4, 3, padding="causal", dilation_rate=2)(x),
                              {"PAD", "CONV_2D"}),
    "conv1d_strided_tanh": ((13, 2), lambda x: L.Conv1D(4, 3, strides=2, activation="tanh")(x), {"TANH"}),
    "conv2d_grouped": ((6, 6, 4), lambda x: L.Conv2D(6, 3, groups=2, padding="same", activation="relu")(x),
                       {"CONV_2D"}),
    "conv1d_grouped": ((10, 6), lambda x: L.Conv1D(4, 3, groups=2)(x), {"CONV_2D"}),
    "max_pool1d": ((12, 3), lambda x: L.MaxPooling1D(2)(x), {"MAX_POOL_2D"}),
    "average_pool1d_same": ((11, 3), lambda x: L.AveragePooling1D(3, strides=2, padding="same")(x),
                            {"AVERAGE_POOL_2D"}),
    "global_max_pool1d": ((9, 4), lambda x: L.GlobalMaxPooling1D()(x), {"REDUCE_MAX"}),
    "global_average_pool1d": ((9, 4), lambda x: L.GlobalAveragePooling1D()(x), {"MEAN"}),
    "upsampling1d": ((6, 3), lambda x: L.UpSampling1D(3)(x), {"TILE"}),
    "repeat_vector": ((5,), lambda x: L.RepeatVector(4)(L.Dense(6)(x)), {"TILE"}),
    "prelu": ((5, 5, 3), lambda x: L.PReLU()(x), {"PRELU"}),
    "prelu_shared_axes": ((5, 5, 3), lambda x: L.PReLU(shared_axes=[1, 2])(x), {"PRELU"}),
    "layer_norm": ((5, 8), lambda x: L.LayerNormalization()(x), {"SQUARED_DIFFERENCE", "RSQRT"}),
    "layer_norm_two_axes": ((4, 3, 6), lambda x: L.LayerNormalization(axis=[2, 3])(x), {"RSQRT"}),
    "rms_norm": ((5, 8), lambda x: L.LayerNormalization(rms_scaling=True)(x), {"RSQRT"}),
    "dot_last_axes": ((5, 8), lambda x: L.Dot(axes=(2, 2))([x, L.Dense(8)(x)]), {"BATCH_MATMUL"}),
    "dot_first_axes": ((5, 8), lambda x: L.Dot(axes=(1, 1))([x, L.Dense(6)(x)]), {"BATCH_MATMUL"}),
    "dot_vectors": ((8,), lambda x: L.Dot(axes=1)([x, L.Dense(8)(x)]), {"BATCH_MATMUL"}),
    "softmax_axis1": ((5, 8), lambda x: L.Softmax(axis=1)(x), {"TRANSPOSE", "SOFTMAX"}),
    "elu_alpha": ((16,), lambda x: L.ELU(alpha=0.5)(x), {"ELU", "SELECT_V2"}),
    "batch_norm_axis1": ((5, 4, 3), lambda x: L.BatchNormalization(axis=1)(x), {"MUL", "ADD"}),
    "gelu": ((16,), lambda x: L.Activation("gelu")(x), {"GELU"}),
    "exponential": ((16,), lambda x: L.Activation("exponential")(x), {"EXP"}),
    "log_softmax": ((16,), lambda x: L.Activation("log_softmax")(x), {"LOG_SOFTMAX"}),
    "hard_sigmoid": ((16,), lambda x: L.Activation("hard_sigmoid")(x), {"ADD", "MUL"}),
    "softplus": ((16,), lambda x: L.Activation("softplus")(x), {"EXP", "LOG"}),
    "mish": ((16,), lambda x: L.Activation("mish")(x), {"EXP", "LOG", "TANH"}),
    "selu": ((16,), lambda x: L.Activation("selu")(x), {"ELU", "SELECT_V2"}),
    "softsign": ((16,), lambda x: L.Activation("softsign")(x), {"ABS", "DIV"}),
    "silu": ((16,), lambda x: L.Activation("silu")(x), {"LOGISTIC", "MUL"}),
}


# Builtins that stay float32 between DEQUANTIZE and QUANTIZE: TF keeps ELU float (and so GREATER and
# SELECT_V2 next to it, which have int8 kernels in LiteRT that runtime.lite does not reproduce yet).
FLOAT_KEPT = {"ELU", "GREATER", "SELECT_V2"}


# TF's chains for mish and softplus quantize EXP's output over its whole range, which the positive
# inputs set (e**3 = 20): small values of exp(x) are resolved coarsely. TF's int8 files have the same error.
COARSE = {"mish": (14, 1.5), "softplus": (14, 3.0)}


def _calibration(shape, seed):
    return np.random.default_rng(seed).standard_normal((48, *shape)).astype("f4")


@pytest.fixture(scope="module")
def converted():
    from savedmodel.export import to_graph

    out = {}
    for i, (name, (shape, build, _)) in enumerate(LAYERS.items()):
        model = _model(shape, build, i)
        graph, _ = to_graph(model)
        out[name] = (model, graph, lite.convert(graph, representative_data=_calibration(shape, i), progress=False))
    return out


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_lowering_uses_tf_builtins(converted, name):
    report = converted[name][2]
    assert LAYERS[name][2] <= set(report.op_counts)
    float_ops = {f.split(" ")[0] for f in report.float_ops}
    assert float_ops <= FLOAT_KEPT, report.float_ops


def _for_reference_kernels(blob: bytes) -> bytes:
    """The file with TILE at version 2: LiteRT's reference resolver registers TILE up to version 2 only,
    while TF (and we) write version 3 for int8 TILE; the int8 kernel is the same."""
    from converters.lite.writer import serialize

    model = lite.parse(blob)
    for op in model.operators:
        if op.op == "TILE":
            op.version = 2
    return serialize(model)


# LiteRT's reference resolver has no ELU kernel: layers lowered with ELU are checked on its builtin kernels only.
BIT_EXACT = [(name, kernels) for name in sorted(LAYERS) for kernels in ("reference", "builtin")
             if not (kernels == "reference" and "ELU" in LAYERS[name][2])]


@pytest.mark.parametrize(("name", "kernels"), BIT_EXACT)
def test_int8_layer_is_bit_exact_with_litert(converted, name, kernels):
    import runtime.lite

    model, _, report = converted[name]
    blob = _for_reference_kernels(report.content) if kernels == "reference" else report.content
    x = _calibration(LAYERS[name][0], 100)[:16]
    ours = runtime.lite.from_bytes(blob, kernels=kernels).predict(x)
    theirs = litert(blob, [x], kernels)[0]
    assert ours.shape == theirs.shape == (16, *model.output_shape[1:])
    model_file = lite.parse(blob)
    last = next(o for o in model_file.operators if model_file.outputs[0] in o.outputs)
    if last.op == "DEQUANTIZE":
        np.testing.assert_array_equal(ours, theirs)
    else:  # an op kept float writes the output: float kernels (numpy's, LiteRT's) round differently
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_int8_layer_is_within_quantization_error_of_keras(converted, name):
    """On the calibration samples (no value outside a calibrated range): Keras' predict within
    a few output quantization steps, on average well under one."""
    import runtime.lite

    model, _, report = converted[name]
    x = _calibration(LAYERS[name][0], list(LAYERS).index(name))[:32]
    want = model.predict(x, verbose=0)
    got = runtime.lite.from_bytes(report.content).predict(x)
    step = float(want.max() - want.min()) / 255  # about the output scale
    max_steps, mean_steps = COARSE.get(name, (6, 1.5))
    assert np.abs(got - want).max() < max_steps * step, name
    assert np.abs(got - want).mean() < mean_steps * step, name


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_float32_layer_matches_keras_in_litert_and_runtime(name):
    import runtime.lite
    from savedmodel.export import to_graph

    shape, build, _ = LAYERS[name]
    model = _model(shape, build, 7)
    graph, _ = to_graph(model)
    blob = lite.convert(graph, mode="float32", progress=False).content
    x = _calibration(shape, 5)[:8]
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(litert(blob, [x], "builtin")[0], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(runtime.lite.from_bytes(blob).predict(x), want, rtol=1e-4, atol=1e-5)


def test_ops_kept_float_are_named_in_the_report_and_the_file_runs(converted):
    """ELU with alpha stays float32 between DEQUANTIZE and QUANTIZE, as TF keeps ELU float; the MUL
    between float ops is int8 again (QUANTIZE in, DEQUANTIZE out); LayerNormalization is all int8."""
    import runtime.lite

    _, _, report = converted["elu_alpha"]
    assert [f.split(" ")[0] for f in report.float_ops] == ["ELU", "GREATER", "SELECT_V2"]
    assert "kept float32 (no int8 kernel): ELU (elu), GREATER (elu), SELECT_V2 (elu)" in str(report)
    model = lite.parse(report.content)
    dtypes = {op.op: model.tensors[op.outputs[0]].dtype for op in model.operators}
    assert dtypes["ELU"] == dtypes["SELECT_V2"] == "float32" and dtypes["MUL"] == "int8"
    x = _calibration(LAYERS["elu_alpha"][0], 3)[:8]
    theirs = litert(report.content, [x], "builtin")[0]
    np.testing.assert_allclose(runtime.lite.from_bytes(report.content, kernels="builtin").predict(x), theirs,
                               rtol=1e-6, atol=1e-6)  # a few ulp: LiteRT's optimized DEQUANTIZE
    _, _, norm = converted["layer_norm"]
    assert norm.float_ops == []
