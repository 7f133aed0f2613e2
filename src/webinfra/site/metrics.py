"""The site's Prometheus metrics, served at ``GET /metrics`` on the app port (Prometheus scrapes each app
server directly; HAProxy denies the path on the public frontend, and the app refuses a request for it that
came through a proxy, i.e. carries ``X-Forwarded-For``).

* ``site_requests_total{route,method,status}`` and ``site_request_duration_seconds{route}`` (histogram):
  counted by a pure-ASGI middleware. ``route`` is the matched route's template (``/api/entries/{entry_id}``),
  never the raw path, so the number of series stays bounded; unmatched paths count as ``other``.
* ``site_db_pool_in_use{endpoint}``: connections checked out of each DB endpoint's pool.
* ``site_ryw_waits_total``, ``site_ryw_fallbacks_total``, ``site_reader_fallbacks_total``,
  ``site_db_unavailable_total``: the database layer's :class:`~webinfra.site.db.DBStats`, copied into
  counters after each request and before each scrape (cheap: a few integer comparisons).

Workers: with one uvicorn worker (the default) metrics live in the process. With several, each worker would
only know its own requests, so prometheus_client's multiprocess mode is used: ``WEBINFRA_METRICS_DIR`` (set
by the plan when ``[app] workers > 1``) names a directory; each uvicorn run gets a fresh subdirectory named
after its supervisor's PID (the workers' parent), where every worker writes its values and from which any
worker answers a scrape with the sum. Subdirectories of runs that are gone are removed at start.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from webinfra.site.db import Database

METRICS_DIR_ENV = "WEBINFRA_METRICS_DIR"


def _multiprocess_dir() -> Path | None:
    """Set up prometheus_client's multiprocess mode when asked; must run before prometheus_client loads."""
    base = os.environ.get(METRICS_DIR_ENV)
    if not base:
        return None
    root = Path(base)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.name.isdigit() and old.name != str(os.getppid()) and not Path(f"/proc/{old.name}").exists():
            shutil.rmtree(old, ignore_errors=True)
    mine = root / str(os.getppid())
    mine.mkdir(exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mine)
    return mine


MULTIPROCESS_DIR = _multiprocess_dir()

from prometheus_client import (  # noqa: E402  (after the multiprocess set-up above)
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

disable_created_metrics()  # no `*_created` series: fewer samples per scrape, and nobody reads them
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "other"

REQUESTS = Counter("site_requests_total", "HTTP requests answered", ("route", "method", "status"))
DURATION = Histogram("site_request_duration_seconds", "Time to answer a request, by route", ("route",), buckets=BUCKETS)
POOL_IN_USE = Gauge(
    "site_db_pool_in_use",
    "Database connections checked out of the endpoint's pool",
    ("endpoint",),
    multiprocess_mode="livesum",
)
# DBStats field -> counter.
DB_COUNTERS = {
    "ryw_waits": Counter("site_ryw_waits_total", "Read-your-writes waits (MASTER_GTID_WAIT) issued on replicas"),
    "ryw_fallbacks": Counter(
        "site_ryw_fallbacks_total", "Reads sent to the writer because a replica had not caught up in time"
    ),
    "reader_fallbacks": Counter(
        "site_reader_fallbacks_total", "Reads retried on the next endpoint after one failed mid-read"
    ),
    "unavailable": Counter("site_db_unavailable_total", "Calls that found no usable database endpoint (503)"),
}


class SiteMetrics:
    """Per app: the route templates of its router, and the database whose counters it copies."""

    def __init__(self, routes: list[Any], db: Database) -> None:
        self.templates: dict[Any, str] = {r.endpoint: r.path for r in routes if hasattr(r, "endpoint")}
        self.db = db
        self._seen = dict.fromkeys(DB_COUNTERS, 0)
        self._children: dict[tuple[str, str, str], Any] = {}
        # Every route's latency series exists from the start, at zero: a series born with its first requests
        # already counted shows no increase to rate() (Prometheus's first sample of it is that count), so a
        # burst between two scrapes right after a start would never show in latency.
        self._durations: dict[str, Any] = {route: DURATION.labels(route) for route in self.templates.values()}

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = self.templates.get(scope.get("endpoint"), UNMATCHED)
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        key = (route, method, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = REQUESTS.labels(*key)
        child.inc()
        duration = self._durations.get(route)
        if duration is None:
            duration = self._durations[route] = DURATION.labels(route)
        duration.observe(seconds)

    def sync(self) -> None:
        """Bring the DB counters and pool gauges up to date with the database layer."""
        stats = self.db.stats
        for field, counter in DB_COUNTERS.items():
            value = getattr(stats, field)
            if value > self._seen[field]:
                counter.inc(value - self._seen[field])
                self._seen[field] = value
        for endpoint, in_use in self.db.pool_in_use().items():
            POOL_IN_USE.labels(endpoint).set(in_use)

    def exposition(self) -> bytes:
        self.sync()
        if MULTIPROCESS_DIR is None:
            return generate_latest(REGISTRY)
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


class MetricsMiddleware:
    """Pure ASGI (it is on every request): counts each answer by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: SiteMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe(scope, status, time.perf_counter() - started)
            self.metrics.sync()


async def metrics_endpoint(request: Request) -> Response:
    if "x-forwarded-for" in request.headers:
        # Came through nginx or HAProxy: the metrics are for Prometheus on the app port only.
        return JSONResponse({"error": "not found"}, status_code=404)
    metrics: SiteMetrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


ROUTE = Route("/metrics", metrics_endpoint, methods=["GET"])
