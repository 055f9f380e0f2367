"""Prometheus metrics: requests by model and status, latency, batch sizes, version states.

Every app has its own registry (two apps in one process do not clash). The
request metrics are recorded by ``MetricsMiddleware`` from labels a route
puts in the ASGI scope; the version-state gauge is read from the manager at
scrape time.

Exposed at ``/monitoring/prometheus/metrics`` (TF Serving's path):

- ``serving_requests_total{model,protocol,api,code}``: requests by HTTP status (``model="_unknown"``
  for names that are not served)
- ``serving_request_latency_seconds{model,protocol,api}``: latency of successful requests
- ``serving_batch_size_rows{model}`` / ``serving_batch_size_requests{model}``: per executed batch
- ``serving_batch_padding_rows_total{model}``: rows added to reach an allowed batch size
- ``serving_batch_queue_wait_seconds{model}``: time a request waited to be batched
- ``serving_runtime_latency_seconds{model}``: time the model itself took per successful call (one
  request, or one merged batch), measured in the inference thread: a request's latency less this is
  what serving it cost
- ``serving_model_versions{model,state}``: how many versions of a model are in each state

Under ``--workers N`` the CLI points prometheus-client's multiprocess mode at a fresh directory
(``PROMETHEUS_MULTIPROC_DIR``): every worker writes its counts there, and a scrape, whichever
worker answers it, sums them over all workers. The version-state gauge stays the answering
worker's (each worker loads the same models).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from server.middleware import StatusWatch

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's switch to its multiprocess mode
SCOPE_KEY = "serving.metric_labels"  # routes store (model, protocol, api) here
UNKNOWN_MODEL = "_unknown"  # the model label of requests naming a model that is not served
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, list[str]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from server.manager import STATES

        family = GaugeMetricFamily("serving_model_versions", "Versions of a model in each state",
                                   labels=["model", "state"])
        for model, states in self._snapshot().items():
            for state in STATES:
                family.add_metric([model, state], states.count(state))
        yield family


class Metrics:
    """The server's metrics in a registry of their own."""

    def __init__(self, states: Callable[[], dict[str, list[str]]] | None = None,
                 known: Callable[[str], bool] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("serving_requests", "Requests by model, protocol, API and HTTP status",
                                ["model", "protocol", "api", "code"], registry=self.registry)
        self.latency = Histogram("serving_request_latency_seconds", "Latency of successful requests",
                                 ["model", "protocol", "api"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("serving_batch_size_rows", "Rows per executed batch", ["model"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("serving_batch_size_requests", "Requests merged per executed batch",
                                        ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_padding = Counter("serving_batch_padding_rows", "Rows added to reach an allowed batch size",
                                     ["model"], registry=self.registry)
        self.queue_wait = Histogram("serving_batch_queue_wait_seconds", "Time a request waited to be batched",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.runtime_latency = Histogram("serving_runtime_latency_seconds",
                                         "Time the model took per successful call (one request or one batch)",
                                         ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._runtime_children: dict[str, Any] = {}
        self._known = known
        self._children: dict[tuple[tuple[str, str, str], int], tuple[Any, Any]] = {}
        self._states = None if states is None else _StateCollector(states)
        if self._states is not None:
            self.registry.register(self._states)

    def batch_done(self, model: str, requests: int, rows: int, padded_rows: int, waits: list[float]) -> None:
        self.batch_rows.labels(model).observe(rows)
        self.batch_requests.labels(model).observe(requests)
        if padded_rows > rows:
            self.batch_padding.labels(model).inc(padded_rows - rows)
        wait = self.queue_wait.labels(model)
        for w in waits:
            wait.observe(w)

    def runtime_done(self, model: str, seconds: float) -> None:
        """Called from an inference thread after a model call (``model`` is a served name)."""
        child = self._runtime_children.get(model)
        if child is None:
            child = self._runtime_children[model] = self.runtime_latency.labels(model)
        child.observe(seconds)

    def request_done(self, labels: tuple[str, str, str], status: int, seconds: float) -> None:
        key = (labels, status)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a dict lookup per call: keep the children
            model, protocol, api = labels
            if self._known is not None and not self._known(model):
                model = UNKNOWN_MODEL  # names from URLs must not grow the series without bound
            children = (self.requests.labels(model, protocol, api, str(status)),
                        self.latency.labels(model, protocol, api) if status == 200 else None)
            if len(self._children) < 10_000:  # bounded: labels come from URLs
                self._children[key] = children
        children[0].inc()
        if children[1] is not None:
            children[1].observe(seconds)

    def render(self) -> bytes:
        """The exposition text; in multiprocess mode the request and batch metrics of every worker, summed."""
        if not os.environ.get(MULTIPROC_ENV):
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        if self._states is not None:
            registry.register(self._states)
        return generate_latest(registry)


# Requests refused before any route saw them (no API key, a wrong one, over the rate limit, too large a body)
# are labelled from their path as the route would have labelled them; the protocol names are the routes'.
_REFUSED = frozenset({401, 403, 413, 429})
_TFS_PATH = re.compile(r"/v1/models/(?P<model>[^/:]+)(?:/versions/[^/:]+|/labels/[^/:]+)?"
                       r"(?::(?P<method>predict|classify|regress)|/(?P<metadata>metadata))?")
_V2_PATH = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/[^/]+)?(?:/(?P<api>infer|ready))?")


def path_labels(path: str) -> tuple[str, str, str] | None:
    """The (model, protocol, api) labels the route serving ``path`` gives its requests; None for other paths."""
    if (m := _TFS_PATH.fullmatch(path)) is not None:
        return m["model"], "tfserving", m["method"] or ("metadata" if m["metadata"] else "status")
    if (m := _V2_PATH.fullmatch(path)) is not None:
        return m["model"], "v2", m["api"] or "metadata"
    return None


class MetricsMiddleware:
    """Pure ASGI middleware timing every request a route has labelled with its model, and counting the model
    requests refused before they reach a route."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        watch = StatusWatch(send)
        try:
            await self.app(scope, receive, watch)
        finally:
            labels = scope.get(SCOPE_KEY)
            if labels is None and watch.status in _REFUSED:
                labels = path_labels(scope["path"])
            if labels is not None:
                self.metrics.request_done(labels, watch.status, time.perf_counter() - started)
