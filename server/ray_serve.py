"""Scale-out on Ray Serve: the same app in every replica, behind Ray's HTTP proxy.

Every replica builds its own app with ``create_app(settings)`` (so routes,
both protocols, errors and metrics are the ones of a single server) and
loads its own models from the model base paths, which must be readable from
every node (a shared file system or a mounted volume). With batching on,
the replica's requests are merged by Ray's ``@serve.batch`` (``RayBatcher``,
the same seam as the in-process ``Batcher``) per model version, signature
and row shape.

>>> from server.ray_serve import RayOptions, serve_forever
>>> serve_forever(ServerSettings(), RayOptions(replicas=2), address="auto")  # doctest: +SKIP

``build(args)`` is the application builder for Ray's own CLI, e.g.
``serve run deploy/ray/serve_config.yaml``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ray import serve

from server.batching import Function, Outputs, RunObserver, run_batch, timed
from server.errors import QueueFull
from server.settings import BatchingParameters, ServerSettings

logger = logging.getLogger("server")

APP_NAME = "savedmodel"
DEPLOYMENT_NAME = "ModelServer"
REPLICA_HEADER = "X-Serve-Replica"
DEFAULT_MAX_ONGOING = 16  # requests one replica holds; Ray's own default (5) starves a batching replica


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoscaleOptions(_Strict):
    """Ray Serve's autoscaling between ``min_replicas`` and ``max_replicas``.

    Ray adds replicas while the ongoing requests per replica stay above
    ``target_ongoing_requests`` and removes them when they stay below. The
    delays and the look-back period are Ray's ``AutoscalingConfig`` fields;
    None keeps Ray's defaults.
    """

    min_replicas: int = Field(ge=1)
    max_replicas: int = Field(ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float | None = Field(None, ge=0)
    downscale_delay_s: float | None = Field(None, ge=0)
    look_back_period_s: float | None = Field(None, gt=0)
    metrics_interval_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> AutoscaleOptions:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"autoscale min_replicas must not exceed max_replicas; received "
                             f"min_replicas={self.min_replicas}, max_replicas={self.max_replicas}")
        return self


class RayOptions(_Strict):
    """How the app is deployed on Ray: fixed ``replicas`` or ``autoscale``, and what each replica gets.

    ``num_cpus`` is what Ray reserves per replica (fractions allowed);
    ``threads_per_replica`` caps BLAS/OpenMP threads in each replica (Ray
    itself sets one thread per replica); ``max_ongoing_requests`` is how many
    requests Ray lets one replica hold at a time (default 16, and at least
    ``max_batch_size`` with batching on, else a batch could never fill);
    ``max_replicas_per_node`` spreads replicas over nodes (1: one per node).
    """

    replicas: int | None = Field(None, ge=1)
    autoscale: AutoscaleOptions | None = None
    num_cpus: float = Field(1.0, gt=0)
    threads_per_replica: int = Field(1, ge=1)
    max_ongoing_requests: int | None = Field(None, ge=1)
    max_replicas_per_node: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_scaling(self) -> RayOptions:
        if self.replicas is not None and self.autoscale is not None:
            raise ValueError("give either replicas or autoscale, not both")
        return self

    def deployment_options(self, settings: ServerSettings) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options`` when serving ``settings``."""
        ongoing = self.max_ongoing_requests
        if ongoing is None:
            ongoing = max(DEFAULT_MAX_ONGOING, settings.batching.max_batch_size if settings.enable_batching else 0)
        options: dict[str, Any] = {
            "ray_actor_options": {"num_cpus": self.num_cpus},
            "max_ongoing_requests": ongoing,
            # a stopping replica first finishes its requests, as a single server does on SIGTERM
            "graceful_shutdown_timeout_s": settings.graceful_shutdown_timeout,
            # Ray's replica logs, with its per-request access log, follow --log-level and --access-log
            "logging_config": {"log_level": settings.log_level.upper(), "enable_access_log": settings.access_log},
        }
        if self.max_replicas_per_node is not None:
            options["max_replicas_per_node"] = self.max_replicas_per_node
        if self.autoscale is not None:
            options["autoscaling_config"] = self.autoscale.model_dump(exclude_none=True)
        else:
            options["num_replicas"] = self.replicas or 1
        return options


# -- batching through @serve.batch ------------------------------------------------------------------------


@dataclass
class _Request:
    queue: Hashable  # (model, version, signature) and the row shape: requests merge only within one queue
    model: str
    fn: Function
    inputs: dict[str, np.ndarray]
    rows: int
    enqueued: float
    waiting: bool = True  # counted in RayBatcher's waiting rows until its batch starts


def _total_rows(requests: list[_Request]) -> int:
    return sum(r.rows for r in requests)


class RayBatcher:
    """The batching seam of ``InferenceService`` (like ``Batcher``), with Ray Serve's ``@serve.batch`` queue.

    Ray collects up to ``max_batch_size`` rows, waiting at most
    ``batch_timeout_micros``, and runs up to ``num_batch_threads`` batches at
    once. A Ray batch may mix models and signatures: it is split by queue
    key and each part runs as one merged call (``run_batch``: padding to
    ``allowed_batch_sizes``, outputs split back, a failed merge retried
    request by request). A request larger than ``max_batch_size`` runs alone;
    a queue holding ``max_enqueued_batches`` full batches refuses more.
    """

    def __init__(self, params: BatchingParameters, executor: Executor, observer: RunObserver | None = None) -> None:
        self.params = params
        self._executor = executor
        self._observer = observer
        self._waiting: dict[Hashable, int] = {}
        self._limit = params.max_enqueued_batches * params.max_batch_size
        self._queue = serve.batch(
            max_batch_size=params.max_batch_size,
            batch_wait_timeout_s=params.batch_timeout_micros / 1e6,
            max_concurrent_batches=params.num_batch_threads,
            batch_size_fn=_total_rows,
        )(self._run)

    def submit(self, model: str, key: Hashable, fn: Function, inputs: dict[str, np.ndarray],
               rows: int) -> asyncio.Future[Outputs]:
        """Queue one validated request; the future has its own outputs. Raises QueueFull when the queue is full."""
        loop = asyncio.get_running_loop()
        if rows > self.params.max_batch_size:
            return loop.run_in_executor(self._executor, functools.partial(timed(fn, model, self._observer), **inputs))
        queue = (key, tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in inputs.items()))
        waiting = self._waiting.get(queue, 0)
        if waiting and waiting + rows > self._limit:
            raise QueueFull()
        self._waiting[queue] = waiting + rows
        request = _Request(queue, model, fn, inputs, rows, time.perf_counter())
        return asyncio.ensure_future(self._one(request))

    async def _one(self, request: _Request) -> Outputs:
        try:
            result = await self._queue(request)
        finally:
            self._stop_waiting(request)
        if isinstance(result, BaseException):
            raise result
        return result

    def _stop_waiting(self, request: _Request) -> None:
        if request.waiting:
            request.waiting = False
            left = self._waiting[request.queue] - request.rows
            if left:
                self._waiting[request.queue] = left
            else:
                del self._waiting[request.queue]

    async def _run(self, requests: list[_Request]) -> list[Outputs | Exception]:
        """One Ray batch: each queue's requests run as one merged call, the queues concurrently."""
        results: list[Outputs | Exception] = [RuntimeError("not run")] * len(requests)
        queues: dict[Hashable, list[int]] = {}
        for i, request in enumerate(requests):
            self._stop_waiting(request)
            queues.setdefault(request.queue, []).append(i)
        await asyncio.gather(*(self._run_queue(requests, indices, results) for indices in queues.values()))
        return results

    async def _run_queue(self, requests: list[_Request], indices: list[int],
                         results: list[Outputs | Exception]) -> None:
        batch = [requests[i] for i in indices]
        started = time.perf_counter()
        fn = timed(batch[0].fn, batch[0].model, self._observer)
        run = functools.partial(run_batch, fn, [r.inputs for r in batch], self.params.allowed_batch_sizes)
        try:
            outputs, padded = await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except Exception as e:  # the executor itself failed: fail this part of the batch
            outputs, padded = [e] * len(batch), 0
        for i, output in zip(indices, outputs, strict=True):
            results[i] = output
        if self._observer is not None and padded:
            self._observer.batch_done(batch[0].model, len(batch), _total_rows(batch), padded,
                                      [started - r.enqueued for r in batch])


# -- the deployment ------------------------------------------------------------------------------------------


class ReplicaHeader:
    """ASGI middleware: every HTTP response names the replica that produced it and its node.

    ``X-Serve-Replica: REPLICA@NODE`` (Ray's replica id and node id): behind
    Ray's proxy a client cannot otherwise tell which replica answered; the
    header shows the load balancing and node draining at work.
    """

    def __init__(self, app: Any, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica.encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.header]}
            await send(message)

        await self.app(scope, receive, send_named)


def replica_app(settings: ServerSettings, threads: int, replica: str) -> Any:
    """The app one replica serves: ``create_app`` with ``threads`` BLAS threads and, with batching, a RayBatcher."""
    from threadpoolctl import threadpool_limits

    from server.app import create_app

    threadpool_limits(limits=threads)  # BLAS and OpenMP, before any model is loaded
    app = create_app(settings.model_copy(update={"intra_op_parallelism": threads}))
    app.add_middleware(ReplicaHeader, replica=replica)
    if settings.enable_batching:
        executor = ThreadPoolExecutor(settings.batching.num_batch_threads, thread_name_prefix="ray-batch")
        app.state.service.batcher = RayBatcher(settings.batching, executor, app.state.metrics)
        app.state.ray_batch_executor = executor
    return app


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress()
class ModelServer:
    """One replica: builds its own app from the settings (a JSON-able dict) when Ray starts it."""

    def __init__(self, settings: dict[str, Any], threads: int) -> None:
        self._settings = ServerSettings.model_validate(settings)
        self._threads = threads
        self._app: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        replica = f"{serve.get_replica_context().replica_id.unique_id}@{ray.get_runtime_context().get_node_id()}"
        self._app = replica_app(self._settings, self._threads, replica)
        return self._app

    def __del__(self) -> None:
        executor = getattr(getattr(self._app, "state", None), "ray_batch_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def application(settings: ServerSettings, options: RayOptions) -> serve.Application:
    """The Ray Serve application: ``ModelServer`` with ``options``, bound to ``settings``.

    Only the settings given explicitly travel to the replicas, so defaults
    that depend on the machine (inference threads) are taken on each node.
    """
    payload = settings.model_dump(mode="json", exclude_unset=True)
    return ModelServer.options(**options.deployment_options(settings)).bind(payload, options.threads_per_replica)


def build(args: dict[str, Any]) -> serve.Application:
    """Application builder for ``serve run`` and Serve config files (``import_path: server.ray_serve:build``).

    ``args`` has ``settings`` (ServerSettings fields) and the RayOptions
    fields (``replicas`` or ``autoscale``, ``num_cpus``,
    ``threads_per_replica``, ``max_ongoing_requests``). Host and port are
    Ray's ``http_options``, not settings. Raises ValueError naming what is
    wrong.

    >>> build({"settings": {"enable_batching": True}, "replicas": 2})  # doctest: +SKIP
    """
    if not isinstance(args, dict):
        raise ValueError(f"build args must be a mapping; received {type(args).__name__}")
    fields = dict(args)
    raw_settings = fields.pop("settings", {})
    try:
        settings = ServerSettings.model_validate(raw_settings)
    except ValidationError as e:
        raise ValueError(f"build args 'settings' are invalid: {_problems(e)}") from e
    try:
        options = RayOptions.model_validate(fields)
    except ValidationError as e:
        raise ValueError(f"build args are invalid (expected {', '.join(RayOptions.model_fields)} and "
                         f"settings): {_problems(e)}") from e
    return application(settings, options)


def _problems(error: ValidationError) -> str:
    """Pydantic's errors on one line: where, what is wrong, what was received."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "value"
        parts.append(f"{where}: {item['msg'].removeprefix('Value error, ')} (received {item['input']!r})")
    return "; ".join(parts)


# -- savedmodel serve --ray -----------------------------------------------------------------------------------


def free_port(host: str) -> int:
    """A port nobody listens on now, for ``--port 0`` (Ray's proxy needs a fixed port)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start(settings: ServerSettings, options: RayOptions, address: str | None,
          timeout_s: float = 300.0, on_connected: Callable[[], None] | None = None) -> int:
    """Connect to Ray (start a private local one when ``address`` is None), deploy, return the HTTP port.

    ``on_connected`` runs right after ``ray.init``, before the deployment.
    Raises TimeoutError when the replicas are not running after
    ``timeout_s`` (e.g. they ask for more CPUs than the cluster has).
    """
    port = settings.port or free_port(settings.host)
    if address is None:
        # "local": a new Ray of our own even when `ray start` runs here (None would join that one);
        # without the dashboard, which alone is ten processes.
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    if on_connected is not None:
        on_connected()
    serve.start(http_options=http_options(settings, port))
    deploy(settings, options, timeout_s)
    return port


def http_options(settings: ServerSettings, port: int) -> dict[str, Any]:
    """Ray's proxy options: where to listen and, with a certificate, HTTPS (the files must exist on every node)."""
    options: dict[str, Any] = {"host": settings.host, "port": port}
    if settings.ssl_certfile is not None:
        options["ssl_certfile"] = str(settings.ssl_certfile)
        options["ssl_keyfile"] = str(settings.ssl_keyfile or settings.ssl_certfile)  # a PEM may hold both
    return options


def deploy(settings: ServerSettings, options: RayOptions, timeout_s: float) -> None:
    """Deploy (or update) the app on the connected cluster; wait until it runs, at most ``timeout_s``.

    ``serve.run`` would wait forever for a replica that cannot be scheduled;
    this waits with a deadline instead.
    """
    serve._run(application(settings, options), name=APP_NAME, route_prefix="/", _blocking=False)
    wait_running(timeout_s)


def wait_running(timeout_s: float) -> None:
    """Block until the app is RUNNING; TimeoutError (with Ray's status message) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications.get(APP_NAME)
        state = str(status.status) if status else "NOT_STARTED"
        if state.endswith("RUNNING"):
            return
        if state.endswith("DEPLOY_FAILED"):
            raise RuntimeError(f"Ray Serve could not deploy {APP_NAME!r}: {status.message}")
        if time.monotonic() > deadline:
            message = status.message if status else ""
            raise TimeoutError(f"the {APP_NAME!r} replicas were not running after {timeout_s:g} s "
                               f"(state {state}; {message or 'no message from Ray'})")
        time.sleep(0.5)


def serve_forever(settings: ServerSettings, options: RayOptions, address: str | None) -> None:
    """``savedmodel serve --ray``: deploy, serve until SIGINT/SIGTERM, then shut Serve and Ray down."""
    stop = threading.Event()

    def handle_signals() -> None:
        # Right after ray.init, which installs its own SIGTERM handler (one that aborts without shutting Serve
        # down), and before the deployment: Ray's proxy may answer health checks before it is RUNNING, and a
        # SIGTERM then must stop what has started (the wait below returns at once).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    try:
        port = start(settings, options, address, on_connected=handle_signals)
        print(f"Ray Serve: {describe(options)} on http://{settings.host}:{port} (Ctrl-C to stop)", flush=True)
        stop.wait()
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()


def describe(options: RayOptions) -> str:
    if options.autoscale is not None:
        scale = f"{options.autoscale.min_replicas} to {options.autoscale.max_replicas} replicas"
    else:
        scale = f"{options.replicas or 1} replicas"
    return f"{scale} of {options.num_cpus:g} CPU and {options.threads_per_replica} thread(s) each"
