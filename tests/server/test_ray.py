"""``server.ray_serve``: the Ray Serve deployment, its batcher, its config file and the ``--ray`` flags.

The cluster tests run a ``ray.cluster_utils.Cluster`` of two simulated nodes
on this machine, once for the module, with Ray's HTTP proxy on 127.0.0.1;
every wait on Ray has a deadline. Under xdist each worker that runs a
cluster test starts its own cluster; they do not collide, since every port
(Ray's GCS and API server, Serve's HTTP proxy) is chosen free. (pytest-xdist
3.8's ``--dist loadgroup`` does not group tests under pytest 9 here, so the
tests do not rely on it.) (The nodes keep Ray's choice of address,
this machine's own: nodes forced onto 127.0.0.1 could not reach their GCS.) The answers are judged against the numpy
runtime called in-process and against the in-process app (``create_app``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

import runtime
from savedmodel import demo
from server.cli import add_arguments, ray_options_from_args, run
from server.settings import BatchingParameters, ServerSettings
from tests.server.helpers import ROOT, ClientThreads, free_port, wait_for

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
ray_serve = importlib.import_module("server.ray_serve")

pytestmark = pytest.mark.ray
CONFIG = ROOT / "deploy" / "ray" / "serve_config.yaml"
DEPLOY_TIMEOUT = 90.0
LOOPBACK = "127.0.0.1"  # where Ray's HTTP proxy listens
CLUSTER_TIMEOUT = 120.0
# Two replicas, one per node. Ray's proxy prefers the replicas on its own node; at two requests per
# replica the head node's replica is full sooner and traffic spills over to the other node.
SPREAD = ray_serve.RayOptions(replicas=2, num_cpus=0.5, max_replicas_per_node=1, max_ongoing_requests=2)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def _digits(n: int) -> np.ndarray:
    images, _labels = demo.test_data()
    return images[:n].astype(np.float32)


def _demo_fn() -> runtime.SignatureFunction:
    return runtime.load(demo.BASE_PATH).signatures["serving_default"]


# -- the config file and build(args) ----------------------------------------------------------------------


def _config_app() -> dict[str, Any]:
    config = yaml.safe_load(CONFIG.read_text())
    (app,) = config["applications"]
    return app


def test_serve_config_names_the_builder_and_its_args_build_an_application() -> None:
    app = _config_app()
    module, _, attr = app["import_path"].partition(":")
    assert getattr(importlib.import_module(module), attr) is ray_serve.build
    assert isinstance(ray_serve.build(app["args"]), serve.Application)

    args = dict(app["args"])
    settings = ServerSettings.model_validate(args.pop("settings"))
    options = ray_serve.RayOptions.model_validate(args).deployment_options(settings)
    assert options["autoscaling_config"] == {k: v for k, v in args["autoscale"].items()}
    assert options["ray_actor_options"] == {"num_cpus": args["num_cpus"]}
    assert options["max_ongoing_requests"] >= settings.batching.max_batch_size
    assert "num_replicas" not in options


def test_fixed_replicas_become_num_replicas() -> None:
    options = ray_serve.RayOptions(replicas=3, num_cpus=0.5, max_replicas_per_node=1)
    kwargs = options.deployment_options(ServerSettings())
    assert (kwargs["num_replicas"], kwargs["ray_actor_options"]["num_cpus"]) == (3, 0.5)
    assert kwargs["max_replicas_per_node"] == 1 and "autoscaling_config" not in kwargs
    assert kwargs["max_ongoing_requests"] == ray_serve.DEFAULT_MAX_ONGOING


def test_batching_raises_max_ongoing_requests_to_a_full_batch() -> None:
    settings = ServerSettings(enable_batching=True, batching=BatchingParameters(max_batch_size=64))
    assert ray_serve.RayOptions().deployment_options(settings)["max_ongoing_requests"] == 64
    assert ray_serve.RayOptions(max_ongoing_requests=8).deployment_options(settings)["max_ongoing_requests"] == 8


def test_replicas_get_the_graceful_shutdown_timeout_and_the_log_settings() -> None:
    settings = ServerSettings(graceful_shutdown_timeout=7.5, access_log=False, log_level="warning")
    kwargs = ray_serve.RayOptions().deployment_options(settings)
    assert kwargs["graceful_shutdown_timeout_s"] == settings.graceful_shutdown_timeout
    assert kwargs["logging_config"] == {"log_level": "WARNING", "enable_access_log": False}
    ray_serve.ModelServer.options(**kwargs)  # Ray accepts them


def test_proxy_options_carry_host_port_and_tls(tmp_path: Path) -> None:
    assert ray_serve.http_options(ServerSettings(host="0.0.0.0"), 8123) == {"host": "0.0.0.0", "port": 8123}
    combined = ServerSettings(ssl_certfile=tmp_path / "both.pem")
    options = ray_serve.http_options(combined, 8443)
    assert options["ssl_certfile"] == options["ssl_keyfile"] == str(combined.ssl_certfile)
    separate = ServerSettings(ssl_certfile=tmp_path / "cert.pem", ssl_keyfile=tmp_path / "key.pem")
    options = ray_serve.http_options(separate, 8443)
    assert (options["ssl_certfile"], options["ssl_keyfile"]) == (str(separate.ssl_certfile), str(separate.ssl_keyfile))


def test_build_refuses_what_is_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="build args must be a mapping; received list"):
        ray_serve.build([1, 2])  # type: ignore[arg-type]


def test_build_names_an_unknown_arg() -> None:
    with pytest.raises(ValueError, match=r"build args are invalid \(expected replicas, .*\): replica_count: Extra "
                                         r"inputs are not permitted \(received 2\)"):
        ray_serve.build({"replica_count": 2})


def test_build_names_a_bad_setting() -> None:
    with pytest.raises(ValueError, match=r"build args 'settings' are invalid: port: Input should be greater than or "
                                         r"equal to 0 \(received -1\)"):
        ray_serve.build({"settings": {"port": -1}})


def test_replicas_and_autoscale_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="give either replicas or autoscale, not both"):
        ray_serve.RayOptions(replicas=2, autoscale={"min_replicas": 1, "max_replicas": 2})


def test_autoscale_bounds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="min_replicas must not exceed max_replicas; received min_replicas=3, "
                                         "max_replicas=1"):
        ray_serve.AutoscaleOptions(min_replicas=3, max_replicas=1)


# -- the --ray flags ----------------------------------------------------------------------------------------


def test_ray_flags_become_ray_options() -> None:
    args = _parse("--ray", "--autoscale", "1:8", "--autoscale-target", "4", "--ray-num-cpus", "0.5",
                  "--ray-threads-per-replica", "2", "--ray-max-ongoing-requests", "32")
    options = ray_serve.RayOptions(**ray_options_from_args(args))
    assert (options.autoscale.min_replicas, options.autoscale.max_replicas) == (1, 8)
    assert options.autoscale.target_ongoing_requests == 4.0
    assert (options.num_cpus, options.threads_per_replica, options.max_ongoing_requests) == (0.5, 2, 32)
    assert options.replicas is None


@pytest.mark.parametrize(("value", "message"), [
    ("3:1", "expected 1 <= MIN <= MAX, got '3:1'"),
    ("0:2", "expected 1 <= MIN <= MAX, got '0:2'"),
    ("four", "expected MIN:MAX replicas such as 1:8, got 'four'"),
])
def test_bad_autoscale_values_are_usage_errors(value: str, message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse("--ray", "--autoscale", value)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--ray", "--replicas", "2", "--autoscale", "1:4"], "give either --replicas or --autoscale, not both"),
    (["--ray", "--workers", "2"], "--ray serves with Ray replicas, not worker processes: drop --workers 2 and use "
                                  "--replicas 2"),
    (["--replicas", "2"], "--replicas needs --ray"),
    (["--address", "auto", "--ray-num-cpus", "2"], "--address, --ray-num-cpus needs --ray"),
    (["--ray", "--autoscale-target", "3"], "--autoscale-target needs --autoscale MIN:MAX"),
    (["--ray", "--ray-num-cpus", "0"], "num_cpus"),
])
def test_flags_that_do_not_fit_together(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert run(_parse(*argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_ray_without_the_ray_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "server.ray_serve")
    assert run(_parse("--ray")) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("error: --ray needs the ray extra (module 'ray' is missing); install it with: "
                   "pip install 'savedmodel-toolkit[ray]'")


def test_a_deployment_that_fails_is_one_error_line(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    def never_running(*args: Any) -> None:
        raise TimeoutError("the 'savedmodel' replicas were not running after 300 s (state DEPLOYING; ...)")

    monkeypatch.setattr(ray_serve, "serve_forever", never_running)
    assert run(_parse("--ray", "--port", "0")) == 1
    err = capsys.readouterr().err
    assert err == "error: the 'savedmodel' replicas were not running after 300 s (state DEPLOYING; ...)\n"


# -- RayBatcher, the batching seam on @serve.batch ----------------------------------------------------------


@pytest.fixture
def outside_a_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let @serve.batch queues run outside a replica: their constructor only reads the replica's config to warn."""
    from ray.serve import batching

    monkeypatch.setattr(batching._BatchQueue, "_warn_if_max_batch_size_exceeds_max_ongoing_requests",
                        lambda self: None)


class Recorder:
    """A signature function that records the rows of every call it gets."""

    def __init__(self, fn: Callable[..., dict[str, np.ndarray]]) -> None:
        self.fn = fn
        self.calls: list[np.ndarray] = []

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(inputs["image"])
        return self.fn(**inputs)


def _submit_all(batcher: Any, requests: list[tuple[tuple, Recorder, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    async def go() -> list[dict[str, np.ndarray]]:
        futures = [batcher.submit(key[0], key, fn, {"image": x}, len(x)) for key, fn, x in requests]
        return await asyncio.gather(*futures)

    return asyncio.run(go())


@pytest.mark.usefixtures("outside_a_replica")
def test_ray_batcher_merges_per_signature_and_matches_the_in_process_batcher() -> None:
    from server.batching import Batcher

    fn = _demo_fn()
    images = _digits(12)
    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1)
    with ThreadPoolExecutor(1) as pool:
        v1, v2 = Recorder(fn), Recorder(fn)
        requests = [(("digits", 1 + i % 2, "serving_default"), v1 if i % 2 == 0 else v2, images[i:i + 1])
                    for i in range(12)]
        by_ray = _submit_all(ray_serve.RayBatcher(params, pool), requests)
        by_process = _submit_all(Batcher(params, pool), [(k, Recorder(fn), x) for k, _, x in requests])

    for (_, _, x), ours, theirs in zip(requests, by_ray, by_process, strict=True):
        alone = fn(image=x)
        for name, value in alone.items():
            assert ours[name].shape == value.shape and ours[name].dtype == value.dtype
            np.testing.assert_allclose(ours[name], value, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6)
    for recorder, rows in ((v1, images[0::2]), (v2, images[1::2])):
        seen = np.concatenate(recorder.calls)
        assert len(recorder.calls) < len(rows)  # merged, and never mixed with the other version's rows:
        assert sorted(r.tobytes() for r in seen) == sorted(r.tobytes() for r in rows)


@pytest.mark.usefixtures("outside_a_replica")
def test_ray_batcher_runs_a_request_larger_than_a_batch_alone() -> None:
    fn = _demo_fn()
    recorder = Recorder(fn)
    images = _digits(5)
    with ThreadPoolExecutor(1) as pool:
        batcher = ray_serve.RayBatcher(BatchingParameters(max_batch_size=4, num_batch_threads=1), pool)
        (outputs,) = _submit_all(batcher, [(("digits", 1, "serving_default"), recorder, images)])
    assert [len(c) for c in recorder.calls] == [5]
    for name, value in fn(image=images).items():
        np.testing.assert_allclose(outputs[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("outside_a_replica")
def test_ray_batcher_error_reaches_only_its_request() -> None:
    fn = _demo_fn()

    def refuses_negative(image: np.ndarray) -> dict[str, np.ndarray]:
        if (image < 0).any():
            raise ValueError("negative pixel")
        return fn(image=image)

    images = _digits(4)
    bad = -np.ones_like(images[:1])
    with ThreadPoolExecutor(1) as pool:
        batcher = ray_serve.RayBatcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000,
                                                          num_batch_threads=1), pool)

        async def go() -> list[Any]:
            key = ("digits", 1, "serving_default")
            inputs = [images[:2], bad, images[2:]]
            futures = [batcher.submit("digits", key, refuses_negative, {"image": x}, len(x)) for x in inputs]
            return await asyncio.gather(*futures, return_exceptions=True)

        good1, error, good2 = asyncio.run(go())
    assert isinstance(error, ValueError) and str(error) == "negative pixel"
    for outputs, x in ((good1, images[:2]), (good2, images[2:])):
        for name, value in fn(image=x).items():
            np.testing.assert_allclose(outputs[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("outside_a_replica")
def test_ray_batcher_refuses_more_than_max_enqueued_batches() -> None:
    from server.errors import QueueFull

    fn = _demo_fn()
    images = _digits(3)
    params = BatchingParameters(max_batch_size=2, max_enqueued_batches=1, batch_timeout_micros=10_000,
                                num_batch_threads=1)
    with ThreadPoolExecutor(1) as pool:
        batcher = ray_serve.RayBatcher(params, pool)
        key = ("digits", 1, "serving_default")

        async def go() -> list[dict[str, np.ndarray]]:
            queued = [batcher.submit("digits", key, fn, {"image": images[i:i + 1]}, 1) for i in range(2)]
            with pytest.raises(QueueFull):
                batcher.submit("digits", key, fn, {"image": images[2:3]}, 1)
            return await asyncio.gather(*queued)

        answered = asyncio.run(go())
    assert len(answered) == 2 and batcher._waiting == {}


# -- savedmodel serve --ray, end to end -------------------------------------------------------------------


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not in the metrics page")


@pytest.mark.slow
def test_serve_ray_batches_in_the_replica_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server", "--ray", "--replicas", "1", "--ray-num-cpus", "0.5",
                                 "--port", str(port), "--enable-batching", "--access-log=false"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://{LOOPBACK}:{port}"
        wait_for(lambda: proc.poll() is None and httpx.get(f"{url}/v2/health/ready").status_code == 200,
                 timeout=DEPLOY_TIMEOUT + 30, interval=0.5, what=f"savedmodel serve --ray ({log.read_text()[-2000:]})")
        fn = _demo_fn()
        images = _digits(16)
        with httpx.Client(base_url=url, timeout=30) as client:
            with ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(lambda i: _predict(client, images[i:i + 1]), range(16)))
            metrics = client.get("/monitoring/prometheus/metrics").text
        for i, response in enumerate(responses):
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(np.array(response.json()["predictions"], np.float32),
                                       next(iter(fn(image=images[i:i + 1]).values())), rtol=1e-5, atol=1e-6)
        # Every request went through a batch of the replica's RayBatcher (it reports to the replica's metrics).
        assert _metric(metrics, 'serving_batch_size_requests_sum{model="digits"}') == len(responses)
        tree = _process_tree(proc.pid)
        assert len(tree) > 3  # the server, Ray's GCS and raylet, the replica ...
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
        wait_for(lambda: not any(_alive(pid) for pid in tree), timeout=30, interval=0.5,
                 what="every process of the server to exit")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


# -- on a two-node cluster --------------------------------------------------------------------------------


class Deployed:
    """The app deployed on the test cluster, reached over HTTP through Ray's proxy on the head node."""

    def __init__(self, cluster: Any, url: str) -> None:
        self.cluster = cluster
        self.url = url

    def deploy(self, options: Any, settings: ServerSettings | None = None) -> None:
        ray_serve.deploy(settings or ServerSettings(enable_batching=True), options, DEPLOY_TIMEOUT)

    @property
    def head_node_id(self) -> str:
        return self.cluster.head_node.node_id

    def running_replicas(self) -> int:
        status = serve.status().applications[ray_serve.APP_NAME].deployments[ray_serve.DEPLOYMENT_NAME]
        return sum(n for state, n in status.replica_states.items() if str(state).endswith("RUNNING"))


@contextlib.contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """Fail with TimeoutError if the block runs longer than ``seconds`` (SIGALRM: Ray's node start must run in
    the main thread, and a node that cannot reach its GCS retries for many minutes)."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"timed out after {seconds:g} s waiting for {what}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Deployed]:
    from ray.cluster_utils import Cluster

    cluster = None
    try:
        with _deadline(CLUSTER_TIMEOUT, "the two-node Ray cluster to start"):
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 1, "include_dashboard": False, "dashboard_port": free_port()})
            cluster.add_node(num_cpus=1)
            ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": LOOPBACK, "port": port})
        yield Deployed(cluster, f"http://{LOOPBACK}:{port}")
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()


def _predict(client: httpx.Client, x: np.ndarray) -> httpx.Response:
    return client.post("/v1/models/digits:predict", json={"instances": x.tolist()})


@pytest.mark.slow
def test_both_replicas_answer_like_the_in_process_server(cluster: Deployed) -> None:
    from fastapi.testclient import TestClient

    from server.app import create_app

    cluster.deploy(SPREAD)
    assert cluster.running_replicas() == 2
    fn = _demo_fn()
    images = _digits(8)

    def check(i: int) -> str:
        x = images[i % 8:i % 8 + 1]
        response = _predict(client, x)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(np.array(response.json()["predictions"], np.float32),
                                   next(iter(fn(image=x).values())), rtol=1e-5, atol=1e-6)
        return response.headers[ray_serve.REPLICA_HEADER]

    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        with ThreadPoolExecutor(8) as pool:
            replicas = set(pool.map(check, range(80)))
        ray_missing = client.get("/v1/models/nosuch")
        ray_bad = client.post("/v2/models/digits/infer", json={"inputs": [{"name": "image", "shape": [1, 3],
                                                                           "datatype": "FP32", "data": [1, 2, 3]}]})
    assert len(replicas) == 2
    with TestClient(create_app(ServerSettings(enable_batching=True))) as local:
        local_missing = local.get("/v1/models/nosuch")
        local_bad = local.post("/v2/models/digits/infer", json={"inputs": [{"name": "image", "shape": [1, 3],
                                                                            "datatype": "FP32", "data": [1, 2, 3]}]})
    for theirs, ours in ((ray_missing, local_missing), (ray_bad, local_bad)):
        assert (theirs.status_code, theirs.json()) == (ours.status_code, ours.json())


@pytest.mark.slow
def test_replicas_that_cannot_be_placed_time_out_with_rays_state(cluster: Deployed) -> None:
    too_big = ray_serve.RayOptions(replicas=1, num_cpus=8)  # the cluster has two CPUs
    with pytest.raises(TimeoutError, match=r"the 'savedmodel' replicas were not running after 3 s "
                                           r"\(state \S*DEPLOYING"):
        ray_serve.deploy(ServerSettings(), too_big, 3)


class Traffic(ClientThreads):
    """Clients in threads sending predictions in a closed loop until stopped; records every answer."""

    def __init__(self, url: str, clients: int) -> None:
        super().__init__(url, clients)
        self.answers: list[tuple[float, int, str]] = []  # (time, status, replica)
        self.errors: list[str] = []

    def _client(self, i: int) -> None:
        x = _digits(1)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = _predict(client, x)
                except httpx.HTTPError as e:
                    self.errors.append(repr(e))
                    continue
                self.answers.append((time.monotonic(), response.status_code,
                                     response.headers.get(ray_serve.REPLICA_HEADER, "")))


@pytest.mark.slow
def test_autoscaling_goes_up_under_load_and_back_down(cluster: Deployed) -> None:
    autoscale = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 0,
                 "downscale_delay_s": 2, "look_back_period_s": 1, "metrics_interval_s": 0.5}
    cluster.deploy(ray_serve.RayOptions(autoscale=autoscale, num_cpus=0.5))
    wait_for(lambda: cluster.running_replicas() == 1, timeout=DEPLOY_TIMEOUT, interval=0.5, what="one replica")
    with Traffic(cluster.url, clients=6) as traffic:
        wait_for(lambda: cluster.running_replicas() == 2, timeout=DEPLOY_TIMEOUT, interval=0.5,
                 what="a second replica under load")
    wait_for(lambda: cluster.running_replicas() == 1, timeout=DEPLOY_TIMEOUT, interval=0.5,
             what="back to one replica without load")
    assert traffic.errors == [] and {status for _, status, _ in traffic.answers} == {200}


def _drain(node_id: str, address: str, deadline_s: int) -> None:
    """``ray drain-node``, as an operator (or KubeRay) runs it before taking a node away."""
    ray_cli = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray_cli), "drain-node", "--address", address, "--node-id", node_id,
                    "--reason", "DRAIN_NODE_REASON_PREEMPTION", "--reason-message", "test: node leaves",
                    "--deadline-remaining-seconds", str(deadline_s)], check=True, capture_output=True, timeout=60)


@pytest.mark.slow
def test_removing_a_drained_node_under_traffic_loses_no_request(cluster: Deployed) -> None:
    cluster.deploy(ray_serve.RayOptions(replicas=2, num_cpus=0.5, max_ongoing_requests=2))
    (worker,) = cluster.cluster.worker_nodes

    def nodes_since(t: float) -> set[str]:
        return {replica.partition("@")[2] for at, _, replica in list(traffic.answers) if at > t}

    with Traffic(cluster.url, clients=6) as traffic:
        # Serve spreads replicas over nodes: one of them runs on the worker node.
        wait_for(lambda: worker.node_id in nodes_since(0), timeout=30, what="an answer from the worker node")
        _drain(worker.node_id, cluster.cluster.address, deadline_s=60)
        # Serve starts a replacement on the head node, then stops the drained replica gracefully.
        wait_for(lambda: cluster.running_replicas() == 2 and worker.node_id not in nodes_since(time.monotonic() - 2),
                 timeout=DEPLOY_TIMEOUT, interval=0.5, what="the replica to leave the drained node")
        cluster.cluster.remove_node(worker)
        removed = time.monotonic()
        wait_for(lambda: sum(1 for at, _, _ in list(traffic.answers) if at > removed) >= 100, timeout=60,
                 what="traffic after the node left")
    assert traffic.errors == []
    assert {status for _, status, _ in traffic.answers} == {200}
    assert nodes_since(removed) == {cluster.head_node_id}


def test_serve_forever_takes_sigterm_from_ray_init_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray's proxy can answer health checks before the driver sees the app RUNNING; a SIGTERM in that window
    # once met Ray's own handler, which aborts (status -6). Ours must be in place before the deployment.
    seen: list[Any] = []
    monkeypatch.setattr(ray_serve.ray, "init", lambda **_: seen.append("init"))
    monkeypatch.setattr(ray_serve.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_serve.serve, "start", lambda **_: seen.append(signal.getsignal(signal.SIGTERM)))

    def deploy(*_: Any) -> None:  # a SIGTERM while the replicas start
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(ray_serve, "deploy", deploy)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ray_serve.serve_forever(ServerSettings(port=free_port()), ray_serve.RayOptions(), None)  # returns: stopped
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert seen[0] == "init"
    assert seen[1] not in (signal.SIG_DFL, saved[signal.SIGTERM])  # our handler, before serve.start
