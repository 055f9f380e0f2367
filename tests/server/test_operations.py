"""Operations: metrics, CORS, body limit, request timeout, OpenAPI docs, access log."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import savedmodel
from tests.server.helpers import ServerProcess, slow_graph, wait_for

LIMIT = 100_000


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """CORS on, a 100 kB body limit and a 1 ms inference timeout, serving a slow model."""
    root = tmp_path_factory.mktemp("limited")
    savedmodel.save(slow_graph(), root / "slow")
    args = ["--model-name", "slow", "--model-base-path", str(root / "slow"), "--enable-cors",
            "--max-body-bytes", str(LIMIT), "--rest-api-timeout-in-ms", "1"]
    with ServerProcess(args, root, "limited") as server:
        yield server


def test_metrics_count_requests_by_model_and_status(client: httpx.Client) -> None:
    client.post("/v1/models/dense:predict", json={"instances": [[1, 2, 3]]})
    client.post("/v1/models/dense:predict", json={"instances": [[1, 2]]})
    client.post("/v2/models/dense/infer", json={"inputs": []})
    for i in range(3):  # names that are not served share one label
        client.post(f"/v1/models/nope{i}:predict", json={"instances": [[1, 2, 3]]})
    r = client.get("/monitoring/prometheus/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    key = ("serving_requests_total", (("api", "predict"), ("code", "200"), ("model", "dense"),
                                      ("protocol", "tfserving")))
    assert samples[key] >= 1
    assert samples[("serving_requests_total", (("api", "predict"), ("code", "400"), ("model", "dense"),
                                               ("protocol", "tfserving")))] >= 1
    assert samples[("serving_requests_total", (("api", "infer"), ("code", "400"), ("model", "dense"),
                                               ("protocol", "v2")))] >= 1
    assert samples[("serving_request_latency_seconds_count", (("api", "predict"), ("model", "dense"),
                                                              ("protocol", "tfserving")))] >= 1
    assert samples[("serving_requests_total", (("api", "predict"), ("code", "404"), ("model", "_unknown"),
                                               ("protocol", "tfserving")))] >= 3
    assert not any(dict(labels).get("model", "").startswith("nope") for _, labels in samples)
    assert samples[("serving_model_versions", (("model", "dense"), ("state", "AVAILABLE")))] == 2
    assert samples[("serving_model_versions", (("model", "dense"), ("state", "END")))] == 0



def _model_samples(client: httpx.Client, model: str) -> dict[str, float]:
    """The runtime and request latency sums and counts of ``model``, summed over the other labels."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/monitoring/prometheus/metrics").text):
        for s in family.samples:
            if s.labels.get("model") == model and s.name.endswith(("_sum", "_count")):
                totals[s.name] = totals.get(s.name, 0.0) + s.value
    return totals


def test_runtime_latency_times_each_model_call_within_its_request(client: httpx.Client) -> None:
    before = _model_samples(client, "dense")
    for _ in range(3):
        assert client.post("/v1/models/dense:predict", json={"instances": [[1, 2, 3]]}).status_code == 200
    assert client.post("/v2/models/dense/infer", json={"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).status_code == 200
    assert client.post("/v1/models/dense:predict", json={"instances": [[1, 2]]}).status_code == 400  # no model call
    after = _model_samples(client, "dense")

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta("serving_runtime_latency_seconds_count") == 4
    assert delta("serving_request_latency_seconds_count") == 4  # successful requests only
    # Each model call runs inside its request: the model's time is part of the request's.
    assert 0 < delta("serving_runtime_latency_seconds_sum") < delta("serving_request_latency_seconds_sum")


def test_openapi_docs_list_both_protocols(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/models/{name}:{method}", "/v1/models/{name}/versions/{version}:{method}",
                 "/v1/models/{name}/metadata", "/v2/models/{name}/infer", "/v2/health/ready",
                 "/monitoring/prometheus/metrics"):
        assert path in paths, path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_access_log(client: httpx.Client, server: ServerProcess) -> None:
    get = ' - "GET /v1/models/dense/versions/2?probe=access-log HTTP/1.1" 200 OK\n'
    post = re.compile(r'^INFO:     127\.0\.0\.1:\d+ - "POST /v1/models/dense%3Apredict HTTP/1\.1" 400 Bad Request$',
                      re.MULTILINE)  # uvicorn's line; it quotes the path
    client.get("/v1/models/dense/versions/2?probe=access-log")
    started = time.monotonic()
    wait_for(lambda: get in server.log(), timeout=5, what="the access log line")
    assert time.monotonic() - started < 1  # flushed within FLUSH_SECONDS (server.accesslog), not at exit
    client.post("/v1/models/dense:predict", content=b"{")
    wait_for(lambda: post.search(server.log()), timeout=5, what="the access log line of a 400")


def test_cors_headers_and_preflight(limited: ServerProcess) -> None:
    r = httpx.get(limited.url + "/v1/models/slow")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "POST, GET"
    assert r.headers["access-control-allow-headers"] == "Content-Type"
    r = httpx.options(limited.url + "/v1/models/slow:predict", headers={"Origin": "https://example.org"})
    assert r.status_code == 200 and r.content == b"" and r.headers["access-control-allow-origin"] == "*"
    r = httpx.options(limited.url + "/v1/models/slow:predict")
    assert r.status_code == 400 and r.json() == {"error": "Origin header is missing in CORS preflight"}


def test_oversize_body_is_413(limited: ServerProcess) -> None:
    body = json.dumps({"instances": [[0.5] * 1024] * 40}).encode()
    r = httpx.post(limited.url + "/v1/models/slow:predict", content=body)
    assert r.status_code == 413
    assert r.json() == {"error": f"Request body of {len(body)} bytes is larger than the limit of {LIMIT} bytes"}
    assert r.headers["access-control-allow-origin"] == "*"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
        for _ in range(30):
            yield b" " * 5000

    r = httpx.post(limited.url + "/v2/models/slow/infer", content=chunks())
    assert r.status_code == 413
    assert r.json() == {"error": f"Request body is larger than the limit of {LIMIT} bytes"}


def test_slow_inference_times_out_with_504_and_the_server_carries_on(limited: ServerProcess) -> None:
    body = json.dumps({"inputs": [[0] * 1024] * 32}, separators=(",", ":")).encode()
    r = httpx.post(limited.url + "/v1/models/slow:predict", content=body, timeout=60)
    assert r.status_code == 504 and r.json() == {"error": "Request timed out after 1 ms"}
    assert httpx.get(limited.url + "/v2/health/ready").status_code == 200
