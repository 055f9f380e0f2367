"""Server benchmarks: requests/s and latency of our server, side by side with MLServer.

For the demo model (8x8 digits CNN) and a small 28x28 CNN, one row per
request, at 1, 8 and 64 concurrent clients, with batching off and on:

- our server over TF Serving REST JSON, KServe V2 JSON and V2 binary tensors;
- MLServer (if importable from ``--mlserver-python``, default
  /tmp/mlserver-venv/bin/python) serving the *same* bundles through a custom
  MLServer runtime that calls our ``runtime``, over V2 JSON (the protocol
  both speak), with its adaptive batching for "batching on". So the
  comparison is server against server on the same model code.

Every scenario is driven by the same load generator: a separate process
with one keep-alive HTTP/1.1 connection per client, each sending the same
pre-built request in a closed loop. The first response of each scenario is
checked against the runtime's own prediction.

Also reported: the server overhead per request at one client, i.e. the p50
latency minus the in-process time of the signature call on the same input;
and, for our server, the p50 latency minus the model's own time in the
server during that scenario (the mean of ``serving_runtime_latency_seconds``
over the scenario's requests), which does not depend on the model running as
fast inside the server as in the best in-process run.

Run from the repository root with the server extra installed:

    .venv/bin/python bench/bench_server.py [--duration 3] [--json out.json] [--no-mlserver]

or one part of it, e.g. the CNN with batching at 8 clients:

    .venv/bin/python bench/bench_server.py --models cnn --clients 8 --batching on

MLServer is not a dependency of this project; to compare with it, install
it into a separate virtual environment, e.g.
``python3 -m venv /tmp/mlserver-venv && /tmp/mlserver-venv/bin/pip install mlserver h5py "uvloop<0.22"``
(MLServer 1.7's worker processes call ``asyncio.get_event_loop()``, which newer uvloop refuses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONCURRENCY = (1, 8, 64)

# The MLServer runtime: a module written into MLServer's model directory at run time.
MLSERVER_RUNTIME = '''
"""An MLServer runtime that runs a savedmodel bundle with this project's numpy runtime."""

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

import runtime


class BundleRuntime(MLModel):
    async def load(self) -> bool:
        self._fn = runtime.load(self.settings.parameters.uri).signatures["serving_default"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {item.name: NumpyCodec.decode_input(item) for item in payload.inputs}
        outputs = self._fn(**inputs)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(name, value) for name, value in outputs.items()],
        )
'''


# -- models and payloads ------------------------------------------------------------------------------


def build_cnn(base: Path) -> Path:
    """A small MNIST-shaped CNN with random weights (the bench measures serving, not accuracy)."""
    import savedmodel
    from savedmodel import GraphBuilder

    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))).astype(np.float32)

    b = GraphBuilder()
    x = b.input("image", (None, 28, 28, 1))
    h = b.op("Conv2D", x, filters=16, kernel_size=[3, 3], padding="same", activation="relu", kernel=w(3, 3, 1, 16),
             bias=np.zeros(16, np.float32))
    h = b.op("MaxPooling2D", h, pool_size=[2, 2], strides=[2, 2])
    h = b.op("Conv2D", h, filters=32, kernel_size=[3, 3], padding="same", activation="relu", kernel=w(3, 3, 16, 32),
             bias=np.zeros(32, np.float32))
    h = b.op("MaxPooling2D", h, pool_size=[2, 2], strides=[2, 2])
    h = b.op("Flatten", h)
    h = b.op("Dense", h, units=64, activation="relu", kernel=w(7 * 7 * 32, 64), bias=np.zeros(64, np.float32))
    y = b.op("Dense", h, units=10, activation="softmax", kernel=w(64, 10), bias=np.zeros(10, np.float32),
             name="probs")
    return savedmodel.save(b.build(y), base).parent.parent


def build_digits_twin(base: Path) -> Path:
    """The demo model's architecture with random weights: a stand-in when the demo file cannot be read."""
    import savedmodel
    from savedmodel import GraphBuilder

    rng = np.random.default_rng(2)
    b = GraphBuilder()
    x = b.input("image", (None, 8, 8, 1))
    h = b.op("Rescaling", x, scale=1 / 16.0, offset=0.0)
    h = b.op("Conv2D", h, filters=16, kernel_size=[3, 3], padding="same",
             kernel=rng.standard_normal((3, 3, 1, 16)).astype("f4") / 3, bias=np.zeros(16, "f4"))
    h = b.op("BatchNormalization", h, epsilon=1e-3, gamma=np.ones(16, "f4"), beta=np.zeros(16, "f4"),
             moving_mean=np.zeros(16, "f4"), moving_variance=np.ones(16, "f4"))
    h = b.op("ReLU", h)
    h = b.op("MaxPooling2D", h, pool_size=[2, 2], strides=[2, 2])
    h = b.op("Conv2D", h, filters=32, kernel_size=[3, 3], padding="same", activation="relu",
             kernel=rng.standard_normal((3, 3, 16, 32)).astype("f4") / 12, bias=np.zeros(32, "f4"))
    h = b.op("GlobalAveragePooling2D", h)
    y = b.op("Dense", h, units=10, activation="softmax", kernel=rng.standard_normal((32, 10)).astype("f4") / 6,
             bias=np.zeros(10, "f4"), name="probs")
    return savedmodel.save(b.build(y), base).parent.parent


@dataclass
class Model:
    name: str
    base: Path
    input_name: str
    x: np.ndarray  # one row
    expected: np.ndarray = field(default_factory=lambda: np.zeros(0))
    predict_seconds: float = 0.0


def prepare_models(work: Path, names: list[str] | None = None) -> list[Model]:
    """The benchmark models (all, or those named), with their expected outputs and in-process call time."""
    import runtime
    from savedmodel import demo
    from savedmodel.errors import SavedModelError

    images, _labels = demo.test_data()
    digits = demo.BASE_PATH
    try:
        runtime.load(digits)
    except SavedModelError as e:
        print(f"the demo model cannot be read ({e}); using its architecture with random weights")
        digits = build_digits_twin(work / "digits")
    models = [Model("digits", digits, "image", images[:1].astype(np.float32))]
    if names is None or "cnn" in names:
        models.append(Model("cnn", build_cnn(work / "cnn"), "image",
                            np.random.default_rng(1).uniform(0, 1, (1, 28, 28, 1)).astype(np.float32)))
    models = [m for m in models if names is None or m.name in names]
    if not models:
        raise SystemExit(f"no model named {names}; known: digits, cnn")
    for m in models:
        fn = runtime.load(m.base).signatures["serving_default"]
        m.expected = next(iter(fn(**{m.input_name: m.x}).values()))
        m.predict_seconds = predict_time(fn, {m.input_name: m.x})
    return models


def predict_time(fn: object, inputs: dict[str, np.ndarray], rounds: int = 7, calls: int = 50) -> float:
    """The in-process time of one signature call: the best of several medians (the machine may be busy).

    With one BLAS thread, as both servers run their models (see start_mlserver).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _best_median(fn, inputs, rounds, calls)


def _best_median(fn: object, inputs: dict[str, np.ndarray], rounds: int, calls: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fn(**inputs)  # type: ignore[operator]
            times.append(time.perf_counter() - t0)
        best = min(best, statistics.median(times))
    return best


def http_request(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {"Content-Type": "application/json"}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def payloads(m: Model) -> dict[str, bytes]:
    """The request for each protocol: TF Serving JSON, V2 JSON, V2 binary in and out."""
    v2 = {"inputs": [{"name": m.input_name, "shape": list(m.x.shape), "datatype": "FP32",
                      "data": m.x.ravel().tolist()}]}
    head = json.dumps({"inputs": [{"name": m.input_name, "shape": list(m.x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": m.x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return {
        "tfs-json": http_request(f"/v1/models/{m.name}:predict", json.dumps({"instances": m.x.tolist()}).encode()),
        "v2-json": http_request(f"/v2/models/{m.name}/infer", json.dumps(v2).encode()),
        "v2-binary": http_request(f"/v2/models/{m.name}/infer", head + m.x.tobytes(), {
            "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}),
    }


def decode_output(protocol: str, headers: dict[str, str], body: bytes) -> np.ndarray:
    if protocol == "tfs-json":
        return np.array(json.loads(body)["predictions"], np.float32)
    if protocol == "v2-binary" and "inference-header-content-length" in headers:
        size = int(headers["inference-header-content-length"])
        out = json.loads(body[:size])["outputs"][0]
        return np.frombuffer(body[size:], "<f4").reshape(out["shape"])
    out = json.loads(body)["outputs"][0]
    return np.array(out["data"], np.float32).reshape(out["shape"])


# -- the load generator ----------------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return status, headers, body
    return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))


async def _client(port: int, request: bytes, start: float, end: float, latencies: list[float],
                  errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            writer.write(request)
            status, _headers, body = await _read_response(reader)
            t1 = time.perf_counter()
            if status != 200:
                errors.append(f"{status} {body[:200]!r}")
            elif t0 >= start:  # requests sent during the warm-up are not counted
                latencies.append(t1 - t0)
    finally:
        writer.close()


async def _load(port: int, request: bytes, clients: int, duration: float, warmup: float) -> dict[str, float]:
    now = time.perf_counter()
    start, end = now + warmup, now + warmup + duration
    latencies: list[float] = []
    errors: list[str] = []
    await asyncio.gather(*(_client(port, request, start, end, latencies, errors) for _ in range(clients)))
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    lat = np.array(latencies) * 1000
    return {"rps": len(lat) / duration, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "requests": len(lat)}


def run_load(port: int, request: bytes, clients: int, duration: float, warmup: float = 0.5) -> dict[str, float]:
    """A closed-loop load in a child process, so the generator does not share our interpreter's GIL."""
    here = str(Path(__file__).parent)
    code = (f"import asyncio, json, sys; sys.path.insert(0, {here!r}); import bench_server as b; "
            f"print(json.dumps(asyncio.run(b._load({port}, bytes.fromhex({request.hex()!r}), {clients}, "
            f"{duration}, {warmup}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=duration * 10 + 60)
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "load generator failed")
    return json.loads(out.stdout)


def check_once(port: int, request: bytes, protocol: str, expected: np.ndarray) -> None:
    async def one() -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        try:
            return await _read_response(reader)
        finally:
            writer.close()

    status, headers, body = asyncio.run(one())
    if status != 200:
        raise RuntimeError(f"{protocol}: HTTP {status}: {body[:300]!r}")
    np.testing.assert_allclose(decode_output(protocol, headers, body), expected, rtol=1e-4, atol=1e-6)


# -- servers ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, path: str = "/v2/health/ready", timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def start_ours(models: list[Model], batching: bool, work: Path) -> tuple[subprocess.Popen, int]:
    config = work / "models.json"
    config.write_text(json.dumps({"model_config_list": [{"name": m.name, "base_path": str(m.base)} for m in models]}))
    port = free_port()
    # Default settings, access log included (MLServer logs every request too).
    cmd = [sys.executable, "-m", "server", "--port", str(port), "--model-config-file", str(config)]
    if batching:
        cmd.append("--enable-batching")
    log = open(work / "ours.log", "wb")  # noqa: SIM115 - the server writes it until it stops
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wait_ready(port, proc)
    return proc, port


def start_mlserver(python: str, models: list[Model], batching: bool, work: Path) -> tuple[subprocess.Popen, int]:
    repo = work / ("mlserver-batching" if batching else "mlserver")
    repo.mkdir(exist_ok=True)
    (repo / "bundle_runtime.py").write_text(MLSERVER_RUNTIME)
    port = free_port()
    (repo / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "debug": False,
    }))
    for m in models:
        folder = repo / m.name
        folder.mkdir(exist_ok=True)
        settings = {"name": m.name, "implementation": "bundle_runtime.BundleRuntime",
                    "parameters": {"uri": str(m.base)}}
        if batching:
            settings.update({"max_batch_size": 64, "max_batch_time": 0.001})
        (folder / "model-settings.json").write_text(json.dumps(settings))
    # One BLAS thread per inference, as our server sets for itself on a machine with as many cores as
    # inference threads: several multi-threaded OpenBLAS products at once oversubscribe the CPUs. Without
    # this, MLServer runs the CNN several times slower, which would measure BLAS, not the server.
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{ROOT}", "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    mlserver = str(Path(python).parent / "mlserver")
    proc = subprocess.Popen([mlserver, "start", str(repo)], cwd=repo, env=env,
                            stdout=open(work / f"{repo.name}.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        wait_ready(port, proc)
        for m in models:
            wait_ready(port, proc, f"/v2/models/{m.name}/ready")
    except RuntimeError as e:
        proc.kill()
        raise RuntimeError(f"MLServer: {e}; see {work / (repo.name + '.log')}") from e
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def mlserver_available(python: str) -> bool:
    if not Path(python).exists():
        return False
    return subprocess.run([python, "-c", "import mlserver"], capture_output=True).returncode == 0


# -- the run ------------------------------------------------------------------------------------------------


# (server, protocol) pairs measured back to back for every model, batching mode and client count.
PLAN = [("ours", "tfs-json"), ("ours", "v2-json"), ("mlserver", "v2-json"), ("ours", "v2-binary")]
PROTOCOLS = ("tfs-json", "v2-json", "v2-binary")


def bench_all(ports: dict[tuple[str, bool], int], models: list[Model], duration: float,
              protocols: tuple[str, ...] = PROTOCOLS, concurrency: tuple[int, ...] = CONCURRENCY) -> list[dict]:
    """Every scenario; the servers being compared run one right after the other, so load drift hits both."""
    results = []
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    floors: dict[str, int] = {}  # the HTTP floor, once per server: the same client and loop-back round trip
    for (server, _batching), port in sorted(ports.items()):
        floors.setdefault(server, port)
    for server, port in floors.items():
        stats = run_load(port, live, 1, duration)
        results.append({"server": server, "model": "-", "protocol": "GET /v2/health/live", "batching": False,
                        "clients": 1, **stats})
        print(f"{server:9} GET /v2/health/live clients=1   {stats['rps']:8.0f} req/s  p50 "
              f"{stats['p50_ms']:7.3f} ms", flush=True)
    for m in models:
        requests = payloads(m)
        plan = [(server, protocol) for server, protocol in PLAN
                 if protocol in protocols or (server == "mlserver" and protocols)]
        for batching in sorted({b for _, b in ports}):
            for server, protocol in plan:
                if (server, batching) in ports:
                    check_once(ports[server, batching], requests[protocol], protocol, m.expected)
            for clients in concurrency:
                for server, protocol in plan:
                    port = ports.get((server, batching))
                    if port is None:
                        continue
                    timed = server == "ours" and clients == 1 and not batching
                    before = runtime_totals(port, m.name) if timed else None
                    stats = run_load(port, requests[protocol], clients, duration)
                    if before is not None:
                        calls, seconds = (a - b for a, b in zip(runtime_totals(port, m.name), before, strict=True))
                        stats["model_ms"] = seconds / calls * 1e3 if calls else float("nan")
                    results.append({"server": server, "model": m.name, "protocol": protocol, "batching": batching,
                                    "clients": clients, **stats})
                    print(f"{server:9} {m.name:6} {protocol:9} batching={'on ' if batching else 'off'} "
                          f"clients={clients:<3} {stats['rps']:8.0f} req/s  p50 {stats['p50_ms']:7.2f} ms  "
                          f"p99 {stats['p99_ms']:7.2f} ms", flush=True)
    return results


def runtime_totals(port: int, model: str) -> tuple[float, float]:
    """Our server's (count, sum) of ``serving_runtime_latency_seconds`` for ``model``."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/monitoring/prometheus/metrics", timeout=10) as r:
        text = r.read().decode()
    totals = {"serving_runtime_latency_seconds_count": 0.0, "serving_runtime_latency_seconds_sum": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals and sample.labels.get("model") == model:
                totals[sample.name] = sample.value
    return totals["serving_runtime_latency_seconds_count"], totals["serving_runtime_latency_seconds_sum"]


def markdown(results: list[dict], models: list[Model]) -> str:
    def find(**kw: object) -> dict | None:
        return next((r for r in results if all(r[k] == v for k, v in kw.items())), None)

    lines = ["| model | protocol | batching | clients | ours req/s | p50 ms | p99 ms | MLServer req/s | p50 ms | "
             "p99 ms | ours / MLServer |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r["server"] != "ours" or r["model"] == "-":
            continue
        ml = find(server="mlserver", model=r["model"], protocol="v2-json", batching=r["batching"],
                  clients=r["clients"])
        mls = ("{:.0f} | {:.2f} | {:.2f} | {:.2f}x".format(ml["rps"], ml["p50_ms"], ml["p99_ms"], r["rps"] / ml["rps"])
               if ml else "- | - | - | -")
        lines.append(f"| {r['model']} | {r['protocol']} | {'on' if r['batching'] else 'off'} | {r['clients']} | "
                     f"{r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {mls} |")
    lines.append("")
    lines.append("Server overhead at 1 client (p50 latency minus the in-process signature call):")
    lines.append("")
    for r in results:
        if r["model"] == "-":
            lines.append(f"- HTTP floor, {r['server']} GET /v2/health/live: p50 {r['p50_ms']:.2f} ms")
    for m in models:
        for protocol in ("tfs-json", "v2-json", "v2-binary"):
            r = find(server="ours", model=m.name, protocol=protocol, batching=False, clients=1)
            if r:
                in_server = (f"; {r['p50_ms'] - r['model_ms']:.2f} ms less the model's time in the server, "
                             f"{r['model_ms']:.3f} ms" if "model_ms" in r else "")
                lines.append(f"- {m.name} {protocol}: {r['p50_ms'] - m.predict_seconds * 1000:.2f} ms "
                             f"(p50 {r['p50_ms']:.2f} ms, predict {m.predict_seconds * 1000:.3f} ms){in_server}")
        r = find(server="mlserver", model=m.name, protocol="v2-json", batching=False, clients=1)
        if r:
            lines.append(f"- {m.name} MLServer v2-json: {r['p50_ms'] - m.predict_seconds * 1000:.2f} ms")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per scenario (default 3)")
    parser.add_argument("--mlserver-python", default="/tmp/mlserver-venv/bin/python")
    parser.add_argument("--no-mlserver", action="store_true", help="only benchmark our server")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--models", default="digits,cnn", help="comma-separated subset of digits,cnn")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated subset of our protocols "
                        "(MLServer's V2 JSON runs alongside any of them)")
    parser.add_argument("--clients", default=",".join(map(str, CONCURRENCY)), help="comma-separated client counts")
    parser.add_argument("--batching", choices=("off", "on", "both"), default="both")
    args = parser.parse_args()
    protocols = tuple(p for p in args.protocols.split(",") if p)
    if unknown := set(protocols) - set(PROTOCOLS):
        parser.error(f"unknown protocols {sorted(unknown)}; known: {', '.join(PROTOCOLS)}")
    concurrency = tuple(int(c) for c in args.clients.split(","))
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.batching]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = prepare_models(work, args.models.split(","))
        for m in models:
            print(f"{m.name}: in-process predict of one row {m.predict_seconds * 1e3:.3f} ms")
        procs, ports = [], {}
        use_mlserver = not args.no_mlserver and mlserver_available(args.mlserver_python)
        if not args.no_mlserver and not use_mlserver:
            print(f"MLServer not found at {args.mlserver_python}; skipping the comparison")
        try:
            for batching in modes:
                (work / f"ours-{batching}").mkdir()
                proc, ports["ours", batching] = start_ours(models, batching, work / f"ours-{batching}")
                procs.append(proc)
                if use_mlserver:
                    proc, ports["mlserver", batching] = start_mlserver(args.mlserver_python, models, batching, work)
                    procs.append(proc)
            results = bench_all(ports, models, args.duration, protocols, concurrency)
        finally:
            for proc in procs:
                stop(proc)
    print()
    print(markdown(results, models))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
