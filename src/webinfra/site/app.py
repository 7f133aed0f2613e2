"""The site's ASGI application factory.

Run it with::

    uvicorn webinfra.site.app:create_app --factory --loop uvloop --http httptools

with ``WEBINFRA_SITE_CONFIG`` naming the JSON config.  Besides wiring routes,
this module makes sure *every* response - errors, 404s, 405s and crashes
included - carries ``X-Served-By`` and ``X-App-Version``, and that every error
is JSON ``{"error": ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

from webinfra.site.auth import AdminToken, Signer
from webinfra.site.config import SiteConfig, load_config
from webinfra.site.db import Database
from webinfra.site.dbconn import DBUnavailable
from webinfra.site.entries import EntryStore
from webinfra.site.metrics import ROUTE as METRICS_ROUTE
from webinfra.site.metrics import MetricsMiddleware, SiteMetrics
from webinfra.site.routes import ROUTES, error_response
from webinfra.site.validation import InputError

log = logging.getLogger(__name__)


class IdentityHeaders:
    """Pure-ASGI middleware adding ``X-Served-By`` / ``X-App-Version`` to each response.

    Pure ASGI rather than BaseHTTPMiddleware: it is on every request, including
    the load balancer's health checks, so it should cost next to nothing.
    """

    def __init__(self, app: ASGIApp, host: str, version: str) -> None:
        self.app = app
        self.headers = identity_headers(host, version)
        self.raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_identity(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.raw]}
            await send(message)

        await self.app(scope, receive, send_with_identity)


def identity_headers(host: str, version: str) -> dict[str, str]:
    """The headers that say which app server and code version answered."""
    return {"X-Served-By": host, "X-App-Version": version}


def _handlers(config: SiteConfig) -> dict[Any, ExceptionHandler]:
    async def input_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InputError)
        return error_response(exc.status, exc.message, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail).lower(), dict(exc.headers or {}))

    async def db_unavailable(request: Request, exc: Exception) -> Response:
        log.error("503 for %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "database unavailable", {"Retry-After": "1"})

    async def client_gone(request: Request, exc: Exception) -> Response:
        # Nobody will read this; answering keeps the disconnect out of the error log.
        return error_response(400, "client disconnected")

    async def crash(request: Request, exc: Exception) -> Response:
        # Starlette runs this handler outside all user middleware, so the identity
        # headers must be added here explicitly.
        log.error("500 for %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error", identity_headers(config.host, config.version))

    return {
        InputError: input_error,
        HTTPException: http_error,
        DBUnavailable: db_unavailable,
        ClientDisconnect: client_gone,
        Exception: crash,
    }


def create_app(config: SiteConfig | None = None) -> Starlette:
    """Build the app from ``config`` or, by default, from ``$WEBINFRA_SITE_CONFIG``.

    Fails fast on a bad config or an unreadable password or secret file; it opens no
    database connection (pools are created on first use).
    """
    if config is None:
        config = load_config()
    db = Database(config.db, config.db.read_password())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await db.close()

    metrics = SiteMetrics(ROUTES, db)
    app = Starlette(
        routes=[*ROUTES, METRICS_ROUTE],
        middleware=[
            Middleware(IdentityHeaders, host=config.host, version=config.version),
            Middleware(MetricsMiddleware, metrics=metrics),
        ],
        exception_handlers=_handlers(config),
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.db = db
    app.state.stats = db.stats
    app.state.metrics = metrics
    app.state.store = EntryStore(db, config.host)
    app.state.signer = Signer.from_config(config)
    app.state.admin = AdminToken.from_config(config)
    # autoescape on: entry text is user input rendered into HTML.
    app.state.templates = Environment(
        loader=PackageLoader("webinfra.site", "templates"), autoescape=True, undefined=StrictUndefined
    )
    return app
