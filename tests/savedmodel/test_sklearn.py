"""scikit-learn models exported with skl2onnx, saved as bundles and run by the runtime.

Each model goes ``skl2onnx.to_onnx`` -> ``clf.onnx`` -> ``savedmodel.save`` ->
``runtime.load`` -> the serving signature, and is compared with scikit-learn
itself: labels exactly, probabilities / decision values / regression outputs
with rtol 1e-5 (atol 1e-6: float32 against scikit-learn's float64). The
ai.onnx.ml converters' refusals are tested on hand-built nodes, each with its
exception type and message.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

skl2onnx = pytest.importorskip("skl2onnx")
sklearn = pytest.importorskip("sklearn")
from onnx import TensorProto, helper  # noqa: E402
from sklearn.datasets import load_iris, make_regression  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import Normalizer, StandardScaler  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

import runtime  # noqa: E402
import savedmodel  # noqa: E402
from savedmodel.errors import UnsupportedError  # noqa: E402

# The importer reads default-domain opsets 13 to 21; skl2onnx picks a newer one unless told.
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def regression():
    x, y = make_regression(80, 5, n_targets=1, noise=0.5, random_state=0)
    return x.astype(np.float32), y


def _fit(model, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the small iteration budgets
        return model.fit(x, y)


def serve(model, x: np.ndarray, tmp_path) -> runtime.Model:
    """The fitted model exported by skl2onnx, saved as a bundle under tmp_path and loaded back."""
    onx = skl2onnx.to_onnx(model, x[:1], target_opset=TARGET_OPSET)
    path = tmp_path / "clf.onnx"
    path.write_bytes(onx.SerializeToString())
    base = tmp_path / "models" / "clf"
    savedmodel.save(str(path), base)
    return runtime.load(base)


def predict(loaded: runtime.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    return loaded.signatures["serving_default"](X=x)


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


CLASSIFIERS = {
    "logistic_multiclass": lambda: LogisticRegression(max_iter=500),
    "logistic_pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
    "mlp": lambda: MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=300, random_state=0),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_probabilities_and_labels(name, iris, tmp_path):
    x, y = iris
    model = _fit(CLASSIFIERS[name](), x, y)
    out = predict(serve(model, x, tmp_path), x)
    # ZipMap's list of {label: probability} maps comes back as the (batch, classes) tensor, columns in classes_.
    _close(out["output_probability"], model.predict_proba(x))
    assert out["output_label"].dtype == np.int64
    np.testing.assert_array_equal(out["output_label"], model.predict(x))


def test_binary_logistic_regression(iris, tmp_path):
    x, y = iris
    model = _fit(LogisticRegression(), x, (y == 1).astype(np.int64))
    out = predict(serve(model, x, tmp_path), x)
    _close(out["output_probability"], model.predict_proba(x))
    np.testing.assert_array_equal(out["output_label"], model.predict(x))


def test_labels_that_are_not_0_to_n_are_looked_up(iris, tmp_path):
    x, y = iris
    labels = np.array([3, 7, 11])[y]
    model = _fit(LogisticRegression(max_iter=500), x, labels)
    out = predict(serve(model, x, tmp_path), x)
    _close(out["output_probability"], model.predict_proba(x))
    np.testing.assert_array_equal(out["output_label"], model.predict(x))


def test_string_labels_come_back_as_byte_strings(iris, tmp_path):
    x, y = iris
    model = _fit(LogisticRegression(max_iter=500), x, np.array(["setosa", "versicolor", "virginica"])[y])
    out = predict(serve(model, x, tmp_path), x)
    _close(out["output_probability"], model.predict_proba(x))
    assert [label.decode() for label in out["output_label"]] == list(model.predict(x))


def test_sgd_classifier_scores(iris, tmp_path):
    x, y = iris
    model = _fit(SGDClassifier(random_state=0), x, y)
    out = predict(serve(model, x, tmp_path), x)
    _close(out["output_probability"], model.decision_function(x))
    np.testing.assert_array_equal(out["output_label"], model.predict(x))


@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
def test_linear_svc_decision_values(binary, iris, tmp_path):
    x, y = iris
    model = _fit(LinearSVC(random_state=0), x, (y == 2).astype(np.int64) if binary else y)
    out = predict(serve(model, x, tmp_path), x)
    want = model.decision_function(x)
    _close(out["probabilities"], want.reshape(-1, 1) if binary else want)
    np.testing.assert_array_equal(out["label"], model.predict(x))


REGRESSORS = {
    "linear": lambda: LinearRegression(),
    "ridge": lambda: Ridge(alpha=0.5),
    "mlp": lambda: MLPRegressor(hidden_layer_sizes=(12,), max_iter=300, random_state=0),
    "normalizer_l1": lambda: make_pipeline(Normalizer("l1"), LinearRegression()),
    "normalizer_l2": lambda: make_pipeline(Normalizer("l2"), LinearRegression()),
    "normalizer_max": lambda: make_pipeline(Normalizer("max"), LinearRegression()),
}


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressor(name, regression, tmp_path):
    x, y = regression
    model = _fit(REGRESSORS[name](), x, y)
    out = predict(serve(model, x, tmp_path), x)
    (got,) = out.values()
    want = model.predict(x).reshape(got.shape)
    scale = float(np.abs(want).max())
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale)


def test_batch_of_one_and_of_many(iris, tmp_path):
    x, y = iris
    model = _fit(LogisticRegression(max_iter=500), x, y)
    loaded = serve(model, x, tmp_path)
    for rows in (x[:1], x[:64]):
        _close(predict(loaded, rows)["output_probability"], model.predict_proba(rows))


# ------------------------------------------------------------------------------------------ refusals


def _ml_model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 3)])


def _features(n: int = 4, rank: int = 2):
    shape = ["N", n] if rank == 2 else ["N", n, 2]
    return helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)


def _out(name: str):
    elem = TensorProto.INT64 if name == "label" else TensorProto.FLOAT
    return helper.make_tensor_value_info(name, elem, ["N"] if name == "label" else ["N", None])


def _classifier(**attrs):
    base = {"classlabels_ints": [0, 1, 2], "coefficients": [0.5] * 12, "intercepts": [0.1, 0.2, 0.3]}
    base.update(attrs)
    return helper.make_node("LinearClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml", **base)


@pytest.mark.parametrize("node,features,message", [
    (_classifier(post_transform="PROBIT"), _features(),
     r"post_transform 'PROBIT' has no IR equivalent; supported: \['LOGISTIC', 'NONE', 'SOFTMAX'\]"),
    (_classifier(coefficients=[0.5] * 10), _features(),
     r"its 10 coefficients are not a whole number of rows of 4 features"),
    (_classifier(intercepts=[0.1, 0.2]), _features(), r"it has 2 intercepts for 3 coefficient rows"),
    (_classifier(coefficients=[0.5] * 8, intercepts=[0.1, 0.2]), _features(),
     r"it has 2 coefficient rows for 3 classes"),
    (_classifier(), _features(rank=3), r"expected a \(batch, features\) input with a known feature count, got shape"),
    (helper.make_node("LinearRegressor", ["X"], ["scores"], domain="ai.onnx.ml", coefficients=[1.0] * 8, targets=1),
     _features(), r"it has 2 coefficient rows for 1 targets"),
    (helper.make_node("Normalizer", ["X"], ["scores"], domain="ai.onnx.ml", norm="L3"), _features(),
     r"norm 'L3' is not one of \['L1', 'L2', 'MAX'\]"),
    (helper.make_node("Scaler", ["X"], ["scores"], domain="ai.onnx.ml", offset=[0.0, 1.0], scale=[1.0]), _features(),
     r"its offset has 2 entries, expected 1 or 4 \(one per feature\)"),
    (helper.make_node("LinearClassifier", ["X"], ["label", "scores"], domain="ai.onnx.ml", coefficients=[0.5] * 4),
     _features(), r"it has neither classlabels_ints nor classlabels_strings"),
], ids=["post_transform", "coefficients", "intercepts", "rows", "rank", "targets", "norm", "scaler", "labels"])
def test_ml_converters_refuse_what_the_ir_cannot_express(node, features, message, tmp_path):
    model = _ml_model([node], [features], [_out(o) for o in node.output])
    with pytest.raises(UnsupportedError, match=message) as info:
        savedmodel.save(model, tmp_path / "m")
    assert node.op_type in str(info.value)


def test_array_feature_extractor_with_run_time_table_is_refused(tmp_path):
    node = helper.make_node("ArrayFeatureExtractor", ["X", "I"], ["Y"], domain="ai.onnx.ml")
    index = helper.make_tensor_value_info("I", TensorProto.INT64, ["N", 1])
    model = _ml_model([node], [_features(), index], [_out("Y")])
    with pytest.raises(UnsupportedError, match=r"run-time indices are supported into a constant 1-D table only"):
        savedmodel.save(model, tmp_path / "m")


def test_array_feature_extractor_with_constant_indices_selects_columns(iris, tmp_path):
    x, _ = iris
    node = helper.make_node("ArrayFeatureExtractor", ["X", "cols"], ["Y"], domain="ai.onnx.ml")
    cols = helper.make_tensor("cols", TensorProto.INT64, [2], [3, 1])
    model = _ml_model([node], [_features()], [_out("Y")], [cols])
    savedmodel.save(model, tmp_path / "m")
    got = runtime.load(tmp_path / "m").signatures["serving_default"](X=x)["Y"]
    np.testing.assert_array_equal(got, x[:, [3, 1]])
