"""TF.js in Node.js loads every converted model and computes what our runtime computes.

All models of this module are converted once and run by one ``node``
process (tests/js/run_models.js, pure-JS @tensorflow/tfjs on the CPU
backend, loading over HTTP like a browser). Float models must match the
runtime within 1e-5; quantized ones must match the runtime running the
dequantized weights within 1e-5 and the float model within the error the
quantization step allows.
"""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from converters.web import convert_graph, read_model
from converters.web import format as fmt
from tests.converters.tfjs_node import Job, node_available, run_models
from tests.converters.web_cases import CASES, big_mlp, missing_ops, residual_cnn, two_input_graph

pytestmark = [pytest.mark.web, pytest.mark.skipif(node_available() is not None, reason=str(node_available()))]

TOL = 1e-5
# (case builder, quantization, allowed |output - float output| relative to the largest output)
QUANTIZED = [("residual_cnn", residual_cnn, q, bound) for q, bound in (("uint8", 0.1), ("uint16", 1e-3),
                                                                       ("float16", 1e-2))] + [
    ("two_input_graph", two_input_graph, "uint8", 0.1), ("big_mlp", big_mlp, "float16", 1e-2)]


def _outputs(value, graph) -> list[np.ndarray]:
    return list(value.values()) if isinstance(value, dict) else [value]


class Batch:
    """Every model of this module, converted, run in Node, with our references."""

    def __init__(self, root) -> None:
        self.root = root
        self.jobs: list[Job] = []
        self.expected: dict[str, list[np.ndarray]] = {}
        self.float_ref: dict[str, list[np.ndarray]] = {}
        self.models = {}

    def add(self, job_id: str, graph, inputs: dict[str, np.ndarray], **kwargs) -> None:
        model = convert_graph(graph, **kwargs)
        model.write(self.root / job_id)
        self.models[job_id] = model
        names = dict(model.model_json[fmt.KEY_USER_METADATA][fmt.META_KEY][fmt.META_INPUTS])
        kind = "graph" if model.format == fmt.FORMAT_GRAPH else "layers"
        self.jobs.append(Job(job_id, f"{job_id}/{fmt.MODEL_JSON}", kind, {names[k]: v for k, v in inputs.items()}))
        # Reference: the runtime on the weights as stored (dequantized), and on the float source.
        stored = read_model(model.model_json, self.root / job_id / fmt.MODEL_JSON, model.shards.get)
        self.expected[job_id] = _outputs(runtime.from_graph(stored).predict(inputs), stored)
        self.float_ref[job_id] = _outputs(runtime.from_graph(graph).predict(inputs), graph)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    b = Batch(tmp_path_factory.mktemp("web_node"))
    for case in CASES:
        graph = case.graph()
        inputs = case.inputs(graph)
        b.add(f"{case.id}-auto", graph, inputs)
        if case.expect == "layers":  # the same graph as a graph model too
            b.add(f"{case.id}-graph", graph, inputs, format="graph")
    for name, build, q, _ in QUANTIZED:
        graph = build()
        inputs = {s.name: np.random.default_rng(3).normal(0, 1, [2 if d is None else d for d in s.shape])
                  .astype(np.float32) for s in graph.inputs}
        b.add(f"{name}-{q}", graph, inputs, quantization=q)
    graph = big_mlp()
    b.add("big_mlp-sharded", graph, {"x": np.random.default_rng(4).normal(0, 1, (2, 64)).astype(np.float32)},
          shard_size=1_000_000)
    b.keras = _add_keras_models(b)
    b.results = run_models(b.root, b.jobs)
    return b


def _keras_models():
    import keras

    L = keras.layers
    seq = keras.Sequential([
        keras.Input((12, 12, 3)), L.Conv2D(8, 3, padding="same", activation="relu"), L.BatchNormalization(),
        L.MaxPooling2D(), L.SeparableConv2D(6, 3, activation="swish"), L.GlobalAveragePooling2D(),
        L.Dense(5, activation="softmax")], name="keras_seq")
    x = keras.Input((10, 4), name="seq")
    h = L.Conv1D(6, 3, padding="causal", activation="gelu")(x)
    h = L.Add()([h, L.Conv1D(6, 1)(x)])
    h = L.LayerNormalization()(h)
    y = L.Dense(3, activation="hard_sigmoid", name="head")(L.GlobalMaxPooling1D()(h))
    func = keras.Model(x, y, name="keras_func")
    rng = np.random.default_rng(9)
    for model in (seq, func):
        for layer in model.layers:
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") + (1.5 if "variance" in v.path else 0)
                               for w, v in zip(layer.get_weights(), layer.weights)])
    return [seq, func]


def _add_keras_models(b: Batch) -> dict[str, list[np.ndarray]]:
    """Live Keras 3 models through our importer; returns Keras' own outputs by job id."""
    try:
        models = _keras_models()
    except ImportError:
        return {}
    from savedmodel.export import to_graph

    refs = {}
    for model in models:
        graph, _ = to_graph(model)
        shape = [2 if d is None else d for d in model.input_shape]
        x = np.random.default_rng(2).normal(0, 1, shape).astype(np.float32)
        b.add(model.name, graph, {graph.inputs[0].name: x})
        refs[model.name] = [np.asarray(model.predict(x, verbose=0))]
    return refs


def _check(batch: Batch, job_id: str) -> None:
    result = batch.results[job_id]
    assert result.error is None, f"TF.js failed on {job_id}: {result.error}"
    expected = batch.expected[job_id]
    assert len(result.outputs) == len(expected)
    for got, want in zip(result.outputs, expected):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL * max(1.0, float(np.max(np.abs(want)))))


def test_cases_cover_every_op_of_the_catalogue():
    assert missing_ops() == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_tfjs_matches_runtime(batch, case):
    _check(batch, f"{case.id}-auto")
    assert batch.models[f"{case.id}-auto"].format == f"{case.expect}-model"
    if case.expect == "layers":
        _check(batch, f"{case.id}-graph")
    # Float weights are stored exactly: the stored model computes what the source computes.
    for got, want in zip(batch.expected[f"{case.id}-auto"], batch.float_ref[f"{case.id}-auto"]):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL * max(1.0, float(np.max(np.abs(want)))))


@pytest.mark.parametrize("name,q,bound", [(n, q, b) for n, _, q, b in QUANTIZED], ids=[f"{n}-{q}" for n, _, q, _ in
                                                                                     QUANTIZED])
def test_tfjs_matches_runtime_quantized(batch, name, q, bound):
    job_id = f"{name}-{q}"
    _check(batch, job_id)
    for got, ref in zip(batch.results[job_id].outputs, batch.float_ref[job_id]):
        assert float(np.max(np.abs(got - ref))) < bound * max(1.0, float(np.max(np.abs(ref))))


def test_tfjs_loads_sharded_model(batch):
    model = batch.models["big_mlp-sharded"]
    assert len(model.shards) > 1 and max(len(s) for s in model.shards.values()) <= 1_000_000
    _check(batch, "big_mlp-sharded")


@pytest.mark.keras
@pytest.mark.parametrize("name", ["keras_seq", "keras_func"])
def test_tfjs_matches_keras(batch, name):
    if name not in batch.keras:
        pytest.skip("keras is not installed")
    _check(batch, name)
    got, want = batch.results[name].outputs[0], batch.keras[name][0]
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
