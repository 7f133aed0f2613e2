"""The dashboard: one HTML page, a small script and a style sheet (static/, no build step), fed by a stream
of live frames (observe/live.py) over Server-Sent Events, plus three actions.

    GET  /                the page (with ?token=...: sets the session cookie, then redirects to /)
    GET  /api/stream      text/event-stream, one frame a second
    GET  /api/frame       one frame (JSON)
    GET  /api/history     ?minutes=5|15|60: time series from Prometheus and event markers (history.py)
    POST /api/weight      {"server", "weight"}       -> Cluster.set_weight
    POST /api/fail        {"host", "mode"}           -> faults.fail (stop, crash, partition...)
    POST /api/recover     {"host"}                   -> faults.recover

Access: a generated token (a secret, 0600, like the others) that `webinfra dashboard` prints once inside
the URL; the page trades it for an HttpOnly, SameSite=Strict cookie. Every other request needs the cookie
(or `Authorization: Bearer <token>`). An action also needs the header `X-Webinfra-Action` (which a page of
another origin cannot send without a CORS preflight, never granted here) and, if the browser sends an
Origin, the dashboard's own. The page asks for a confirmation before every action.

Frames are sampled by one thread for every viewer, and only while someone watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
import typing
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from webinfra.dashboard.history import RANGES_MINUTES, history
from webinfra.errors import EXPECTED, UsageError, is_usage
from webinfra.observe.live import LiveSampler
from webinfra.ops import faults

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster

COOKIE = "wi_dashboard"
# The fault modes `webinfra fail` knows, gentlest first as the page offers them.
FAULT_MODES = tuple(sorted(typing.get_args(faults.Mode), key=lambda m: (m != "stop", m)))
ACTION_HEADER = "x-webinfra-action"
IDLE_AFTER = 5.0  # seconds without a viewer before sampling pauses


class FrameSource:
    """One sampling thread for all viewers: a frame a second while someone asked for one recently."""

    def __init__(self, cluster: Cluster, interval: float = 1.0) -> None:
        self.cluster = cluster
        self.interval = interval
        self.sampler = LiveSampler(cluster)
        self.latest: dict[str, Any] | None = None
        self.version = 0
        self._wanted_at = 0.0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-frames", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=10)
        self.sampler.close()

    def want(self) -> None:
        with self._cond:
            self._wanted_at = time.monotonic()
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and time.monotonic() - self._wanted_at > IDLE_AFTER:
                    self._cond.wait(timeout=1.0)
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                frame = self.sampler.frame()
            except Exception as exc:  # a frame that cannot be taken (host torn down): say so, keep going
                frame = {"error": f"{type(exc).__name__}: {exc}", "taken_at": time.time()}
            with self._cond:
                self.latest, self.version = frame, self.version + 1
                self._cond.notify_all()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def wait_newer(self, version: int, timeout: float) -> tuple[int, dict[str, Any] | None]:
        """Block until a frame newer than `version` exists (or timeout); returns (version, frame)."""
        self.want()
        with self._cond:
            self._cond.wait_for(lambda: self.version > version or self._stop.is_set(), timeout=timeout)
            return self.version, self.latest


def _static(name: str) -> str:
    return resources.files("webinfra.dashboard").joinpath("static", name).read_text()


def create_app(cluster: Cluster, token: str, frames: FrameSource | None = None) -> Starlette:
    source = frames or FrameSource(cluster)

    def authorized(request: Request) -> bool:
        given = request.cookies.get(COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    def refused() -> Response:
        return JSONResponse(
            {"error": "not signed in: open the URL `webinfra dashboard` printed (it carries the token)"},
            status_code=401,
        )

    async def index(request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), token.encode()):
                return HTMLResponse("<h1>Wrong or old token</h1><p>Open the URL printed by the command.</p>", 401)
            response = RedirectResponse("/", status_code=303)  # the token leaves the address bar and history
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            return response
        if not authorized(request):
            return HTMLResponse(
                "<h1>Not signed in</h1><p>Open the URL that <code>webinfra dashboard</code> printed.</p>", 401
            )
        page = _static("index.html").replace("{{cluster}}", cluster.topology.name)
        page = page.replace("{{fault_modes}}", ",".join(FAULT_MODES))
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def frame(request: Request) -> Response:
        if not authorized(request):
            return refused()
        seen = 0 if source.latest is None else source.version - 1  # the latest frame, or wait for the first
        _, latest = await run_in_threadpool(source.wait_newer, seen, 10.0)
        return JSONResponse(latest)

    async def stream(request: Request) -> Response:
        if not authorized(request):
            return refused()

        async def frames() -> AsyncIterator[str]:
            version = 0
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                newer, latest = await run_in_threadpool(source.wait_newer, version, 5.0)
                if newer > version and latest is not None:
                    version = newer
                    yield f"data: {json.dumps(latest)}\n\n"
                else:
                    yield ": keep-alive\n\n"

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)

    async def history_(request: Request) -> Response:
        if not authorized(request):
            return refused()
        minutes = request.query_params.get("minutes", "15")
        if minutes not in {str(m) for m in RANGES_MINUTES}:
            return JSONResponse({"error": f"minutes must be one of {RANGES_MINUTES}"}, status_code=400)
        if cluster.topology.monitoring_host is None:
            return JSONResponse({"error": "no monitoring host in this topology: no history"}, status_code=404)
        return JSONResponse(await run_in_threadpool(history, cluster, int(minutes)))

    async def act(request: Request, fn: Any) -> Response:
        if not authorized(request):
            return refused()
        if request.headers.get(ACTION_HEADER) != "1":
            return JSONResponse({"error": f"missing {ACTION_HEADER} header"}, status_code=403)
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            return JSONResponse({"error": "cross-origin action refused"}, status_code=403)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        return await run_in_threadpool(_run_action, fn, body)

    async def weight(request: Request) -> Response:
        def do(body: dict[str, Any]) -> str:
            server, value = body.get("server"), body.get("weight")
            if not isinstance(server, str) or not isinstance(value, int) or isinstance(value, bool):
                raise _BadInput('give {"server": name, "weight": integer}')
            cluster.set_weight(server, value)
            return f"weight of {server} is now {value}"

        return await act(request, do)

    async def fail(request: Request) -> Response:
        def do(body: dict[str, Any]) -> str:
            host, mode = body.get("host"), body.get("mode", "stop")
            if not isinstance(host, str) or mode not in FAULT_MODES:
                raise _BadInput(f'give {{"host": name, "mode": one of {", ".join(FAULT_MODES)}}}')
            return f"{host}: {faults.fail(cluster, host, None, mode)}"

        return await act(request, do)

    async def recover(request: Request) -> Response:
        def do(body: dict[str, Any]) -> str:
            host = body.get("host")
            if not isinstance(host, str):
                raise _BadInput('give {"host": name}')
            faults.recover(cluster, host)
            return f"{host}: recovered"

        return await act(request, do)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        source.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, source.stop)

    static = StaticFiles(packages=[("webinfra.dashboard", "static")])
    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/frame", frame),
            Route("/api/stream", stream),
            Route("/api/history", history_),
            Route("/api/weight", weight, methods=["POST"]),
            Route("/api/fail", fail, methods=["POST"]),
            Route("/api/recover", recover, methods=["POST"]),
            Mount("/static", app=static, name="static"),
        ],
        lifespan=lifespan,
    )


class _BadInput(UsageError):
    """A request body the action cannot use: 400, like any other bad input."""


def _run_action(fn: Any, body: dict[str, Any]) -> Response:
    try:
        return JSONResponse({"ok": True, "message": fn(body)})
    except EXPECTED as exc:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=400 if is_usage(exc) else 500)
