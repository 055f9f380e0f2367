"""The TF.js file format: quantization, shards, the self-validator and every error path."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from converters.web import ConversionError, convert_graph, read_model, read_model_json
from converters.web import format as fmt
from converters.web.quantize import dequantize, quantize
from converters.web.shards import pack_weights, unpack_weights
from converters.web.validate import validate_model
from savedmodel import GraphBuilder
from savedmodel.errors import FormatError, UnsupportedError
from tests.converters.web_cases import big_mlp, dense_case, residual_cnn, two_input_graph, unmapped_ops

pytestmark = pytest.mark.web


# -- quantization ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("seed", range(5))
def test_affine_quantization_round_trip_within_half_a_step_and_zero_exact(dtype, seed):
    rng = np.random.default_rng(seed)
    values = (rng.normal(0, 1, 300) * rng.uniform(0.01, 10)).astype(np.float32)
    values[::7] = 0.0
    if seed == 3:
        values = np.abs(values)  # all non-negative: the range is widened to include 0
    stored, meta = quantize(values, dtype)
    assert stored.dtype == np.dtype(fmt.QUANT_DTYPES[dtype])
    back = dequantize(stored, meta)
    assert back.dtype == np.float32
    assert np.all(back[::7] == 0.0)
    assert float(np.max(np.abs(back - values))) <= meta["scale"] / 2 * (1 + 1e-6) + 1e-7


def test_float16_quantization_and_overflow():
    values = np.array([0.0, 1.5, -3.25e-3, 60000.0], np.float32)
    stored, meta = quantize(values, "float16")
    assert meta == {"dtype": "float16"} and stored.dtype == np.dtype("<f2")
    np.testing.assert_allclose(dequantize(stored, meta), values, rtol=2**-11)
    with pytest.raises(ConversionError, match=r"weight 'big' has values up to 70000.*beyond float16's range"):
        quantize(np.array([70000.0], np.float32), "float16", name="big")


def test_constant_and_empty_weights_quantize():
    stored, meta = quantize(np.zeros(4, np.float32), "uint8")
    assert meta["scale"] == 1.0 and np.all(dequantize(stored, meta) == 0)
    stored, meta = quantize(np.zeros(0, np.float32), "uint16")
    assert dequantize(stored, meta).shape == (0,)


def test_unknown_quantization_and_nan_are_refused():
    with pytest.raises(ConversionError, match=r"unknown quantization 'int8'; expected one of"):
        quantize(np.ones(2, np.float32), "int8")
    with pytest.raises(ConversionError, match=r"weight 'w' holds inf or NaN"):
        quantize(np.array([np.nan], np.float32), "uint8", name="w")


# -- shards ---------------------------------------------------------------------------------------
def test_shards_are_bounded_deterministic_and_may_split_a_weight():
    weights = [("a/kernel", np.arange(10, dtype=np.float32)), ("b/kernel", np.arange(7, dtype=np.float32))]
    manifest, files = pack_weights(weights, shard_size=16)
    assert list(files) == [f"group1-shard{i}of5.bin" for i in range(1, 6)]
    assert all(len(b) <= 16 for b in files.values()) and sum(len(b) for b in files.values()) == 68
    assert manifest[0]["paths"] == list(files)
    again, files2 = pack_weights(weights, shard_size=16)
    assert again == manifest and files2 == files
    out = unpack_weights(manifest, fmt.MODEL_JSON, files.get)
    np.testing.assert_array_equal(out["b/kernel"], weights[1][1])


def test_default_shard_size_is_4_mb():
    model = convert_graph(big_mlp())
    assert fmt.DEFAULT_SHARD_SIZE == 4 * 1024 * 1024
    sizes = [len(b) for b in model.shards.values()]
    assert len(sizes) == 2 and sizes[0] == fmt.DEFAULT_SHARD_SIZE and sizes[1] <= fmt.DEFAULT_SHARD_SIZE


def test_quantization_is_per_entry_and_only_for_float_weights():
    manifest, files = pack_weights([("k", np.ones((2, 2), np.float32)), ("shape", np.array([1, 2], np.int32))],
                                   quantization="uint8")
    k, shape = manifest[0]["weights"]
    assert k["quantization"]["dtype"] == "uint8" and k["dtype"] == "float32"
    assert "quantization" not in shape and shape["dtype"] == "int32"
    assert len(files["group1-shard1of1.bin"]) == 4 + 8


def test_graph_model_quantizes_weights_but_not_derived_constants():
    model = convert_graph(two_input_graph(), quantization="uint16")
    entries = model.model_json[fmt.KEY_MANIFEST][0]["weights"]
    quantized = {e["name"] for e in entries if "quantization" in e}
    assert quantized == {"proj/kernel", "proj/bias", "head/out/kernel", "head/out/bias"}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_shard_size(bad):
    with pytest.raises(ConversionError, match=r"the shard size must be a positive number of bytes"):
        convert_graph(dense_case("relu")(), shard_size=bad)


def test_bad_format_and_quantization_options():
    graph = dense_case("relu")()
    with pytest.raises(ConversionError, match=r"unknown format 'keras'; expected one of \['auto', 'layers', 'graph'\]"):
        convert_graph(graph, format="keras")
    with pytest.raises(ConversionError, match=r"unknown quantization 'int8'"):
        convert_graph(graph, quantization="int8")


def test_forcing_layers_on_a_graph_only_model_names_the_node():
    with pytest.raises(UnsupportedError, match=r"node 'out' cannot be written as a TF.js layer: .*exponential.*"
                                               r"Use --format graph"):
        convert_graph(dense_case("exponential")(), format="layers")


def test_auto_falls_back_to_a_graph_model_and_says_why():
    model = convert_graph(dense_case("hard_silu")())
    assert model.format == fmt.FORMAT_GRAPH
    assert "hard_silu" in model.fallback
    assert convert_graph(dense_case("relu")()).fallback is None


# -- what is written ---------------------------------------------------------------------------------
def test_layers_model_json_layout():
    model = convert_graph(residual_cnn(), name="resnet")
    doc = model.model_json
    assert doc["format"] == "layers-model" and doc["generatedBy"].startswith(fmt.PRODUCER)
    topo = doc["modelTopology"]
    assert topo["class_name"] == "Functional" and topo["keras_version"].startswith("2.")
    layers = {layer["name"]: layer for layer in topo["config"]["layers"]}
    assert layers["image"]["config"]["batch_input_shape"] == [None, 12, 12, 3]
    assert layers["image"]["inbound_nodes"] == []
    assert layers["residual"]["inbound_nodes"] == [[["bn1", 0, 0, {}], ["conv2", 0, 0, {}]]]
    conv = layers["conv1"]["config"]  # every attr explicit, also where TF.js' default equals Keras'
    assert {"strides", "padding", "dilation_rate", "activation", "use_bias", "data_format"} <= set(conv)
    assert topo["config"]["output_layers"] == [["probs", 0, 0], ["regress", 0, 0]]
    names = [w["name"] for w in doc["weightsManifest"][0]["weights"]]
    assert names[:2] == ["conv1/kernel", "conv1/bias"] and "dw/depthwise_kernel" in names


def test_chain_is_written_as_sequential():
    doc = convert_graph(dense_case("leaky_relu")()).model_json
    layers = doc["modelTopology"]["config"]["layers"]
    assert doc["modelTopology"]["class_name"] == "Sequential"
    assert [layer["class_name"] for layer in layers] == ["InputLayer", "Dense", "LeakyReLU"]
    assert [layer["config"]["name"] for layer in layers] == ["x", "out_linear", "out"]


def test_names_are_sanitized_and_io_names_survive_the_round_trip():
    model = convert_graph(two_input_graph())
    placeholders = [n["name"] for n in model.model_json["modelTopology"]["node"] if n["op"] == "Placeholder"]
    assert placeholders == ["left_input", "right"]
    graph = read_model(model.model_json, fmt.MODEL_JSON, model.shards.get)
    assert [s.name for s in graph.inputs] == ["left input", "right"]
    assert [s.name for s in graph.outputs] == ["head/out"]


def test_graph_model_layout():
    doc = convert_graph(two_input_graph()).model_json
    topo = doc["modelTopology"]
    assert doc["format"] == "graph-model" and "versions" in topo
    assert set(doc["signature"]["inputs"]) == {"left_input:0", "right:0"}
    ops = {n["op"] for n in topo["node"]}
    assert {"Placeholder", "Const", "MatMul", "BiasAdd", "Sub", "Exp"} <= ops
    pads = [n for n in topo["node"] if n["op"] == "Placeholder"]
    assert pads[0]["attr"]["shape"] == {"shape": {"dim": [{"size": "-1"}, {"size": "6"}]}}


def test_write_replaces_stale_shards(tmp_path):
    convert_graph(big_mlp(), shard_size=1_000_000).write(tmp_path)
    assert len(list(tmp_path.glob("group1-shard*"))) > 2
    convert_graph(dense_case("relu")()).write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group1-shard1of1.bin", "model.json"]


# -- the self-validator ------------------------------------------------------------------------------
def _broken(model, edit):
    model = copy.deepcopy(model)
    edit(model.model_json)
    return model


@pytest.fixture(scope="module")
def func_model():
    return convert_graph(residual_cnn())


def _layer(doc, name):
    return next(layer for layer in doc["modelTopology"]["config"]["layers"] if layer["name"] == name)


@pytest.mark.parametrize("edit,match", [
    (lambda d: _layer(d, "residual")["inbound_nodes"][0].__setitem__(0, ["bn_typo", 0, 0, {}]),
     r"layer 'residual' reads \['bn_typo', 0, 0, \{\}\], which names no layer \(TF.js would loop forever\)"),
    (lambda d: _layer(d, "relu").pop("name"), r"the outer name None differs from the config's 'relu'"),
    (lambda d: _layer(d, "conv1")["config"].__setitem__("name", "_conv"), r"layer name '_conv' does not match"),
    (lambda d: d["weightsManifest"][0]["weights"].pop(), r"weight 'regress/bias' of layer 'regress' is not in the "
                                                         r"manifest"),
    (lambda d: _layer(d, "image")["config"].__setitem__("batch_shape", _layer(d, "image")["config"].pop(
        "batch_input_shape")), r"the InputLayer has no batch_input_shape"),
    (lambda d: _layer(d, "relu").__setitem__("class_name", "Swish"), r"class 'Swish' is not registered in TF.js"),
    (lambda d: d["modelTopology"]["config"]["output_layers"].append(["nope", 0, 0]),
     r"output_layers entry \['nope', 0, 0\] names no layer"),
    (lambda d: d.pop("weightsManifest"), r"'weightsManifest' is missing \(TF.js would load random weights\)"),
])
def test_validator_catches_what_tfjs_does_not(func_model, edit, match):
    with pytest.raises(ConversionError, match=match):
        validate_model(_broken(func_model, edit))


def test_validator_checks_graph_models():
    model = convert_graph(two_input_graph())
    with pytest.raises(ConversionError, match=r"modelTopology.versions is missing"):
        validate_model(_broken(model, lambda d: d["modelTopology"].pop("versions")))
    with pytest.raises(ConversionError, match=r"op 'Gelu' is not implemented by TF.js"):
        validate_model(_broken(model, lambda d: d["modelTopology"]["node"][-1].__setitem__("op", "Gelu")))
    with pytest.raises(ConversionError, match=r"attr 'padding' is not base64"):
        validate_model(_broken(model, lambda d: d["modelTopology"]["node"][-1].__setitem__(
            "attr", {"padding": {"s": "SAME!"}})))


def test_validator_checks_the_round_trip_shapes(func_model):
    other = residual_cnn()
    other.outputs = other.outputs[:1]
    with pytest.raises(ConversionError, match=r"reads back with inputs/outputs"):
        validate_model(func_model, other)


# -- reading bad files ---------------------------------------------------------------------------------
@pytest.fixture
def written(tmp_path):
    convert_graph(residual_cnn(), shard_size=5_000).write(tmp_path)
    return tmp_path / fmt.MODEL_JSON


def _edit(path, fn):
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_missing_shard_names_file_and_entry(written):
    (written.parent / "group1-shard2of2.bin").unlink()
    with pytest.raises(FormatError, match=r"model.json: weightsManifest\[0\]: shard 'group1-shard2of2.bin' is "
                                          r"missing"):
        read_model_json(written)


def test_truncated_shard_names_file_and_entry(written):
    shard = written.parent / "group1-shard2of2.bin"
    shard.write_bytes(shard.read_bytes()[:-8])
    with pytest.raises(FormatError, match=r"model.json: weightsManifest\[0\].weights\[13\] \('regress/bias'\) is cut "
                                          r"short: the manifest describes \d+ bytes, the shards .* hold \d+; the "
                                          r"manifest does not match the shard sizes"):
        read_model_json(written)


def test_extra_shard_bytes_are_a_mismatch(written):
    shard = written.parent / "group1-shard2of2.bin"
    shard.write_bytes(shard.read_bytes() + b"\0" * 4)
    with pytest.raises(FormatError, match=r"\('regress/bias'\) is followed by bytes no entry describes"):
        read_model_json(written)


def test_manifest_shape_that_does_not_match_the_shards(written):
    _edit(written, lambda d: d["weightsManifest"][0]["weights"][0].__setitem__("shape", [3, 3, 3, 9]))
    with pytest.raises(FormatError, match=r"weights\[\d+\] \('\w+/\w+'\) is followed by bytes|is cut short"):
        read_model_json(written)


def test_unknown_layer_class_names_file_and_entry(written):
    _edit(written, lambda d: d["modelTopology"]["config"]["layers"][4].__setitem__("class_name", "Fancy"))
    with pytest.raises(FormatError, match=r"model.json: modelTopology.config.layers\[4\]: layer '\w+' has an unknown "
                                          r"layer class 'Fancy'; known classes: "):
        read_model_json(written)


def test_tfjs_layer_without_a_catalogue_op_is_unsupported(tmp_path):
    doc = {"modelTopology": {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"name": "x", "batch_input_shape": [None, 4]}},
        {"class_name": "LSTM", "config": {"name": "lstm", "units": 3}}]}}, "weightsManifest": []}
    (tmp_path / "model.json").write_text(json.dumps(doc))
    with pytest.raises(UnsupportedError, match=r"layers\[1\]: layer 'lstm' of class LSTM has no op in the catalogue"):
        read_model_json(tmp_path / "model.json")


def test_unused_and_missing_weights(written):
    _edit(written, lambda d: d["weightsManifest"][0]["weights"][0].__setitem__("name", "ghost/kernel"))
    with pytest.raises(FormatError, match=r"layers\[\d+\] \(layer 'conv1', Conv2D\): weight conv1/kernel is not in "
                                          r"the weights manifest"):
        read_model_json(written)


def test_unused_manifest_weight(tmp_path):
    model = convert_graph(dense_case("relu")())
    model.model_json["modelTopology"]["config"]["layers"][1]["config"]["use_bias"] = False
    model.write(tmp_path)
    with pytest.raises(FormatError, match=r"weightsManifest: weights \['out/bias'\] belong to no layer"):
        read_model_json(tmp_path / "model.json")


@pytest.mark.parametrize("text,match", [
    ("{", r"model.json: is not JSON"),
    ("[]", r"model.json: a model.json must hold a JSON object"),
    ('{"weightsManifest": []}', r"model.json: 'modelTopology' is missing or not an object"),
    ('{"modelTopology": {"class_name": "Weird"}}', r"modelTopology.class_name 'Weird' is not one of"),
    ('{"modelTopology": {"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": '
     '{"name": "d", "units": 2}}]}}}', r"layers\[0\] \(layer 'd', Dense\): an input layer needs 'batch_input_shape'"),
    ('{"modelTopology": {"class_name": "Functional", "config": {"layers": [{"class_name": "InputLayer", "name": "x",'
     ' "inbound_nodes": [], "config": {"name": "x", "batch_input_shape": [null, 2]}}, {"class_name": "ReLU", "name":'
     ' "r", "inbound_nodes": [[["y", 0, 0, {}]]], "config": {"name": "r"}}], "input_layers": [["x", 0, 0]],'
     ' "output_layers": [["r", 0, 0]]}}}', r"layer 'r' reads layer 'y', which does not exist"),
    ('{"modelTopology": {"class_name": "Functional", "config": {"layers": [{"class_name": "InputLayer", "name": "x",'
     ' "inbound_nodes": [], "config": {"name": "x", "batch_input_shape": [null, 2]}}, {"class_name": "ReLU", "name":'
     ' "r", "inbound_nodes": [{"args": []}], "config": {"name": "r"}}], "input_layers": [["x", 0, 0]],'
     ' "output_layers": [["r", 0, 0]]}}}', r"Keras 3 style inbound_nodes"),
    ('{"modelTopology": {"node": [{"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [{"size": '
     '"-1"}, {"size": "3"}]}}}}, {"name": "y", "op": "Cumsum", "input": ["x"]}], "versions": {}}, "format": '
     '"graph-model"}', None),
])
def test_malformed_model_json(tmp_path, text, match):
    path = tmp_path / "model.json"
    path.write_text(text)
    if match is None:  # a TF op with no catalogue mapping
        with pytest.raises(UnsupportedError, match=r"node 'y': op Cumsum has no mapping to the op catalogue"):
            read_model_json(path)
        return
    with pytest.raises(FormatError, match=match):
        read_model_json(path)


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(FormatError, match=r"nothing.json: no such file"):
        read_model_json(tmp_path / "nothing.json")
    with pytest.raises(FormatError, match=r"is a directory; pass the model.json inside it"):
        read_model_json(tmp_path)


def test_shard_paths_may_not_leave_the_directory(tmp_path):
    model = convert_graph(dense_case("relu")())
    model.model_json["weightsManifest"][0]["paths"] = ["../secret.bin"]
    model.write(tmp_path)
    with pytest.raises(FormatError, match=r"shard '../secret.bin' is missing"):
        read_model_json(tmp_path / "model.json")


def test_graph_model_metadata_that_does_not_match_the_consts(tmp_path):
    model = convert_graph(two_input_graph())
    model.model_json["userDefinedMetadata"]["savedmodel"]["weight_nodes"]["proj/kernel"] = "nope"
    with pytest.raises(FormatError, match=r"weight 'proj/kernel' names Const 'nope', which is not a node"):
        read_model(model.model_json, "m.json", model.shards.get)


def test_const_without_manifest_entry(tmp_path):
    b = GraphBuilder()
    x = b.input("x", (None, 2))
    graph = b.build(b.op("Dense", x, units=2, kernel=np.eye(2, dtype=np.float32)))
    model = convert_graph(graph, format="graph")
    doc = model.model_json
    doc["userDefinedMetadata"]["savedmodel"].pop("graph")  # read by translation, not from our metadata
    doc["weightsManifest"][0]["weights"] = []
    with pytest.raises(FormatError, match=r"node 'dense/kernel' \(Const\): the Const has no entry in the weights "
                                          r"manifest"):
        read_model(doc, "m.json", lambda name: b"")


def test_ops_without_a_tfjs_mapping_are_the_sequence_and_onnx_level_ops():
    from savedmodel.ops import OPS, numeric, sequence

    later = {name for name, spec in OPS.items() if spec.shape.__module__ in (numeric.__name__, sequence.__name__)}
    assert unmapped_ops() and set(unmapped_ops()) <= later


def test_an_op_without_a_tfjs_mapping_is_named():
    b = GraphBuilder()
    ids = b.input("ids", (None, 5), dtype="int32")
    out = b.op("Embedding", ids, name="embed", input_dim=10, output_dim=3, embeddings=np.zeros((10, 3), np.float32))
    with pytest.raises(UnsupportedError, match=r"node 'embed': op Embedding has no TF.js graph lowering"):
        convert_graph(b.build(out))
