"""``create_app(settings)``: the ASGI app serving TF Serving REST and KServe V2 on one port.

>>> from server import ServerSettings, create_app
>>> app = create_app(ServerSettings(models=[{"name": "mnist", "base_path": "models/mnist"}]))  # doctest: +SKIP
>>> # uvicorn.run(app, port=8501)

Nothing is loaded when the app is built: the models are loaded at ASGI
startup (lifespan), before the first request is accepted, and the model
manager polls for new versions until shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import savedmodel
from runtime.errors import InputError
from savedmodel.errors import SavedModelError
from server import tfserving, v2
from server.accesslog import AccessLogMiddleware
from server.batching import Batcher, DirectRunner
from server.config import load_model_config_file
from server.errors import ServingError, error_response
from server.fastpath import HotRoutes
from server.manager import ModelManager
from server.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from server.middleware import BodyLimitMiddleware, CORSMiddleware, decode_body
from server.pool import InferencePool
from server.security import ApiKeyMiddleware, ApiKeys, RateLimiter, RateLimitMiddleware, read_api_key_file
from server.service import InferenceService
from server.settings import ModelConfig, ServerSettings
from server.web_routes import add_web_routes

logger = logging.getLogger("server")

SETTINGS_ENV = "SAVEDMODEL_SERVE_SETTINGS"  # JSON settings for worker processes (--workers N)

DESCRIPTION = """\
Serves versioned model bundles over two protocols on one port:

* the **TensorFlow Serving REST API** (`/v1/models/...`: status, metadata, `:predict`, `:classify`, `:regress`)
* the **KServe V2 / Open Inference Protocol** (`/v2/...`), with the binary tensor data extension

Errors are `{"error": "..."}` with TF Serving's HTTP status codes.
Metrics for Prometheus are at `/monitoring/prometheus/metrics`.
"""


def demo_model() -> ModelConfig:
    """The embedded demo model (the digits CNN shipped with the package)."""
    from savedmodel import demo

    return ModelConfig(name=demo.NAME, base_path=demo.BASE_PATH)


def model_source(settings: ServerSettings) -> tuple[list[ModelConfig], Callable[[], Sequence[ModelConfig]] | None]:
    """The models to serve now, and how to re-read them (None when they cannot change)."""
    if settings.models:
        return list(settings.models), None
    if settings.model_config_file is not None:
        path = settings.model_config_file

        def loader() -> Sequence[ModelConfig]:
            return load_model_config_file(path)

        return list(loader()), loader
    return [demo_model()], None


def _no_builtin_telemetry() -> dict[str, Any]:
    """Turn off the OpenTelemetry hooks of FastAPI versions that have them.

    They check the tracer setup on every request (tens of microseconds);
    this server exports Prometheus metrics instead.
    """
    import inspect

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def limit_blas_threads(n: int) -> None:
    """Cap the BLAS threads of every matrix product (process-wide).

    Several inference threads each running a multi-threaded BLAS product
    oversubscribe the CPUs, and OpenBLAS threads spin while they wait: with
    two inference threads on two cores, merged batches ran three times
    slower than with one BLAS thread each.
    """
    from runtime.blas import limit_threads

    limit_threads(n)
    logger.info("BLAS threads per inference: %d", n)


def default_blas_threads(inference_threads: int) -> int:
    """BLAS threads per inference when ``--intra-op-parallelism`` is 0: the CPUs but one, left to the event
    loop that parses the requests, divided among the inference threads; at least 1.

    OpenBLAS's threads spin after each product, so BLAS threads on every CPU take the event loop's: with
    batching (one batch thread) on 2 CPUs and the CNN of bench/bench_server.py over TF Serving JSON, two
    BLAS threads instead of one gave a p99 of 10.6-16.8 ms instead of 6.8-7.1 ms at 8 clients and 2.0-8.7
    ms instead of 1.3-1.9 ms at 1 client, for the same requests/s (docs/SERVING.md).
    """
    return max(1, ((os.cpu_count() or 1) - 1) // inference_threads)


def create_app(settings: ServerSettings | None = None, log_requests: bool = False) -> FastAPI:
    """Build the app for ``settings`` (default: the demo model on the default port).

    With ``log_requests`` the app writes the access log itself (``server.accesslog``); the CLI turns
    uvicorn's off. Off by default, for ASGI servers that write their own.
    """
    settings = settings or ServerSettings()
    configs, loader = model_source(settings)
    manager = ModelManager(
        configs,
        poll_wait_seconds=settings.file_system_poll_wait_seconds,
        warmup=settings.enable_model_warmup,
        config_loader=loader,
        config_poll_wait_seconds=settings.model_config_file_poll_wait_seconds,
    )
    metrics = Metrics(lambda: {name: [s.state for s in manager.status(name, missing_ok=True)]
                               for name in manager.names()}, known=manager.serves)
    threads = settings.batching.num_batch_threads if settings.enable_batching else settings.num_inference_threads
    executor = InferencePool(threads, "inference")
    batcher = Batcher(settings.batching, executor, metrics) if settings.enable_batching else None
    service = InferenceService(manager, DirectRunner(executor, metrics), batcher, settings.request_timeout_ms,
                               settings.max_tensor_elements)
    keys = api_keys(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limit_blas_threads(settings.intra_op_parallelism or default_blas_threads(threads))
        await asyncio.to_thread(manager.start)
        try:
            yield
        finally:
            # The ASGI server has stopped accepting and waited for the requests in flight; run what is
            # still queued so that no accepted request loses its answer.
            if isinstance(service.batcher, Batcher):  # the one in use: embedders may have replaced it
                await service.batcher.drain(settings.graceful_shutdown_timeout)
            await asyncio.to_thread(manager.stop)
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="savedmodel model server", version=savedmodel.__version__, description=DESCRIPTION,
                  lifespan=lifespan, **_no_builtin_telemetry())
    app.state.settings = settings
    app.state.manager = manager
    app.state.service = service
    app.state.metrics = metrics

    async def read_body(request: Request) -> bytes:
        body = await request.body()
        return decode_body(body, request.headers.get("content-encoding"), settings.max_body_bytes)

    tfs_router, tfs_infer = tfserving.build_router(service, read_body)
    v2_router, v2_infer, v2_health = v2.build_router(service, read_body)
    app.include_router(tfs_router)
    app.include_router(v2_router)
    add_web_routes(app, manager)

    @app.get(settings.metrics_path, tags=["operations"], summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # One handler for everything; the specific classes are listed so that Starlette handles them inside
    # the middleware stack (metrics see their status), Exception is the last resort outside it.
    for cls in (ServingError, InputError, SavedModelError, StarletteHTTPException, RequestValidationError,
                Exception):
        app.add_exception_handler(cls, error_response)

    # Starlette wraps in reverse order: CORS is outermost, so even a 401 or 413 carries its headers;
    # the inference and health routes are dispatched innermost, inside the body limit, the rate limit, the
    # API key check and the metrics. The key is checked before the rate limit so that it counts per key.
    app.add_middleware(HotRoutes, routes=[tfs_infer, v2_infer], gets=v2_health)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    if settings.rate_limit:
        app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(settings.rate_limit, settings.burst))
    if keys is not None:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.enable_cors:
        app.add_middleware(CORSMiddleware)
    if log_requests:
        app.add_middleware(AccessLogMiddleware)
    return app


def api_keys(settings: ServerSettings) -> ApiKeys | None:
    """The API keys ``settings`` require (from its key file and its digests), or None when keys are off."""
    if not settings.requires_api_key:
        return None
    digests = list(settings.api_key_digests)
    if settings.api_key_file is not None:
        digests += read_api_key_file(settings.api_key_file)
    return ApiKeys(digests)


def app_from_environment() -> Any:
    """App factory for worker processes: settings come as JSON in $SAVEDMODEL_SERVE_SETTINGS."""
    raw = os.environ.get(SETTINGS_ENV)
    settings = ServerSettings.model_validate_json(raw) if raw else ServerSettings()
    return create_app(settings, log_requests=settings.access_log)
