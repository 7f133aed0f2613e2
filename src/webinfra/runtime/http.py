"""HTTP calls made from a machine, as values: `HttpRequest` in, `HttpResponse` (or `HttpFailure`) out.

`perform` makes the call from wherever it runs (inside the emulated host's namespace, or in the helper on
a remote machine). `client.py`'s `MachineTransport` plugs a machine into httpx. This module needs only the
standard library: the SSH machine ships it to servers as part of its helper (runtime/ssh.py).
"""

from __future__ import annotations

import functools
import http.client
import os
import ssl
import urllib.parse
from dataclasses import dataclass


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
