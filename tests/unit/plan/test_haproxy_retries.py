"""The rendered HAProxy retry rules, run by the real haproxy on loopback against two stand-in web servers.

One server answers everything; the other one is broken (502 like nginx with its app dead, or silence like a
host cut off). Reads and POSTs carrying an Idempotency-Key must be retried on the good server; other writes
must not be replayed. The config is the one `render_haproxy` writes, moved onto loopback ports.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from topology_cases import GOOD

from webinfra.model import parse_topology
from webinfra.plan.daemons.haproxy import LB_KEYED_WRITE_TIMEOUT_MS, LB_READ_TIMEOUT_MS, render_haproxy
from webinfra.state import Layout

HAPROXY = shutil.which("haproxy", path="/usr/sbin:/usr/bin:/sbin:/bin")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")


class _QuietServer(ThreadingHTTPServer):
    """A handler still sleeping when the test ends writes to a closed connection: socketserver would print
    that traceback to whatever sys.stderr is then, another test's captured output (seen as a flaky CLI test)."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


def _server(mode: str, seen: list[str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            if self.path != "/healthz":
                seen.append(f"{self.command} {self.headers.get('idempotency-key', '-')}")
            if self.path != "/healthz" and mode == "502":
                status, body = 502, b"bad gateway"
            elif self.path != "/healthz" and mode == "hang":
                time.sleep(4)
                status, body = 200, b"late"
            else:
                status, body = 200, b"good"
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = _QuietServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _loopback_config(tmp: Path, port: int, servers: list[int]) -> Path:
    """The rendered config of the reference design (writes to any server), on loopback ports."""
    topo = parse_topology('[tls]\nenabled = false\n[lb]\nroute_writes_to = "any"\n' + GOOD)
    cfg = render_haproxy(topo, Layout(tmp / "state"), "lb-01")
    cfg = re.sub(r"^\s*(stats socket|server-state-file|load-server-state-from-file).*\n", "", cfg, flags=re.M)
    cfg = re.sub(r"bind \S+:\d+", f"bind 127.0.0.1:{port}", cfg)
    ports = iter(servers)
    cfg = re.sub(r"(server \S+) \S+:\d+", lambda m: f"{m.group(1)} 127.0.0.1:{next(ports)}", cfg)
    path = tmp / "haproxy.cfg"
    path.write_text(cfg)
    return path


@pytest.fixture
def lb(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str], list[str]]]:
    """HAProxy in front of a broken server (mode from the test's param) and a good one."""
    good_seen: list[str] = []
    bad_seen: list[str] = []
    servers = [_server(request.param, bad_seen), _server("ok", good_seen)]
    with socket.socket() as sock:  # a free port for HAProxy's frontend
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cfg = _loopback_config(tmp_path, port, [s.server_address[1] for s in servers])
    assert HAPROXY is not None
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", bad_seen, good_seen
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for s in servers:
            s.shutdown()
            s.server_close()


def _send(url: str, method: str, key: str | None = None, n: int = 6) -> list[tuple[int, float]]:
    out = []
    headers = {"Idempotency-Key": key} if key else {}
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(n):
            started = time.monotonic()
            body = {"json": {"text": f"t{i}"}} if method == "POST" else {}
            response = client.request(method, "/api/entries", headers=headers, **body)
            out.append((response.status_code, time.monotonic() - started))
    return out


@pytest.mark.parametrize("lb", ["502"], indirect=True)
def test_reads_and_keyed_posts_are_retried_other_writes_are_not(lb: tuple[str, list[str], list[str]]) -> None:
    url, bad_seen, _good_seen = lb
    assert {status for status, _ in _send(url, "GET")} == {200}
    assert {status for status, _ in _send(url, "POST", key="k-1")} == {200}
    assert "POST k-1" in bad_seen  # it did reach the broken server first, and was replayed elsewhere
    assert 502 in {status for status, _ in _send(url, "POST")}
    assert 502 in {status for status, _ in _send(url, "DELETE")}


@pytest.mark.parametrize("lb", ["hang"], indirect=True)
def test_a_silent_server_costs_a_read_or_keyed_post_one_timeout(lb: tuple[str, list[str], list[str]]) -> None:
    url, bad_seen, _good_seen = lb
    reads = _send(url, "GET", n=4)
    assert {status for status, _ in reads} == {200}
    assert max(seconds for _, seconds in reads) < LB_READ_TIMEOUT_MS / 1000 + 2.0
    assert max(seconds for _, seconds in reads) >= LB_READ_TIMEOUT_MS / 1000 * 0.9  # one did wait
    posts = _send(url, "POST", key="k-2", n=4)
    assert {status for status, _ in posts} == {200}
    assert max(seconds for _, seconds in posts) < LB_KEYED_WRITE_TIMEOUT_MS / 1000 + 2.0
    assert "POST k-2" in bad_seen
