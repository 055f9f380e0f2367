"""The server's TF.js routes, and the demo page in headless Chromium (Debian's chromium package)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

import savedmodel  # noqa: E402
from converters.web import format as fmt  # noqa: E402
from converters.web import read_model  # noqa: E402
from savedmodel import demo  # noqa: E402
from tests.converters.web_cases import transpose_case, two_input_graph  # noqa: E402

pytestmark = pytest.mark.web

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=60000"]


def _make_app(tmp: Path):
    from server.app import create_app
    from server.settings import ServerSettings

    savedmodel.save(two_input_graph(), tmp / "pair")
    savedmodel.save(transpose_case((4, 4, 2), 3, (3, 3), dilation_rate=[2, 2])(), tmp / "dilated")
    app = create_app(ServerSettings(models=[
        {"name": demo.NAME, "base_path": str(demo.BASE_PATH)}, {"name": "pair", "base_path": str(tmp / "pair")},
        {"name": "dilated", "base_path": str(tmp / "dilated")}]))
    return app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    with TestClient(_make_app(tmp_path_factory.mktemp("web_server"))) as c:
        yield c


def test_model_json_and_shards(client):
    r = client.get("/web/digits/versions/1/model.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["format"] == "layers-model"
    paths = doc["weightsManifest"][0]["paths"]
    shards = {p: client.get(f"/web/digits/versions/1/{p}") for p in paths}
    assert all(s.status_code == 200 and s.headers["content-type"] == "application/octet-stream"
               for s in shards.values())
    graph = read_model(doc, "model.json", lambda p: shards[p].content)
    x = demo.test_data()[0][:4].astype(np.float32)
    import runtime

    want = runtime.load(demo.BASE_PATH).predict(x)
    np.testing.assert_allclose(runtime.from_graph(graph).predict(x), want, rtol=0, atol=1e-6)


def test_latest_model_json_points_shards_at_its_version(client):
    doc = client.get("/web/digits/model.json").json()
    assert doc["weightsManifest"][0]["paths"] == ["versions/1/group1-shard1of1.bin"]
    assert client.get("/web/digits/model.json").headers["cache-control"] == "no-cache"
    assert client.get("/web/digits/versions/1/group1-shard1of1.bin").status_code == 200


def test_graph_model_fallback_is_served(client):
    doc = client.get("/web/pair/model.json").json()
    assert doc["format"] == "graph-model" and "signature" in doc


@pytest.mark.parametrize("url,status,match", [
    ("/web/nope/model.json", 404, r"Servable not found for request: Latest\(nope\)"),
    ("/web/digits/versions/7/model.json", 404, r"Servable not found for request: Specific\(digits, 7\)"),
    ("/web/digits/versions/x/model.json", 400, r"Failed to convert version: x to numeric"),
    ("/web/digits/versions/1/group1-shard9of9.bin", 404, r"Model digits version 1 has no TF.js file "
                                                         r"group1-shard9of9.bin"),
    ("/demo/nope", 404, r"Could not find any versions of model nope"),
    ("/web/dilated/model.json", 501, r"Model dilated version 1 cannot be served as a TF.js model: node 'out' "
                                     r"\(Conv2DTranspose\): TF.js' Conv2DBackpropInput has no dilation"),
])
def test_errors(client, url, status, match):
    r = client.get(url)
    assert r.status_code == status
    assert re.search(match, r.json()["error"])


def test_tfjs_is_served_from_the_npm_package(client):
    from server.web_routes import tfjs_dir

    if tfjs_dir() is None:
        r = client.get("/web/static/tf.min.js")
        assert r.status_code == 503 and "npm ci" in r.json()["error"]
        pytest.skip("@tensorflow/tfjs is not installed")
    r = client.get("/web/static/tf.min.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert b"tfjs" in r.content[:2000].lower() or len(r.content) > 500_000


def test_demo_page_and_data(client):
    page = client.get("/demo/digits")
    assert page.status_code == 200 and 'src="/web/static/tf.min.js"' in page.text
    assert not re.search(r"https?://(?!127\.0\.0\.1)", page.text)  # nothing from outside this server
    data = client.get("/demo/digits/data.json").json()
    assert data["model_url"] == "/web/digits/versions/1/model.json" and data["image"] is True
    assert np.asarray(data["inputs"][0]["values"]).shape == (8, 8, 8, 1)


# -- the page in a real browser ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    import uvicorn

    app = _make_app(tmp_path_factory.mktemp("web_live"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def _page_result(url: str) -> dict:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                              capture_output=True, text=True, timeout=180, check=False)
    m = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no result in the page (chromium exit {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


needs_browser = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed "
                                   "(scripts/test.sh installs Debian's package)")


@needs_browser
@pytest.mark.parametrize("backend", ["cpu", "webgl"])
def test_demo_page_in_chromium(live_server, backend):
    from server.web_routes import tfjs_dir

    if tfjs_dir() is None:
        pytest.skip("@tensorflow/tfjs is not installed")
    result = _page_result(f"{live_server}/demo/digits?backend={backend}")
    assert result["status"] == "done", result
    assert result["backend"] == backend and result["format"] == "layers-model"
    assert result["agree"] == result["count"] == 8
    assert result["max_abs_diff"] < 1e-5
    _, labels = demo.test_data()
    predicted = np.argmax(np.asarray(result["browser"]), axis=1)
    assert int(np.sum(predicted == labels[:8])) >= 7  # the demo model is ~98 % accurate


@needs_browser
def test_demo_page_runs_a_graph_model_in_chromium(live_server):
    from server.web_routes import tfjs_dir

    if tfjs_dir() is None:
        pytest.skip("@tensorflow/tfjs is not installed")
    result = _page_result(f"{live_server}/demo/pair?backend=cpu")
    assert result["status"] == "done", result
    assert result["format"] == fmt.FORMAT_GRAPH
    server = np.asarray(result["server"])
    assert result["max_abs_diff"] <= 1e-5 * max(1.0, float(np.max(np.abs(server))))
