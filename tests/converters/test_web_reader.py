"""Reading TF.js models: ours (every case) and tensorflowjs_converter's (checked-in fixtures).

The fixtures under data/tfjs_converter were written by tensorflowjs_converter
4.22 from tf_keras models (data/make_tfjs_converter_fixtures.py); each has
Keras' own output for its input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runtime
from converters.web import convert, convert_graph, read_model, read_model_json
from converters.web import format as fmt
from savedmodel.errors import UnsupportedError
from tests.converters.web_cases import CASES, residual_cnn

pytestmark = pytest.mark.web

FIXTURES = Path(__file__).resolve().parent / "data" / "tfjs_converter"
MODELS = ["mlp", "cnn", "functional", "upconv", "layernorm"]


def _keras(name):
    data = np.load(FIXTURES / f"{name}.npz")
    return data["x"], [data[k] for k in sorted(data.files) if k.startswith("y")]


def _predict(graph, x):
    out = runtime.from_graph(graph).predict(x)
    return list(out.values()) if isinstance(out, dict) else [out]


@pytest.mark.parametrize("name", MODELS)
def test_tensorflowjs_converter_layers_models(name):
    x, want = _keras(name)
    graph = read_model_json(FIXTURES / f"{name}_layers" / fmt.MODEL_JSON)
    for got, ref in zip(_predict(graph, x), want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_tensorflowjs_converter_uint8_layers_models(name):
    x, want = _keras(name)
    graph = read_model_json(FIXTURES / f"{name}_layers_uint8" / fmt.MODEL_JSON)
    for got, ref in zip(_predict(graph, x), want, strict=True):
        assert float(np.max(np.abs(got - ref))) < 0.02


@pytest.mark.parametrize("name", [m for m in MODELS if m != "layernorm"])
def test_tensorflowjs_converter_graph_models(name):
    x, want = _keras(name)
    graph = read_model_json(FIXTURES / f"{name}_graph" / fmt.MODEL_JSON)
    for got, ref in zip(_predict(graph, x), want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_tensorflowjs_converter_graph_model_names_follow_the_signature():
    graph = read_model_json(FIXTURES / "functional_graph" / fmt.MODEL_JSON)
    assert [s.name for s in graph.inputs] == ["seq"]
    assert [s.name for s in graph.outputs] == ["head_a", "head_b"]


def test_keras2_hard_sigmoid_keeps_its_meaning():
    # tf_keras' hard_sigmoid is clip(0.2x + 0.5, 0, 1), the IR's (Keras 3) relu6(x + 3) / 6.
    graph = read_model_json(FIXTURES / "mlp_layers" / fmt.MODEL_JSON)
    assert "hard_sigmoid" not in {n.attrs.get("activation") for n in graph.nodes}
    assert any(n.op == "ReLU" and n.attrs["max_value"] == 1.0 for n in graph.nodes)


def test_unsupported_tensorflowjs_converter_graph_names_the_node():
    with pytest.raises(UnsupportedError, match=r"node 'StatefulPartitionedCall/sequential_\d+/layer_normalization/"
                                               r"Reshape': a reshape of \[None, 5, 6\] to \[1, '\?', 6, 1\]"):
        read_model_json(FIXTURES / "layernorm_graph" / fmt.MODEL_JSON)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("format", ["auto", "graph"])
def test_our_models_read_back(case, format):
    graph = case.graph()
    model = convert_graph(graph, format=format, validate=False)
    back = read_model(model.model_json, fmt.MODEL_JSON, model.shards.get)
    assert [s.name for s in back.inputs] == [s.name for s in graph.inputs]
    assert [s.name for s in back.outputs] == [s.name for s in graph.outputs]
    x = case.inputs(graph)
    for got, want in zip(_predict(back, x), _predict(graph, x), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.max(np.abs(want)))))


def test_our_graph_model_reads_by_translation_without_metadata():
    graph = residual_cnn()
    model = convert_graph(graph, format="graph")
    model.model_json[fmt.KEY_USER_METADATA][fmt.META_KEY].pop(fmt.META_GRAPH)
    back = read_model(model.model_json, fmt.MODEL_JSON, model.shards.get)
    assert "Conv2D" in back.ops() and "Dense" in back.ops()
    x = {"image": np.random.default_rng(0).normal(0, 1, (2, 12, 12, 3)).astype(np.float32)}
    for got, want in zip(_predict(back, x), _predict(graph, x), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_runtime_load_dispatches_model_json(tmp_path):
    graph = residual_cnn()
    convert(graph, tmp_path / "web", quantization="uint16")
    model = runtime.load(tmp_path / "web" / "model.json")
    x = np.random.default_rng(1).normal(0, 1, (2, 12, 12, 3)).astype(np.float32)
    got = model.predict(x)
    want = runtime.from_graph(graph).predict(x)
    for key in ("probs", "regress"):
        assert float(np.max(np.abs(got[key] - want[key]))) < 1e-2
