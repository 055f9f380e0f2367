"""KServe V2 / Open Inference Protocol over HTTP: plain JSON, hand-built binary bodies and tritonclient."""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.server.helpers import ServerProcess, dense_expected


def _infer(client: httpx.Client, path: str, doc: dict, **kwargs: object) -> httpx.Response:
    return client.post(path, content=json.dumps(doc).encode(), **kwargs)


def test_json_infer_echoes_id_and_returns_flat_data(client: httpx.Client) -> None:
    r = _infer(client, "/v2/models/dense/infer", {
        "id": "42", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]})
    assert r.status_code == 200
    assert r.text == ('{"model_name":"dense","model_version":"2","id":"42","outputs":[{"name":"y","datatype":"FP32",'
                      '"shape":[2,2],"data":[104.0,105.0,110.0,111.0]}]}')


@pytest.mark.parametrize(("path", "doc", "name", "data"), [
    ("/v2/models/dense/versions/1/infer",  # nested data, requested output
     {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[1, 2, 3]]}], "outputs": [{"name": "y"}]},
     "y", [4.0, 5.0]),
    ("/v2/models/dense/infer",  # integers are accepted for a float input
     {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]}, "y", [104.0, 105.0]),
    ("/v2/models/multi/infer",
     {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                 {"name": "c", "shape": [1, 3], "datatype": "FP32", "data": [2, 2, 2]}],
      "outputs": [{"name": "prod"}]}, "prod", [2.0, 4.0, 6.0]),
    ("/v2/models/strings/infer",
     {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["foo", "bar"]}],
      "outputs": [{"name": "echo"}]}, "echo", ["foo", "bar"]),
    ("/v2/models/classifier/infer",  # the classification extension: top-k "score:index:label"
     {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [2, 0, 0.5, 3]}],
      "outputs": [{"name": "probs", "parameters": {"classification": 2}}]},
     "probs", ["0.866813302:0:cat", "0.11731042:1:dog", "0.92285955:1:dog", "0.0757529363:0:cat"]),
    ("/v2/models/regressor/infer",  # another signature by request parameter
     {"parameters": {"signature_name": "regression"},
      "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}, "outputs", [5.0]),
])
def test_json_infer(client: httpx.Client, path: str, doc: dict, name: str, data: list) -> None:
    r = _infer(client, path, doc)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert list(outputs) == [name] or "outputs" not in doc
    assert outputs[name]["data"] == data


def test_nan_output_keeps_tf_tokens(client: httpx.Client) -> None:
    r = client.post("/v2/models/identity/infer", content=b'{"inputs": [{"name": "x", "shape": [1, 3], '
                                                         b'"datatype": "FP32", "data": [NaN, 1, Infinity]}]}')
    assert r.status_code == 200
    assert r.text.endswith('"data":[NaN,1.0,Infinity]}]}')


def _binary_request(doc: dict, *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(doc).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head)),
                                    "Content-Type": "application/octet-stream"}


def test_binary_inputs_and_outputs_by_hand(client: httpx.Client) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, headers = _binary_request({
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}, x.tobytes())
    r = client.post("/v2/models/dense/infer", content=body, headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    size = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:size])
    assert head["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [2, 2],
                                "parameters": {"binary_data_size": 16}}]
    y = np.frombuffer(r.content[size:], dtype="<f4").reshape(2, 2)
    np.testing.assert_array_equal(y, dense_expected(x, 100.0))


def test_binary_bytes_tensors(client: httpx.Client) -> None:
    words = [b"foo", b"", b"\xff\x00bar"]
    blob = b"".join(struct.pack("<I", len(w)) + w for w in words)
    body, headers = _binary_request({
        "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}],
        "parameters": {"binary_data_output": True}}, blob)
    r = client.post("/v2/models/strings/infer", content=body, headers=headers)
    assert r.status_code == 200
    size = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:size])
    assert [o["parameters"]["binary_data_size"] for o in head["outputs"]] == [len(blob), len(blob)]
    assert r.content[size:] == blob + blob


V2_ERRORS = [
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]}, 400,
     "Input 'x' has 2 elements in data but shape [1, 3] needs 3"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP99", "data": [1, 2, 3]}]}, 400,
     "Input 'x' has unsupported datatype 'FP99'; supported: BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, "
     "INT32, INT64, FP16, FP32, FP64, BYTES"),
    ({"inputs": [{"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, 400,
     "Missing input 'x'; signature 'serving_default' has inputs: x"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                 {"name": "z", "shape": [1], "datatype": "FP32", "data": [1]}]}, 400,
     "Unknown input 'z'; signature 'serving_default' has inputs: x"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                 {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, 400,
     "Input 'x' appears more than once"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}], "outputs": [{"name": "q"}]},
     400, "Unknown output 'q'; the model's outputs are: y"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
      "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]}, 400,
     "Parameter 'binary_data' must be a boolean, got 'yes'"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
      "outputs": [{"name": "y", "parameters": {"classification": 0}}]}, 400,
     "Output 'y': parameter 'classification' must be a positive integer, got 0"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BYTES", "data": ["a", "b", "c"]}]}, 400,
     "Input 'x' has dtype string but signature 'serving_default' expects float32"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": ["a", "b", "c"]}]}, 400,
     "Input 'x': JSON Value: \"a\" Type: String is not of expected type: float"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[1, 2], [3]]}]}, 400,
     "Input 'x': Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}, 400,
     "Input 'x' has shape [3] but signature 'serving_default' expects [-1, 3]"),
    ({"inputs": [{"name": "x", "shape": [-1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, 400,
     "Input 'x' has a negative dimension in shape [-1, 3]"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32"}]}, 400, "Input 'x' has no data"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}], "foo": 1}, 400,
     "Invalid inference request: foo: Extra inputs are not permitted"),
    ({"inputs": [{"name": "x", "shape": "1", "datatype": "FP32", "data": [1, 2, 3]}]}, 400,
     "Invalid inference request: inputs.0.shape: Input should be a valid list"),
    ({"outputs": []}, 400, "Invalid inference request: inputs: Field required"),
    ([1], 400, "Invalid inference request: the JSON body must be an object"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}, 400,
     "Input 'x' has binary_data_size but the request has no Inference-Header-Content-Length header"),
    ({"parameters": {"signature_name": 3}, "inputs": []}, 400, "Parameter 'signature_name' must be a string, got 3"),
    ({"parameters": {"signature_name": "nope"}, "inputs": []}, 400,
     'Serving signature name: "nope" not found in signature def'),
]


@pytest.mark.parametrize(("doc", "status", "message"), V2_ERRORS)
def test_json_infer_errors(client: httpx.Client, doc: object, status: int, message: str) -> None:
    r = _infer(client, "/v2/models/dense/infer", doc)
    assert r.status_code == status and r.json() == {"error": message}


@pytest.mark.parametrize(("header", "blob", "message"), [
    ("abc", b"", "Inference-Header-Content-Length must be an integer, got 'abc'"),
    ("999999", b"", "Inference-Header-Content-Length 999999 is outside the request body of {n} bytes"),
    (None, b"\x00" * 8, "Input 'x' has binary_data_size 12 but only 8 bytes of binary data are left"),
    (None, b"\x00" * 16, "The request has 4 bytes of binary data that no input claims"),
])
def test_binary_header_errors(client: httpx.Client, header: str | None, blob: bytes, message: str) -> None:
    body, headers = _binary_request({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                                 "parameters": {"binary_data_size": 12}}]}, blob)
    if header is not None:
        headers["Inference-Header-Content-Length"] = header
    r = client.post("/v2/models/dense/infer", content=body, headers=headers)
    assert r.status_code == 400 and r.json() == {"error": message.format(n=len(body))}


def test_binary_size_must_match_the_shape(client: httpx.Client) -> None:
    body, headers = _binary_request({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                                 "parameters": {"binary_data_size": 8}}]}, b"\x00" * 8)
    r = client.post("/v2/models/dense/infer", content=body, headers=headers)
    assert r.json() == {"error": "Input 'x' has 8 bytes of binary data but shape [1, 3] of FP32 needs 12"}
    body, headers = _binary_request({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                                 "parameters": {"binary_data_size": 6}}]}, b"\x09\x00\x00\x00ab")
    r = client.post("/v2/models/strings/infer", content=body, headers=headers)
    assert r.json() == {"error": "Input 'text': BYTES element 0 of 9 bytes runs past the end of its binary data"}


@pytest.mark.parametrize(("method", "path", "status", "body"), [
    ("GET", "/v2", 200, {"name": "savedmodel-serving", "version": "0.1.0",
                         "extensions": ["binary_tensor_data", "classification"]}),
    ("GET", "/v2/health/live", 200, {"live": True}),
    ("GET", "/v2/health/ready", 200, {"ready": True}),
    ("GET", "/v2/models/dense/ready", 200, {"name": "dense", "ready": True}),
    ("GET", "/v2/models/dense/versions/1/ready", 200, {"name": "dense", "ready": True}),
    ("GET", "/v2/models/dense/versions/5/ready", 400, {"name": "dense", "ready": False}),
    ("GET", "/v2/models/nope/ready", 404, {"error": "Servable not found for request: Latest(nope)"}),
    ("GET", "/v2/models/dense", 200, {"name": "dense", "versions": ["1", "2"], "platform": "savedmodel_h5",
                                      "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
                                      "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]}),
    ("GET", "/v2/models/nope", 404, {"error": "Servable not found for request: Latest(nope)"}),
    ("GET", "/v2/models/dense/versions/v1", 404, {"error": "Servable not found for request: Specific(dense, v1)"}),
    ("POST", "/v2/models/nope/infer", 404, {"error": "Servable not found for request: Latest(nope)"}),
    ("POST", "/v2/models/dense/versions/3/infer", 404, {"error": "Servable not found for request: Specific(dense, 3)"}),
])
def test_health_metadata_and_lookup_errors(client: httpx.Client, method: str, path: str, status: int,
                                           body: dict) -> None:
    r = client.request(method, path, content=b'{"inputs": []}' if method == "POST" else None)
    assert r.status_code == status and r.json() == body


def test_model_list(client: httpx.Client) -> None:
    assert client.get("/v2/models").json() == {"models": sorted(
        ["classifier", "dense", "identity", "ints", "multi", "regressor", "scalar", "strings"])}


# -- tritonclient ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton_client(server: ServerProcess) -> triton.InferenceServerClient:
    c = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield c
    c.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer(triton_client: triton.InferenceServerClient, binary: bool) -> None:
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("y", binary_data=binary)
    result = triton_client.infer("dense", [inp], outputs=[out], model_version="1", request_id="r-1")
    np.testing.assert_allclose(result.as_numpy("y"), dense_expected(x, 0.0), rtol=1e-6)
    response = result.get_response()
    assert response["model_version"] == "1" and response["id"] == "r-1"
    # No requested outputs: tritonclient asks for binary_data_output; every output comes back.
    result = triton_client.infer("dense", [inp])
    np.testing.assert_allclose(result.as_numpy("y"), dense_expected(x, 100.0), rtol=1e-6)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_bytes_and_multiple_inputs(triton_client: triton.InferenceServerClient, binary: bool) -> None:
    text = np.array([b"foo", b"bar baz"], dtype=object)
    inp = triton.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(text, binary_data=binary)
    result = triton_client.infer("strings", [inp], outputs=[triton.InferRequestedOutput("echo", binary_data=binary)])
    echoed = [v if isinstance(v, bytes) else v.encode() for v in result.as_numpy("echo").tolist()]
    assert echoed == [b"foo", b"bar baz"]  # tritonclient gives str for JSON BYTES, bytes for binary

    a, c = np.ones((2, 3), np.float32), np.full((2, 3), 3, np.float32)
    inputs = [triton.InferInput("a", [2, 3], "FP32"), triton.InferInput("c", [2, 3], "FP32")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(c, binary_data=binary)
    result = triton_client.infer("multi", inputs)
    np.testing.assert_array_equal(result.as_numpy("sum"), a + c)
    np.testing.assert_array_equal(result.as_numpy("prod"), a * c)


def test_tritonclient_health_metadata_and_errors(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.is_model_ready("dense") and triton_client.is_model_ready("dense", "1")
    assert not triton_client.is_model_ready("dense", "5")
    assert triton_client.get_server_metadata()["extensions"] == ["binary_tensor_data", "classification"]
    meta = triton_client.get_model_metadata("multi")
    assert [i["name"] for i in meta["inputs"]] == ["a", "c"]
    inp = triton.InferInput("x", [1, 3], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match=r"Servable not found for request: Latest\(nope\)"):
        triton_client.infer("nope", [inp])
    bad = triton.InferInput("x", [1, 2], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 2), np.float32))
    with pytest.raises(InferenceServerException,
                       match=r"Input 'x' has shape \[1, 2\] but signature 'serving_default' expects \[-1, 3\]"):
        triton_client.infer("dense", [bad])
