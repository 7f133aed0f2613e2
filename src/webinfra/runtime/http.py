"""HTTP calls made from a machine, as values: `HttpRequest` in, `HttpResponse` (or `HttpFailure`) out.

`perform` makes the call from wherever it runs (inside the emulated host's namespace, or in the helper on
a remote machine). `MachineTransport` plugs a machine into httpx, so code above the seam keeps using an
`httpx.Client` while every request travels as data to the machine.
"""

from __future__ import annotations

import functools
import http.client
import os
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from webinfra.runtime.machine import Machine


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    ca_file: str | None = None  # https: the CA the server must chain to (None: the system's)
    timeout: float = 2.0


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class HttpFailure(OSError):
    """Nothing answered (refused, unreachable, timed out, TLS refused). `timed_out` tells which kind."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@functools.lru_cache(maxsize=16)
def _context(ca_file: str | None, _mtime: int) -> ssl.SSLContext:
    # Building a context costs ~0.1 s with the system bundle: once per CA file (and version of it).
    return ssl.create_default_context(cafile=ca_file or None)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    try:
        mtime = os.stat(ca_file).st_mtime_ns if ca_file else 0
    except OSError:
        mtime = 0
    return _context(ca_file, mtime)


def perform(request: HttpRequest) -> HttpResponse:
    """Make the request from here; raise `HttpFailure` when no HTTP answer came back."""
    url = urllib.parse.urlsplit(request.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.hostname or ""
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=request.timeout, context=tls_context(request.ca_file))
    else:
        conn = http.client.HTTPConnection(host, port, timeout=request.timeout)
    target = url.path or "/"
    if url.query:
        target += "?" + url.query
    try:
        conn.request(request.method, target, body=request.body or None, headers=dict(request.headers))
        resp = conn.getresponse()
        return HttpResponse(resp.status, tuple(resp.getheaders()), resp.read())
    except TimeoutError as exc:
        raise HttpFailure(f"{request.url}: timed out ({exc})", timed_out=True) from None
    except (OSError, http.client.HTTPException) as exc:
        raise HttpFailure(f"{request.url}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


class MachineTransport(httpx.BaseTransport):
    """An httpx transport that hands each request, as an `HttpRequest`, to a machine."""

    def __init__(self, machine: Machine, ca_file: str | None = None) -> None:
        self.machine = machine
        self.ca_file = ca_file

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = timeouts.get("read") or timeouts.get("connect") or 5.0
        value = HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=tuple((k, v) for k, v in request.headers.items() if k.lower() != "accept-encoding"),
            body=request.read(),
            ca_file=self.ca_file,
            timeout=float(timeout),
        )
        try:
            answer = self.machine.http(value)
        except HttpFailure as exc:
            if exc.timed_out:
                raise httpx.ReadTimeout(str(exc), request=request) from None
            raise httpx.ConnectError(str(exc), request=request) from None
        headers = [(k, v) for k, v in answer.headers if k.lower() not in ("content-encoding", "transfer-encoding")]
        return httpx.Response(answer.status, headers=headers, content=answer.body, request=request)


def client_on(machine: Machine, *, ca_file: str | None = None, timeout: float = 2.0) -> httpx.Client:
    """An httpx client whose requests are made from `machine` (its loopback, its firewall, its routes)."""
    return httpx.Client(transport=MachineTransport(machine, ca_file), timeout=timeout)
