"""``GET /metrics`` of ``ptune serve``: Prometheus text format (``prometheus-client``).

One registry per app (tests run several apps in one process):

* ``ptune_requests_total{route, code}`` and ``ptune_request_errors_total{route, code}`` (codes
  >= 400), counted by an ASGI middleware outside every check, so 401/413/415 are counted too;
* ``ptune_request_duration_seconds{route}`` — a latency histogram;
* ``ptune_batch_records`` — records per model batch (how well concurrent requests batch);
  ``ptune_record_failures_total`` — records isolated as failing inside the model;
* ``ptune_queue_depth`` — records waiting for the model worker, read at scrape time;
  ``ptune_reloads_total``.

Routes are the app's own paths; any other path counts as ``other`` (a scanner cannot grow the
label set).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """The server's counters; :meth:`render` is the ``/metrics`` body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], int]):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ptune_requests", "HTTP requests answered, by route and status code.",
                                ["route", "code"], registry=r)
        self.errors = Counter("ptune_request_errors", "HTTP requests answered with a status code >= 400.",
                              ["route", "code"], registry=r)
        self.latency = Histogram("ptune_request_duration_seconds", "Time from request to response, by route.",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("ptune_batch_records", "Records per model batch.", buckets=_BATCH_BUCKETS, registry=r)
        self.record_failures = Counter("ptune_record_failures", "Records that failed inside the model (isolated).",
                                       registry=r)
        self.reloads = Counter("ptune_reloads", "Prompt-table reloads that took effect.", registry=r)
        depth = Gauge("ptune_queue_depth", "Records (and control jobs) waiting for the model worker.", registry=r)
        depth.set_function(queue_depth)

    def observe(self, route: str, code: int, seconds: float) -> None:
        self.requests.labels(route, str(code)).inc()
        if code >= 400:
            self.errors.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountRequests:
    """ASGI middleware: every HTTP answer counted in :class:`ServeMetrics` (an exception that
    escapes counts as 500, the answer the app's error handler gives)."""

    def __init__(self, app, metrics: ServeMetrics, routes: Callable[[], frozenset[str]]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        route = path if path in self.routes() else "other"
        status = {"code": 500}
        t0 = time.perf_counter()

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.observe(route, status["code"], time.perf_counter() - t0)
