"""HTTP as values: `perform`, httpx through a machine (`MachineTransport`), probes, and the helper command
that answers the same ops across a process boundary (what an SSH machine would run)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from webinfra.plan.spec import Probe
from webinfra.runtime import HttpFailure, HttpRequest, HttpResponse, client_on
from webinfra.runtime.helper import decode_response, encode_request
from webinfra.runtime.http import perform
from webinfra.runtime.probe import check_network


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 500 if self.path == "/broken" else 200
        body = json.dumps({"path": self.path, "host": self.headers["Host"]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Here:
    """A machine whose `http` is made right here (what the emulated one does inside its namespace)."""

    def __init__(self) -> None:
        self.seen: list[HttpRequest] = []

    def http(self, request: HttpRequest) -> HttpResponse:
        self.seen.append(request)
        return perform(request)


def test_httpx_through_a_machine_sends_values_and_gets_answers(server: str) -> None:
    machine = _Here()
    with client_on(machine, timeout=2.0) as client:  # type: ignore[arg-type]  # only `http` is needed
        got = client.get(f"{server}/healthz?x=1", headers={"Host": "www.example"})
        posted = client.post(f"{server}/v3/kv/put", json={"key": "a"})
    assert got.status_code == 200 and got.json() == {"path": "/healthz?x=1", "host": "www.example"}
    assert posted.json() == {"key": "a"}
    assert [r.method for r in machine.seen] == ["GET", "POST"] and machine.seen[0].timeout == 2.0


def test_nothing_listening_is_an_httpx_connect_error() -> None:
    with client_on(_Here()) as client, pytest.raises(httpx.ConnectError):  # type: ignore[arg-type]
        client.get(f"http://127.0.0.1:{_free_port()}/")
    with pytest.raises(HttpFailure):
        perform(HttpRequest("GET", f"http://127.0.0.1:{_free_port()}/"))


def test_probes_tcp_and_http(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    assert check_network(Probe("tcp", "127.0.0.1", port))
    assert check_network(Probe("http", "127.0.0.1", port, "/healthz"))
    assert not check_network(Probe("http", "127.0.0.1", port, "/broken"))  # 500 is not ready
    assert not check_network(Probe("tcp", "127.0.0.1", _free_port()))


def _helper(op: str, request: dict[str, object]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "webinfra.runtime.helper", op],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answer: dict[str, object] = json.loads(proc.stdout)
    return answer


def test_the_helper_answers_like_the_in_process_ops(server: str, tmp_path: Path) -> None:
    request = HttpRequest("GET", f"{server}/x", headers=(("Host", "h"),))
    remote = decode_response(_helper("http", encode_request(request)))
    assert (remote.status, json.loads(remote.body)) == (200, json.loads(perform(request).body))
    port = int(server.rsplit(":", 1)[1])
    probe = {"kind": "http", "address": "127.0.0.1", "port": port, "path": "/broken"}
    assert _helper("probe", {"probe": probe}) == {"ok": False}
    with pytest.raises(HttpFailure):
        decode_response(_helper("http", encode_request(HttpRequest("GET", f"http://127.0.0.1:{_free_port()}/"))))
    bad = subprocess.run([sys.executable, "-m", "webinfra.runtime.helper", "nope"], input=b"{}", capture_output=True)
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1  # one line, no traceback
