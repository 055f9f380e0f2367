"""Dynamic batching through a real server: merged runs seen in the metrics, every caller gets its own rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import savedmodel
from tests.server.helpers import ServerProcess, dense_expected, dense_graph

PARAMS = """
max_batch_size { value: 8 }
batch_timeout_micros { value: 1000000 }
max_enqueued_batches { value: 1 }
num_batch_threads { value: 1 }
allowed_batch_sizes: 4
allowed_batch_sizes: 8
"""


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("batching")
    savedmodel.save(dense_graph(0.5), root / "m")
    (root / "batching.pbtxt").write_text(PARAMS)
    args = ["--model-name", "m", "--model-base-path", str(root / "m"), "--enable-batching",
            "--batching-parameters-file", str(root / "batching.pbtxt")]
    with ServerProcess(args, root) as server:
        yield server


def _metrics(url: str) -> dict[str, float]:
    text = httpx.get(url + "/monitoring/prometheus/metrics").text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def _concurrently(url: str, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    """Send all requests at once (threads released together); responses in request order."""
    start = threading.Barrier(len(requests))
    responses: list[httpx.Response | None] = [None] * len(requests)

    def send(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            start.wait()
            responses[i] = client.post(requests[i][0], json=requests[i][1])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return responses  # type: ignore[return-value]


def _rows(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-9, 9, size=(n, 3)).astype(np.float32)


def test_concurrent_requests_are_merged_and_split_back(batching_server: ServerProcess) -> None:
    before = _metrics(batching_server.url)
    inputs = [_rows(i, n) for i, n in enumerate((1, 2, 2, 3))]  # 8 rows: one full batch
    requests = []
    for i, x in enumerate(inputs):
        if i % 2:
            requests.append(("/v1/models/m:predict", {"instances": x.tolist()}))
        else:
            requests.append(("/v2/models/m/infer", {"inputs": [{"name": "x", "shape": list(x.shape),
                                                                "datatype": "FP32", "data": x.ravel().tolist()}]}))
    responses = _concurrently(batching_server.url, requests)
    for i, (x, r) in enumerate(zip(inputs, responses, strict=True)):
        assert r.status_code == 200, r.text
        got = r.json()["predictions"] if i % 2 else np.reshape(r.json()["outputs"][0]["data"], (-1, 2))
        np.testing.assert_array_equal(np.asarray(got, np.float32), dense_expected(x, 0.5))
    after = _metrics(batching_server.url)
    batches = after["serving_batch_size_requests_count{model=m}"] - before.get(
        "serving_batch_size_requests_count{model=m}", 0)
    merged = after["serving_batch_size_requests_sum{model=m}"] - before.get(
        "serving_batch_size_requests_sum{model=m}", 0)
    rows = after["serving_batch_size_rows_sum{model=m}"] - before.get("serving_batch_size_rows_sum{model=m}", 0)
    assert merged == 4 and rows == 8
    assert batches < 4, "no two requests were merged"


def test_a_bad_request_does_not_disturb_its_batch(batching_server: ServerProcess) -> None:
    before = _metrics(batching_server.url)
    good = [_rows(10 + i, 1) for i in range(3)]
    requests = [("/v1/models/m:predict", {"instances": x.tolist()}) for x in good]
    requests.insert(1, ("/v1/models/m:predict", {"instances": [[1, 2]]}))  # wrong shape
    responses = _concurrently(batching_server.url, requests)
    assert responses[1].status_code == 400
    assert responses[1].json() == {"error": "Input 'x' has shape [1, 2] but signature 'serving_default' expects "
                                            "[-1, 3]"}
    for x, r in zip(good, responses[:1] + responses[2:], strict=True):
        assert r.status_code == 200 and r.json() == {"predictions": dense_expected(x, 0.5).tolist()}
    after = _metrics(batching_server.url)
    padding = after.get("serving_batch_padding_rows_total{model=m}", 0) - before.get(
        "serving_batch_padding_rows_total{model=m}", 0)
    assert padding >= 1  # 3 rows padded up to the allowed batch size 4


def test_a_full_queue_answers_503(batching_server: ServerProcess) -> None:
    # Each request has 5 rows; the queue holds one batch of 8: whichever arrives second finds it full
    # while the first waits (up to batch_timeout_micros) for more rows.
    requests = [("/v1/models/m:predict", {"instances": _rows(20 + i, 5).tolist()}) for i in range(2)]
    responses = _concurrently(batching_server.url, requests)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 503]
    full = next(r for r in responses if r.status_code == 503)
    assert full.json() == {"error": "The batch scheduling queue to which this task was submitted is full"}
    metrics = _metrics(batching_server.url)
    assert metrics["serving_requests_total{api=predict,code=503,model=m,protocol=tfserving}"] >= 1

