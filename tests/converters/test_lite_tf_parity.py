"""Parity with TensorFlow 2.x's own converter (tf.lite.TFLiteConverter) on the same calibration samples.

- Given TF's calibrated activation ranges, our quantizer writes exactly TF's
  weights, biases and quantization parameters.
- Calibrating ourselves, the int8 weights and every zero point are identical;
  scales can differ in the last bit because our float kernels round
  differently from TFLite's when they compute an activation's extreme value.
- TF's files load and run in runtime.lite bit for bit like LiteRT's reference kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

from converters import lite
from converters.lite.calibration import collect_ranges
from converters.lite.lowering import lower
from converters.lite.quantize import quantize_int8
from tests.converters.lite_helpers import litert

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
pytest.importorskip("ai_edge_litert")
pytestmark = [pytest.mark.lite, pytest.mark.keras, pytest.mark.slow]

L = keras.layers
SKIP = {"QUANTIZE", "DEQUANTIZE", "SHAPE", "STRIDED_SLICE", "PACK"}
# extras: a grouped Conv2D, PReLU with shared axes, GELU and EXP (int8 lookup tables), LOG_SOFTMAX.
# chains: softsign, softplus and mish as TF's chains of builtins (ABS, DIV, EXP, LOG, ...).
NAMES = ["mlp", "cnn", "residual", "inverted_residual", "extras", "chains"]


def _init(model, seed):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.standard_normal(w.shape).astype("f4") * 0.4
        if "variance" in w.path:
            value = np.abs(value) + 0.5
        w.assign(value)
    return model


def keras_models():
    inp = keras.Input((6, 6, 1), name="image")
    x = L.Flatten()(inp)
    x = L.Dense(24, activation="relu")(x)
    x = L.Dense(12, activation="relu")(x)
    mlp = keras.Model(inp, L.Dense(5, activation="softmax")(x))

    inp = keras.Input((10, 10, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(12, 3, strides=2, activation="relu")(x)
    x = L.AveragePooling2D(2, strides=1, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    cnn = keras.Model(inp, L.Dense(4, activation="softmax")(x))

    inp = keras.Input((8, 8, 4), name="image")
    h = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
    r = L.Conv2D(6, 3, padding="same")(h)
    s = L.ReLU()(L.Add()([h, r]))
    c = L.Concatenate()([s, L.Conv2D(3, 1)(inp)])
    residual = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(c)))

    inp = keras.Input((10, 10, 8), name="image")
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(24, 1, use_bias=False)(inp)))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)))
    x = L.BatchNormalization()(L.Conv2D(8, 1, use_bias=False)(x))
    mobile = keras.Model(inp, L.Add()([inp, x]))

    inp = keras.Input((8, 8, 4), name="image")
    x = L.Conv2D(6, 3, groups=2, padding="same")(inp)
    x = L.PReLU(shared_axes=[1, 2])(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Activation("gelu")(L.Dense(8)(x))
    x = L.Activation("exponential")(L.Dense(6)(x))
    extras = keras.Model(inp, L.Activation("log_softmax")(L.Dense(4)(x)))
    inp = keras.Input((6,), name="features")
    x = L.Activation("softsign")(L.Dense(8)(inp))
    x = L.Activation("softplus")(L.Dense(8)(x))
    chains = keras.Model(inp, L.Activation("mish")(L.Dense(4)(x)))
    models = {"mlp": mlp, "cnn": cnn, "residual": residual, "inverted_residual": mobile, "extras": extras,
              "chains": chains}
    return {name: _init(m, i) for i, (name, m) in enumerate(models.items())}


def tf_convert(model, calib, calibrate_only=False) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if calibrate_only:
        converter._experimental_calibrate_only = True
    return converter.convert()


@pytest.fixture(scope="module")
def pairs():
    from savedmodel.export import to_graph

    out = {}
    for i, (name, model) in enumerate(keras_models().items()):
        calib = np.random.default_rng(100 + i).standard_normal((24, *model.input_shape[1:])).astype("f4")
        graph, _ = to_graph(model)
        out[name] = (graph, calib, tf_convert(model, calib), tf_convert(model, calib, calibrate_only=True))
    return out


def _core(m):
    return [o for o in m.operators if o.op not in SKIP]


def _tf_ranges(calibrated: bytes) -> list[tuple[float, float] | None]:
    """(min, max) TF's calibrator stored on each tensor of a calibrate-only model."""
    from converters.lite.schema import T

    raw = T.Model.GetRootAs(calibrated, 0).Subgraphs(0)
    ranges = []
    for i in range(raw.TensorsLength()):
        q = raw.Tensors(i).Quantization()
        ranges.append((float(q.Min(0)), float(q.Max(0))) if q is not None and q.MinLength() else None)
    return ranges


def _compare(ours, theirs, *, exact: bool):
    a, b = _core(ours), _core(theirs)
    assert [o.op for o in a] == [o.op for o in b]
    for oa, ob in zip(a, b, strict=True):
        for ta, tb in zip([*oa.inputs, *oa.outputs], [*ob.inputs, *ob.outputs], strict=True):
            if ta < 0 or tb < 0:
                continue
            x, y = ours.tensors[ta], theirs.tensors[tb]
            assert x.dtype == y.dtype, (oa.op, x.name, y.name)
            if x.data is not None and x.dtype == "int8":
                np.testing.assert_array_equal(x.data, y.data, err_msg=f"{oa.op} {x.name}")
            elif x.data is not None and x.dtype == "int32" and x.quant is not None:
                np.testing.assert_allclose(x.data, y.data, atol=0 if exact else 1, err_msg=f"{oa.op} {x.name}")
            if x.quant is not None:
                assert y.quant is not None and x.quant.axis == y.quant.axis
                np.testing.assert_array_equal(x.quant.zero_point, y.quant.zero_point, err_msg=f"{oa.op} {x.name}")
                if exact:
                    np.testing.assert_array_equal(x.quant.scale, y.quant.scale, err_msg=f"{oa.op} {x.name}")
                else:
                    np.testing.assert_allclose(x.quant.scale, y.quant.scale, rtol=1e-6, err_msg=f"{oa.op} {x.name}")


@pytest.mark.parametrize("name", NAMES)
def test_same_float_graph_and_ranges_give_tf_identical_int8_model(pairs, name):
    """Our quantizer, run on TF's float graph with TF's calibrated ranges, writes TF's int8 model:
    identical weights, biases, scales and zero points."""
    from converters.lite.model import compact

    graph, calib, tf_blob, tf_calibrated = pairs[name]
    float_model = lite.parse(tf_calibrated)
    for t in float_model.tensors:
        t.quant = None  # the calibrated model carries min/max only
    tf_ranges = _tf_ranges(tf_calibrated)
    ranges = {i: r for i, r in enumerate(tf_ranges) if r is not None and float_model.tensors[i].data is None}
    quantized = quantize_int8(float_model, ranges).model
    compact(quantized)
    _compare(quantized, lite.parse(tf_blob), exact=True)


@pytest.mark.parametrize("name", NAMES)
def test_our_lowering_with_tf_ranges_matches_tf(pairs, name):
    """The same from our own lowering of the bundle graph (BatchNormalization folded by us)."""
    graph, calib, tf_blob, tf_calibrated = pairs[name]
    float_model = lower(graph).model
    calibrated = lite.parse(tf_calibrated)
    tf_ranges = _tf_ranges(tf_calibrated)
    ranges = {}
    for ours, theirs in zip(_core(float_model), _core(calibrated), strict=True):
        for ta, tb in zip([*ours.inputs, *ours.outputs], [*theirs.inputs, *theirs.outputs], strict=False):
            if ta >= 0 and float_model.tensors[ta].data is None and tf_ranges[tb] is not None:
                ranges[ta] = tf_ranges[tb]
    quantized = quantize_int8(float_model, ranges).model
    from converters.lite.model import compact

    compact(quantized)
    # TF folds BatchNormalization with Eigen's approximate rsqrt: weight scales may differ in the last bit.
    _compare(quantized, lite.parse(tf_blob), exact=name not in ("inverted_residual",))


@pytest.mark.parametrize("name", NAMES)
def test_our_calibration_matches_tf_to_the_last_bit_of_scales(pairs, name):
    graph, calib, tf_blob, _ = pairs[name]
    ours = lite.parse(lite.convert(graph, representative_data=calib, progress=False).content)
    _compare(ours, lite.parse(tf_blob), exact=False)


@pytest.mark.parametrize("name", NAMES)
def test_tf_files_run_bit_exact_in_runtime_lite(pairs, name):
    import runtime.lite

    graph, calib, tf_blob, _ = pairs[name]
    x = np.random.default_rng(5).standard_normal((16, *graph.inputs[0].shape[1:])).astype("f4")
    m = runtime.lite.from_bytes(tf_blob)
    ours = m.predict(x)
    np.testing.assert_array_equal(ours, np.concatenate([litert(tf_blob, [x[i:i + 1]])[0] for i in range(16)]))
    # LiteRT's optimized DEQUANTIZE computes q * scale - zp * scale, a few ulp away from (q - zp) * scale:
    # the int8 values behind it must agree (differences far below one quantization step).
    parsed = lite.parse(tf_blob)
    step = float(parsed.tensors[parsed.operators[-1].inputs[0]].quant.scale[0])
    ours_b = runtime.lite.from_bytes(tf_blob, kernels="builtin").predict(x[:1])
    np.testing.assert_allclose(ours_b, litert(tf_blob, [x[:1]], "builtin")[0], rtol=0, atol=step / 100)


def test_tf_calibration_quirk_is_reproduced(pairs):
    """TF's calibrator logs ADD's second input after ADD wrote over it in place; we do the same."""
    graph, calib, _, tf_calibrated = pairs["residual"]
    float_model = lower(graph).model
    ours = collect_ranges(float_model, [{"image": calib}], ["image"], progress=False)
    exact = collect_ranges(float_model, [{"image": calib}], ["image"], progress=False, tf_compatible=False)
    add = next(o for o in float_model.operators if o.op == "ADD")
    victim = add.inputs[1]
    assert ours[victim][0] < exact[victim][0] or ours[victim][1] > exact[victim][1]
    assert ours[add.outputs[0]] == exact[add.outputs[0]]
    calibrated = lite.parse(tf_calibrated)
    tf_add = next(o for o in calibrated.operators if o.op == "ADD")
    tf_range = _tf_ranges(tf_calibrated)[tf_add.inputs[1]]
    np.testing.assert_allclose(tf_range, ours[victim], rtol=1e-6)
