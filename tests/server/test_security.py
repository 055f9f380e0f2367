"""API keys on every route of the real app, rate limits, tensor size limits and TLS with a self-signed certificate."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from server.app import create_app
from server.cli import add_arguments, run, settings_from_args
from server.config import ConfigError
from server.metrics import path_labels
from server.security import OPEN_PATHS, ApiKeys, RateLimiter, hash_api_key, read_api_key_file
from server.settings import ModelConfig, ServerSettings
from tests.server.helpers import ROOT, ServerProcess, dense_expected, free_port, wait_for

KEY = "k3y-for-tests-0123456789abcdef"
OTHER_KEY = "another-key-for-the-second-client"
ROW = [[1.0, 2.0, 3.0]]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}]}
# Values for every path parameter of the app's routes, so that each route can be called.
PATH_VALUES = {"name": "dense", "version": "1", "label": "stable", "method": "predict", "shard": "group1-shard1of1.bin",
               "rest": "anything"}
MISSING = {"error": "Missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"}
INVALID = {"error": "Invalid API key"}


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text(f"# keys of the test clients\n\n{KEY}\n  {OTHER_KEY}  \n")
    return path


def _settings(model_paths: dict[str, Path], **fields: Any) -> ServerSettings:
    models = [ModelConfig(name=name, base_path=model_paths[name]) for name in ("dense", "identity")]
    return ServerSettings(models=models, file_system_poll_wait_seconds=0, **fields)


@pytest.fixture(scope="module")
def secured(model_paths: dict[str, Path], key_file: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(model_paths, api_key_file=key_file))) as client:
        yield client


def _flat_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path prefix, route) of every route, inside included routers too (FastAPI nests them)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat_routes(included.routes, prefix + route.include_context.prefix)
        else:
            yield prefix, route


def _routes(app: Any) -> list[tuple[str, str]]:
    """(method, concrete path) for every method of every route the app has, path parameters filled in."""
    calls = []
    for prefix, route in _flat_routes(app.router.routes):
        methods = sorted(route.methods - {"HEAD"}) if getattr(route, "methods", None) else ["GET"]
        path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PATH_VALUES[m.group(1)], prefix + route.path)
        calls += [(method, path) for method in methods]
    return calls


def _body(path: str) -> dict[str, Any] | None:
    if path.startswith("/v2/"):
        return V2_BODY
    if path.startswith("/v1/"):
        return {"instances": ROW}
    return None


def test_every_route_but_health_needs_a_key(secured: TestClient) -> None:
    calls = _routes(secured.app)
    assert len(calls) > 20  # the route table really was enumerated
    protected = [(m, p) for m, p in calls if p not in OPEN_PATHS]
    assert {p for _, p in calls} - {p for _, p in protected} == OPEN_PATHS
    for method, path in protected:
        body = _body(path) if method == "POST" else None
        missing = secured.request(method, path, json=body)
        assert (missing.status_code, missing.json()) == (401, MISSING), (method, path)
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = secured.request(method, path, json=body, headers={"Authorization": "Bearer not-" + KEY})
        assert (wrong.status_code, wrong.json()) == (403, INVALID), (method, path)
        right = secured.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert right.status_code not in (401, 403), (method, path, right.text)
    for path in OPEN_PATHS:
        assert secured.get(path).status_code == 200


def test_right_key_in_either_header_gets_the_answer(secured: TestClient) -> None:
    expected = dense_expected(ROW, 100.0)
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": OTHER_KEY},
                    {"authorization": f"bearer   {KEY} "}):
        r = secured.post("/v1/models/dense:predict", json={"instances": ROW}, headers=headers)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(np.array(r.json()["predictions"], np.float32), expected)
        r = secured.post("/v2/models/dense/infer", json=V2_BODY, headers=headers)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32), expected.ravel())
    # Paths the router does not know still need the key: a 404 must not reveal what exists to strangers.
    assert secured.get("/nothing-here").status_code == 401
    assert secured.get("/nothing-here", headers={"X-API-Key": KEY}).status_code == 404


def test_key_errors(secured: TestClient) -> None:
    r = secured.get("/v2/models/dense", headers={"Authorization": f"Basic {KEY}"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"error": "The Authorization header must use the Bearer scheme ('Authorization: Bearer <key>'); "
                                 "received the scheme 'Basic'"}
    assert secured.get("/v2/models/dense", headers={"Authorization": "Bearer "}).json() == MISSING
    assert secured.get("/v2/models/dense", headers={"X-API-Key": KEY[:-1]}).status_code == 403
    # The Bearer header wins over X-API-Key, so a wrong bearer key is refused even next to a right X-API-Key.
    both = secured.get("/v2/models/dense", headers={"Authorization": "Bearer wrong", "X-API-Key": KEY})
    assert both.status_code == 403


def test_cors_preflight_needs_no_key_and_refusals_carry_cors_headers(model_paths: dict[str, Path],
                                                                    key_file: Path) -> None:
    with TestClient(create_app(_settings(model_paths, api_key_file=key_file, enable_cors=True))) as client:
        preflight = client.options("/v1/models/dense:predict", headers={"Origin": "https://example.org"})
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "*"
        refused = client.post("/v1/models/dense:predict", json={"instances": ROW})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"


def _request_counts(client: TestClient, headers: dict[str, str]) -> dict[tuple[str, str, str, str], float]:
    """serving_requests_total by (model, protocol, api, code)."""
    text = client.get("/monitoring/prometheus/metrics", headers=headers).text
    return {(s.labels["model"], s.labels["protocol"], s.labels["api"], s.labels["code"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "serving_requests_total"}


def test_refused_requests_are_counted_under_the_route_labels(model_paths: dict[str, Path], key_file: Path) -> None:
    settings = _settings(model_paths, api_key_file=key_file, rate_limit=0.1, rate_limit_burst=1)
    with TestClient(create_app(settings)) as client:
        client.post("/v1/models/dense:predict", json={"instances": ROW})  # 401
        client.post("/v1/models/dense:predict", json={"instances": ROW}, headers={"X-API-Key": "wrong"})  # 403
        client.get("/v2/models/dense/versions/1/ready")  # 401
        client.get("/v1/models/nope/metadata")  # 401, a model that is not served
        client.get("/nothing-here")  # 401, no model in the path: not a model request
        key = {"X-API-Key": KEY}
        assert client.post("/v2/models/dense/infer", json=V2_BODY, headers=key).status_code == 200
        assert client.post("/v2/models/dense/infer", json=V2_BODY, headers=key).status_code == 429
        counts = _request_counts(client, {"X-API-Key": OTHER_KEY})
    assert counts[("dense", "tfserving", "predict", "401")] == 1
    assert counts[("dense", "tfserving", "predict", "403")] == 1
    assert counts[("dense", "v2", "ready", "401")] == 1
    assert counts[("_unknown", "tfserving", "metadata", "401")] == 1
    assert counts[("dense", "v2", "infer", "200")] == 1
    assert counts[("dense", "v2", "infer", "429")] == 1
    assert sum(counts.values()) == 6


def test_path_labels_are_the_routes_labels(model_paths: dict[str, Path]) -> None:
    """Each model route, reached with a wrong input, labels its request itself; path_labels must agree."""
    paths = {"/v1/models/dense": "GET", "/v1/models/dense/versions/1": "GET", "/v1/models/dense/labels/stable": "GET",
             "/v1/models/dense/metadata": "GET", "/v1/models/dense/versions/1/metadata": "GET",
             "/v1/models/dense:predict": "POST", "/v1/models/dense:classify": "POST",
             "/v1/models/dense/versions/1:regress": "POST", "/v2/models/dense": "GET",
             "/v2/models/dense/versions/1": "GET", "/v2/models/dense/ready": "GET",
             "/v2/models/dense/versions/1/ready": "GET", "/v2/models/dense/infer": "POST",
             "/v2/models/dense/versions/1/infer": "POST"}
    with TestClient(create_app(_settings(model_paths))) as client:
        for path, method in paths.items():
            client.request(method, path, content=b"{" if method == "POST" else None)
        counted = {labels[:3] for labels in _request_counts(client, {})}
    assert counted == {path_labels(path) for path in paths}
    assert path_labels("/v1/models") is None and path_labels("/v2/health/live") is None


def test_key_file_format_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# comment\n\n one \n#two\nthree\n")
    assert read_api_key_file(path) == tuple(hashlib.sha256(k.encode()).hexdigest() for k in ("one", "three"))
    path.write_text("# only a comment\n\n")
    with pytest.raises(ConfigError, match="the API key file holds no key"):
        read_api_key_file(path)
    with pytest.raises(ConfigError, match=r"missing\.txt: cannot read the API key file"):
        read_api_key_file(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match=r"API key digests must be 64 lowercase hex digits \(SHA-256\); "
                                         "received 'abc'"):
        ApiKeys(["abc"])
    with pytest.raises(ValueError, match="ApiKeys needs at least one key digest"):
        ApiKeys([])


def test_embedders_give_digests(model_paths: dict[str, Path]) -> None:
    settings = _settings(model_paths, api_key_digests=(hash_api_key(KEY),))
    with TestClient(create_app(settings)) as client:
        assert client.get("/v2/models/dense").status_code == 401
        assert client.get("/v2/models/dense", headers={"X-API-Key": KEY}).status_code == 200
    with pytest.raises(ValidationError, match="api_key_digests must be SHA-256 digests as 64 lowercase hex digits "
                                              r"\(server.security.hash_api_key\); received 'not-hex'"):
        _settings(model_paths, api_key_digests=("not-hex",))


def test_rate_limiter_buckets() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0], max_clients=2)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(1 / limiter.rate)  # empty: one token takes 1/rate seconds
    assert limiter.acquire("b") == 0.0  # buckets are per client
    now[0] += 0.5  # refills rate * 0.5 = 1 token
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(1 / limiter.rate)
    limiter.acquire("c")  # a third client: over max_clients, the full bucket of 'b' is dropped first
    assert set(limiter._buckets) == {"a", "c"}
    with pytest.raises(ValueError, match=r"a rate limit needs rate > 0 and burst >= 1; received rate=0, burst=1"):
        RateLimiter(0, 1)


def test_rate_limit_answers_429_per_client(model_paths: dict[str, Path], key_file: Path) -> None:
    settings = _settings(model_paths, api_key_file=key_file, rate_limit=0.2, rate_limit_burst=2)
    with TestClient(create_app(settings)) as client:
        first = {"X-API-Key": KEY}
        assert [client.get("/v2/models/dense", headers=first).status_code for _ in range(2)] == [200, 200]
        limited = client.post("/v1/models/dense:predict", json={"instances": ROW}, headers=first)
        assert limited.status_code == 429
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 5  # one token at 0.2/s takes at most 5 s
        assert limited.json() == {"error": f"Rate limit exceeded: at most 0.2 requests per second (bursts of 2) per "
                                           f"client; retry after {retry_after} s"}
        assert client.get("/v2/models/dense", headers={"X-API-Key": OTHER_KEY}).status_code == 200
        assert all(client.get("/v2/health/ready").status_code == 200 for _ in range(5))  # probes are not counted
    assert ServerSettings(rate_limit=2.5).burst == 3 and ServerSettings(rate_limit=0.1).burst == 1


def test_rate_limit_by_address_without_keys(model_paths: dict[str, Path]) -> None:
    with TestClient(create_app(_settings(model_paths, rate_limit=0.1, rate_limit_burst=1))) as client:
        assert client.get("/v2/models/dense").status_code == 200
        r = client.get("/v2/models/dense")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_max_tensor_elements(model_paths: dict[str, Path]) -> None:
    with TestClient(create_app(_settings(model_paths, max_tensor_elements=5))) as client:
        r = client.post("/v1/models/dense:predict", json={"instances": ROW})
        assert r.status_code == 200
        np.testing.assert_array_equal(np.array(r.json()["predictions"], np.float32), dense_expected(ROW, 100.0))
        r = client.post("/v1/models/dense:predict", json={"instances": ROW * 2})
        assert (r.status_code, r.json()) == (413, {"error": "Input 'x' has 6 elements (shape [2, 3]); the server "
                                                            "accepts at most 5 elements per input tensor"})
        body = {"inputs": [{**V2_BODY["inputs"][0], "shape": [2, 3], "data": [1.0] * 6}]}
        r = client.post("/v2/models/dense/infer", json=body)
        assert r.status_code == 413 and r.json()["error"].startswith("Input 'x' has 6 elements")


def test_security_flags(key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not checked here")
    settings = settings_from_args(_parse("--api-key-file", str(key_file), "--rate-limit", "5", "--rate-limit-burst",
                                         "10", "--max-tensor-elements", "1000", "--ssl-certfile", str(cert),
                                         "--graceful-shutdown-timeout", "3"))
    assert (settings.api_key_file, settings.rate_limit, settings.burst) == (key_file.resolve(), 5.0, 10)
    assert (settings.max_tensor_elements, settings.ssl_certfile, settings.ssl_keyfile) == (1000, cert.resolve(), None)
    assert settings.graceful_shutdown_timeout == 3.0
    dumped = settings.model_dump_json()  # what worker processes receive: the file's path, not the keys
    assert json.loads(dumped)["api_key_file"] == str(key_file.resolve()) and KEY not in dumped
    assert ServerSettings.model_validate_json(dumped) == settings
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    cases = [
        (["--ssl-keyfile", str(cert)], "error: --ssl-keyfile needs --ssl-certfile"),
        (["--ssl-certfile", str(tmp_path / "nope.pem")],
         f"error: --ssl-certfile {tmp_path / 'nope.pem'} is not a file"),
        (["--api-key-file", str(empty)], f"error: {empty}: the API key file holds no key (expected one key per line; "
                                         "'#' starts a comment)"),
    ]
    for argv, message in cases:
        assert run(_parse(*argv)) == 2
        assert capsys.readouterr().err.strip() == message
    with pytest.raises(ValidationError, match="ssl_keyfile needs ssl_certfile"):
        ServerSettings(ssl_keyfile=cert)


def test_keys_reach_every_worker(key_file: Path, tmp_path: Path) -> None:
    """With --workers the key file travels by path; every process refuses strangers and serves key holders."""
    with ServerProcess(["--workers", "2", "--api-key-file", str(key_file)], tmp_path, "workers") as server:
        for _ in range(6):  # fresh connections, so both workers answer some
            assert httpx.get(server.url + "/v2/models/digits").status_code == 401
            assert httpx.get(server.url + "/v2/models/digits", headers={"X-API-Key": KEY}).status_code == 200


def test_metrics_sum_every_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under --workers every scrape counts the requests all workers answered, whichever worker answers it; the
    shared directory is removed at exit."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # where the server makes its metrics directory
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with ServerProcess(["--workers", "2"], tmp_path, "workers-metrics") as server:
        (directory,) = temp.glob("savedmodel-metrics-*")
        sent = 0
        while len(list(directory.glob("counter_*.db"))) < 2 and sent < 200:  # until both workers counted some
            assert httpx.get(server.url + "/v2/models/digits").status_code == 200  # a fresh connection each
            sent += 1
        assert len(list(directory.glob("counter_*.db"))) == 2, f"one worker answered all {sent} requests"
        for _ in range(4):
            text = httpx.get(server.url + "/monitoring/prometheus/metrics").text
            counts = [s.value for family in text_string_to_metric_families(text) for s in family.samples
                      if s.name == "serving_requests_total" and s.labels == {
                          "model": "digits", "protocol": "v2", "api": "metadata", "code": "200"}]
            assert counts == [float(sent)], text
    assert not directory.exists()


# -- TLS ------------------------------------------------------------------------------------------------

def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key, made with cryptography."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_a_self_signed_certificate(tmp_path: Path, key_file: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    log = open(tmp_path / "tls.log", "wb")  # noqa: SIM115 - the child writes it until the end of the test
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
         "--api-key-file", str(key_file)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    log.close()
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trusted, timeout=10) as client:
            wait_for(lambda: client.get("/v2/health/live").status_code == 200, timeout=60, what="the TLS server")
            r = client.post("/v1/models/digits:predict", json={"instances": [np.zeros((8, 8, 1)).tolist()]},
                            headers={"Authorization": f"Bearer {KEY}"})
            assert r.status_code == 200 and len(r.json()["predictions"][0]) == 10
            assert client.get("/v2/models/digits").status_code == 401  # keys still apply over TLS
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/v2/health/live")  # the system CAs do not know the certificate
        with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected without sending a response"):
            httpx.get(f"http://127.0.0.1:{port}/v2/health/live")  # plain HTTP to the TLS port gets no answer
    finally:
        proc.terminate()
        proc.wait(30)
    log = (tmp_path / "tls.log").read_text()
    assert proc.returncode == 0, log
    assert f"Serving the demo model 'digits' (8x8 handwritten digits) at https://127.0.0.1:{port}" in log
