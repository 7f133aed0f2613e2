"""The machine ops that are not a plain argv, as a command: `python3 -m webinfra.runtime.helper OP`, one
JSON request on stdin, one JSON answer on stdout. A machine reached over a process boundary (SSH) runs
this to answer `probe`, `http` and `exchange`; the emulated machine answers them in-process, with the same
functions (`check_network`, `perform`), so both give the same answers.

    probe     {"probe": {Probe fields}, "timeout": 1.0}         -> {"ok": true}
    http      {HttpRequest fields, "body": base64}              -> {"status", "headers", "body"} | {"error", ...}
    exchange  {"socket": path, "data": base64, "timeout": 3.0}  -> {"data": base64} or {"error"}
"""

from __future__ import annotations

import base64
import json
import socket
import sys
from dataclasses import asdict
from typing import Any

from webinfra.plan.spec import Probe
from webinfra.runtime.http import HttpFailure, HttpRequest, HttpResponse, perform
from webinfra.runtime.probe import check_network


def encode_request(request: HttpRequest) -> dict[str, Any]:
    data = asdict(request)
    data["body"] = base64.b64encode(request.body).decode()
    data["headers"] = [list(h) for h in request.headers]
    return data


def decode_request(data: dict[str, Any]) -> HttpRequest:
    return HttpRequest(
        method=str(data["method"]),
        url=str(data["url"]),
        headers=tuple((str(k), str(v)) for k, v in data.get("headers", [])),
        body=base64.b64decode(data.get("body", "")),
        ca_file=data.get("ca_file"),
        timeout=float(data.get("timeout", 2.0)),
    )


def decode_response(data: dict[str, Any]) -> HttpResponse:
    """The helper's answer to `http`; raises `HttpFailure` when it reports one."""
    if "error" in data:
        raise HttpFailure(str(data["error"]), timed_out=bool(data.get("timed_out")))
    headers = tuple((str(k), str(v)) for k, v in data["headers"])
    return HttpResponse(int(data["status"]), headers, base64.b64decode(data["body"]))


def answer(op: str, req: dict[str, Any]) -> dict[str, Any]:
    if op == "probe":
        fields = dict(req["probe"])
        fields["argv"] = tuple(fields.get("argv", ()))
        return {"ok": check_network(Probe(**fields), float(req.get("timeout", 1.0)))}
    if op == "http":
        try:
            resp = perform(decode_request(req))
        except HttpFailure as exc:
            return {"error": str(exc), "timed_out": exc.timed_out}
        return {
            "status": resp.status,
            "headers": [list(h) for h in resp.headers],
            "body": base64.b64encode(resp.body).decode(),
        }
    if op == "exchange":
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(float(req.get("timeout", 3.0)))
                sock.connect(str(req["socket"]))
                sock.sendall(base64.b64decode(req["data"]))
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"data": base64.b64encode(b"".join(chunks)).decode()}
    raise ValueError(f"unknown op {op!r} (probe, http, exchange)")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m webinfra.runtime.helper probe|http|exchange < request.json", file=sys.stderr)
        return 2
    try:
        reply = answer(argv[0], json.loads(sys.stdin.read()))
    except (ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    json.dump(reply, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
