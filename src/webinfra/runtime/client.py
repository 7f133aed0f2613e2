"""`client_on(machine)`: an httpx client whose every request is made from a machine, as an `HttpRequest` value
handed to `machine.http` (code above the seam keeps using httpx). Apart from http.py so that the values and
`perform` need no httpx (the SSH machine's helper runs on servers with the standard library alone)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from webinfra.runtime.http import HttpFailure, HttpRequest

if TYPE_CHECKING:
    from webinfra.runtime.machine import Machine


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
