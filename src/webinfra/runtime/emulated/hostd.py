"""hostd: the small init process of an emulated host.

It runs inside the host's network namespace and is the parent (and child subreaper) of every daemon
webinfra starts there, so exited daemons are reaped, as a real host's init would, instead of lingering as
zombies. The CLI asks it to spawn a process over a unix socket, one JSON line per request:

    {"op": "spawn", "argv": [...], "log": "/path", "env": {...}, "cwd": "/path"}  ->  {"pid": 1234}
    {"op": "ping"}                                                                  ->  {"pid": <hostd pid>}

Stopping is done by the caller with signals to the tracked process group (see `process.py` and `netns.py`).
Run as: python -m webinfra.runtime.emulated.hostd SOCKET_PATH
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36


class HostdError(RuntimeError):
    pass


def _reap_forever() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.2)
        except InterruptedError:
            continue


def _spawn(req: dict[str, Any]) -> dict[str, Any]:
    argv = [str(a) for a in req["argv"]]
    log_path = Path(req["log"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
    with open(log_path, "ab", buffering=0) as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=req.get("cwd") or "/",
        )
    # The reaper thread owns waiting; keep Popen from trying too.
    proc.returncode = 0
    return {"pid": proc.pid}


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline(1 << 20)
        try:
            req = json.loads(line)
            if req.get("op") == "spawn":
                resp = _spawn(req)
            elif req.get("op") == "ping":
                resp = {"pid": os.getpid()}
            else:
                resp = {"error": f"unknown op {req.get('op')!r}"}
        except Exception as exc:  # report any failure to the caller rather than die
            resp = {"error": f"{exc.__class__.__name__}: {exc}"}
        self.wfile.write(json.dumps(resp).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(sock_path: str) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    threading.Thread(target=_reap_forever, name="reaper", daemon=True).start()
    path = Path(sock_path)
    path.unlink(missing_ok=True)
    with _Server(str(path), _Handler) as server:
        os.chmod(path, 0o600)
        server.serve_forever()


def request(sock_path: Path, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a host's hostd and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(sock_path))
        except OSError as exc:
            raise HostdError(f"hostd at {sock_path} is not reachable: {exc}") from None
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    resp: dict[str, Any] = json.loads(data or b"{}")
    if "error" in resp:
        raise HostdError(resp["error"])
    return resp


if __name__ == "__main__":
    serve(sys.argv[1])
