"""The TF Serving REST API over HTTP: TF Serving's documented requests, responses and errors."""

from __future__ import annotations

import base64
import gzip
import json

import httpx
import numpy as np
import pytest

from tests.server.helpers import dense_expected

# (path, body, expected JSON text). Responses are compared as text: number formatting is part of the API.
PREDICTIONS = [
    ("/v1/models/dense:predict", {"instances": [[1, 2, 3], [4, 5, 6]]},
     '{"predictions":[[104.0,105.0],[110.0,111.0]]}'),
    ("/v1/models/dense:predict", {"inputs": [[1, 2, 3]]}, '{"outputs":[[104.0,105.0]]}'),
    ("/v1/models/dense:predict", {"inputs": {"x": [[1, 2, 3]]}}, '{"outputs":[[104.0,105.0]]}'),
    ("/v1/models/dense:predict", {"instances": [{"x": [1, 2, 3]}]}, '{"predictions":[[104.0,105.0]]}'),
    ("/v1/models/dense:predict", {"signature_name": "serving_default", "instances": [[1, 2.5, 3]], "other": 1},
     '{"predictions":[[104.0,105.5]]}'),  # other top-level keys are ignored, as TF Serving does
    ("/v1/models/dense/versions/1:predict", {"instances": [[1, 2, 3]]}, '{"predictions":[[4.0,5.0]]}'),
    ("/v1/models/dense/labels/stable:predict", {"instances": [[1, 2, 3]]}, '{"predictions":[[4.0,5.0]]}'),
    ("/v1/models/dense/labels/canary:predict", {"instances": [[1, 2, 3]]}, '{"predictions":[[104.0,105.0]]}'),
    ("/v1/models/multi:predict",
     {"instances": [{"a": [1, 2, 3], "c": [1, 1, 1]}, {"a": [0, 0, 0], "c": [2, 2, 2]}]},
     '{"predictions":[{"sum":[2.0,3.0,4.0],"prod":[1.0,2.0,3.0]},{"sum":[2.0,2.0,2.0],"prod":[0.0,0.0,0.0]}]}'),
    ("/v1/models/multi:predict", {"inputs": {"a": [[1, 2, 3]], "c": [[1, 1, 1]]}},
     '{"outputs":{"sum":[[2.0,3.0,4.0]],"prod":[[1.0,2.0,3.0]]}}'),
    ("/v1/models/strings:predict", {"instances": ["foo", {"b64": "aGVsbG8="}]},
     '{"predictions":[{"echo":"foo","echo_bytes":{"b64":"Zm9v"}},{"echo":"hello","echo_bytes":{"b64":"aGVsbG8="}}]}'),
    ("/v1/models/strings:predict", {"inputs": {"text": ["foo"]}},
     '{"outputs":{"echo":["foo"],"echo_bytes":[{"b64":"Zm9v"}]}}'),
    ("/v1/models/identity:predict", {"instances": [[0.1, 1e-5, 1435774380]]},
     '{"predictions":[[0.1,1e-05,1.43577434e+09]]}'),
    ("/v1/models/ints:predict", {"instances": [[1, -2]]}, '{"predictions":[[1,-2]]}'),
    ("/v1/models/scalar:predict", {"inputs": 5}, '{"outputs":5.0}'),
    ("/v1/models/classifier:classify", {"signature_name": "classification", "examples": [{"x": [2, 0]}]},
     '{"results":[[["cat",0.866813302],["dog",0.11731042],["bird",0.0158762392]]]}'),
    ("/v1/models/classifier:classify", {"signature_name": "classification", "context": {"x": [1, 1]},
                                        "examples": [{}, {"x": [0.5, 3]}]},
     '{"results":[[["cat",0.487855554],["dog",0.487855554],["bird",0.0242888965]],'
     '[["cat",0.0757529363],["dog",0.92285955],["bird",0.00138746318]]]}'),
    ("/v1/models/regressor:regress", {"signature_name": "regression", "examples": [{"x": [1, 2]}, {"x": [0.5, 0]}]},
     '{"results":[5.0,0.5]}'),
]


@pytest.mark.parametrize(("path", "body", "expected"), PREDICTIONS)
def test_predict_classify_regress(client: httpx.Client, path: str, body: dict, expected: str) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.text == expected


def test_nan_and_infinity_round_trip_as_tf_serving_writes_them(client: httpx.Client) -> None:
    r = client.post("/v1/models/identity:predict", content=b'{"instances": [[NaN, Infinity, -Infinity]]}')
    assert r.status_code == 200 and r.text == '{"predictions":[[NaN,Infinity,-Infinity]]}'


def test_gzip_request_body(client: httpx.Client) -> None:
    body = gzip.compress(json.dumps({"instances": [[1, 2, 3]]}).encode())
    r = client.post("/v1/models/dense:predict", content=body, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.text == '{"predictions":[[104.0,105.0]]}'


def test_large_batch_matches_the_runtime(client: httpx.Client) -> None:
    x = np.random.default_rng(1).integers(-50, 50, size=(300, 3)).astype(np.float32)
    r = client.post("/v1/models/dense:predict", json={"instances": x.tolist()})
    assert r.status_code == 200
    np.testing.assert_array_equal(np.array(r.json()["predictions"], np.float32), dense_expected(x, 100.0))


ERRORS = [
    # body shape
    ("/v1/models/dense:predict", b"", 400, "JSON Parse error: The document is empty"),
    ("/v1/models/dense:predict", b'{"instances": [[1,2,3]', 400,
     "JSON Parse error: Expecting ',' delimiter at offset: 22"),
    ("/v1/models/dense:predict", b"[1]", 400, "Is not object"),
    ("/v1/models/dense:predict", {}, 400, "Missing 'inputs' or 'instances' key"),
    ("/v1/models/dense:predict", {"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, 400,
     "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
    ("/v1/models/dense:predict", {"instances": 5}, 400, "Expecting 'instances' to be an list/array"),
    ("/v1/models/dense:predict", {"instances": []}, 400, "No values in 'instances' array"),
    ("/v1/models/dense:predict", {"signature_name": 5, "instances": [[1, 2, 3]]}, 400,
     "'signature_name' key must be a string value."),
    # values
    ("/v1/models/dense:predict", {"instances": [[1, 2, 3], [4, 5]]}, 400,
     "Encountered list at unexpected size: 2 at level: 1 expected size: 3"),
    ("/v1/models/dense:predict", {"instances": [["a", 2, 3]]}, 400,
     'JSON Value: "a" Type: String is not of expected type: float'),
    ("/v1/models/identity:predict", {"instances": [[{"b64": "aGk="}, 1, 2]]}, 400,
     'JSON Value: {"b64": "aGk="} Type: Object is not of expected type: float'),
    ("/v1/models/ints:predict", {"instances": [[1.5, 2]]}, 400,
     "JSON Value: 1.5 Type: Number is not of expected type: int32"),
    ("/v1/models/ints:predict", {"instances": [[3000000000, 2]]}, 400,
     "JSON Value: 3000000000 is out of range for type: int32"),
    ("/v1/models/strings:predict", {"instances": [{"b64": "aGVsbG8_"}]}, 400, 'Unable to base64 decode: "aGVsbG8_"'),
    ("/v1/models/strings:predict", {"instances": [1]}, 400,
     "JSON Value: 1 Type: Number is not of expected type: string"),
    # shapes
    ("/v1/models/dense:predict", {"instances": [[1, 2]]}, 400,
     "Input 'x' has shape [1, 2] but signature 'serving_default' expects [-1, 3]"),
    ("/v1/models/scalar:predict", {"instances": [5]}, 400,
     "Input 'x' has shape [1] but signature 'serving_default' expects []"),
    ("/v1/models/multi:predict", {"inputs": {"a": [[1, 2, 3]], "c": [[1, 1, 1], [1, 1, 1]]}}, 400,
     "Inputs have different batch sizes: a 1, c 2"),
    # names
    ("/v1/models/multi:predict", {"instances": [[1, 2, 3]]}, 400,
     "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
     "tensorinfo_map"),
    ("/v1/models/multi:predict", {"instances": [{"a": [1, 2, 3]}]}, 400,
     "Failed to process element: 0 of 'instances' list. JSON object: {\"a\": [1, 2, 3]} keys must be equal to: a,c"),
    ("/v1/models/multi:predict", {"inputs": [[1, 2, 3]]}, 400,
     "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
     "tensorinfo_map"),
    ("/v1/models/multi:predict", {"inputs": {"a": [[1, 2, 3]]}}, 400, "Missing named input: c in 'inputs' object."),
    ("/v1/models/multi:predict", {"inputs": {"a": [[1, 2, 3]], "c": [[1, 1, 1]], "d": 1}}, 400,
     "Unknown named input: d in 'inputs' object; the signature's inputs are: a,c"),
    # models, versions, labels, signatures, methods
    ("/v1/models/nope:predict", {"instances": [[1, 2, 3]]}, 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/dense/versions/7:predict", {"instances": [[1, 2, 3]]}, 404,
     "Servable not found for request: Specific(dense, 7)"),
    ("/v1/models/dense/versions/x:predict", {"instances": [[1, 2, 3]]}, 400,
     "Failed to convert version: x to numeric."),
    ("/v1/models/dense/labels/nope:predict", {"instances": [[1, 2, 3]]}, 400,
     "Unrecognized servable version label: nope"),
    ("/v1/models/dense:predict", {"signature_name": "nope", "instances": [[1, 2, 3]]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("/v1/models/dense:explain", {"instances": [[1, 2, 3]]}, 400, "Malformed request: POST /v1/models/dense:explain"),
    ("/v1/models/classifier:classify", {"examples": [{"x": [2, 0]}]}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify. "
     "Was: tensorflow/serving/predict"),
    ("/v1/models/regressor:classify", {"signature_name": "regression", "examples": [{"x": [1, 2]}]}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify. "
     "Was: tensorflow/serving/regress"),
    ("/v1/models/regressor:regress", {"examples": [{"x": [1, 2]}]}, 400,
     "Expected regression signature method_name to be tensorflow/serving/regress. Was: tensorflow/serving/predict"),
    # classify / regress payloads
    ("/v1/models/classifier:classify", {"signature_name": "classification"}, 400,
     "When method is classify, key 'examples' is expected and was not found"),
    ("/v1/models/regressor:regress", {"signature_name": "regression", "examples": {}}, 400,
     "Expecting 'examples' to be an list/array"),
    ("/v1/models/classifier:classify", {"signature_name": "classification", "examples": []}, 400,
     "No values in 'examples' array"),
    ("/v1/models/classifier:classify", {"signature_name": "classification", "examples": [{"x": [1, 2, 3]}]}, 400,
     "Feature: x of example 0 has 3 values; input 'x' needs 2 per example (shape [2])"),
    ("/v1/models/classifier:classify", {"signature_name": "classification", "examples": [{"x": ["a", 2]}]}, 400,
     "Unexpected element type in feature: x expecting type: float_list"),
    ("/v1/models/classifier:classify", {"signature_name": "classification", "examples": [{"y": [1, 2]}]}, 400,
     "Example 0 has no feature 'x' (and 'context' has none either); the signature's inputs are: x"),
    ("/v1/models/classifier:classify", {"signature_name": "classification", "examples": [1]}, 400,
     "Failed to process element: 0 of 'examples' list. Expecting a JSON object, got: 1"),
    ("/v1/models/classifier:classify", {"signature_name": "classification", "examples": [{"x": [1, None]}]}, 400,
     "Feature: x has a null value; expected numbers, strings or b64 objects"),
    ("/v1/models/classifier:classify", {"signature_name": "classification", "context": [], "examples": [{}]}, 400,
     "'context' must be a JSON object of features"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), ERRORS)
def test_predict_errors(client: httpx.Client, path: str, body: object, status: int, message: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(path, content=content)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": message}


def test_bad_gzip_body(client: httpx.Client) -> None:
    r = client.post("/v1/models/dense:predict", content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert r.json() == {"error": "Cannot decompress the gzip request body: Error -3 while decompressing data: "
                                 "incorrect header check"}
    r = client.post("/v1/models/dense:predict", content=b"{}", headers={"Content-Encoding": "br"})
    assert r.json() == {"error": "Unsupported Content-Encoding: br; supported: gzip, deflate, identity"}


# -- status and metadata -------------------------------------------------------------------------------------


def _status(version: str) -> dict:
    return {"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/models/dense", {"model_version_status": [_status("2"), _status("1")]}),
    ("/v1/models/dense/versions/1", {"model_version_status": [_status("1")]}),
    ("/v1/models/dense/labels/stable", {"model_version_status": [_status("2"), _status("1")]}),
])
def test_model_status(client: httpx.Client, path: str, expected: dict) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.json() == expected


@pytest.mark.parametrize(("method", "path", "status", "message"), [
    ("GET", "/v1/models", 400, "Missing model name in request."),
    ("GET", "/v1/models/nope", 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/dense/versions/9", 404, "Could not find version 9 of model dense"),
    ("GET", "/v1/models/dense/versions/9/metadata", 404, "Servable not found for request: Specific(dense, 9)"),
    ("GET", "/v1/models/dense/labels/nope/metadata", 400, "Unrecognized servable version label: nope"),
    ("GET", "/v1/models/dense:predict", 400, "Malformed request: GET /v1/models/dense:predict"),
    ("POST", "/v1/models/dense", 400, "Malformed request: POST /v1/models/dense"),
    ("GET", "/v1/something/else", 400, "Malformed request: GET /v1/something/else"),
    ("GET", "/elsewhere", 404, "Not Found"),
    ("DELETE", "/v2/health/live", 405, "Method Not Allowed"),
])
def test_status_and_routing_errors(client: httpx.Client, method: str, path: str, status: int, message: str) -> None:
    r = client.request(method, path)
    assert r.status_code == status and r.json() == {"error": message}


def test_metadata_in_tf_servings_json_shape(client: httpx.Client) -> None:
    r = client.get("/v1/models/dense/labels/stable/metadata")
    assert r.status_code == 200
    assert r.json() == {
        "model_spec": {"name": "dense", "signature_name": "", "version": "1"},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": {"x": {"dtype": "DT_FLOAT", "name": "x", "tensor_shape": {
                "dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}], "unknown_rank": False}}},
            "outputs": {"y": {"dtype": "DT_FLOAT", "name": "y", "tensor_shape": {
                "dim": [{"size": "-1", "name": ""}, {"size": "2", "name": ""}], "unknown_rank": False}}},
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }}}},
    }
    sigs = client.get("/v1/models/classifier/metadata").json()["metadata"]["signature_def"]["signature_def"]
    assert sigs["classification"]["method_name"] == "tensorflow/serving/classify"
    strings = client.get("/v1/models/strings/versions/1/metadata").json()
    assert strings["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["text"]["dtype"] == \
        "DT_STRING"


def test_b64_strings_decode_to_the_same_bytes(client: httpx.Client) -> None:
    raw = bytes(range(256))
    r = client.post("/v1/models/strings:predict",
                    json={"instances": [{"b64": base64.b64encode(raw).decode()}]})
    assert r.status_code == 200
    assert base64.b64decode(r.json()["predictions"][0]["echo_bytes"]["b64"]) == raw
    assert r.json()["predictions"][0]["echo"] == {"b64": base64.b64encode(raw).decode()}  # not UTF-8
