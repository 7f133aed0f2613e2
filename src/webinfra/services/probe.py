"""Readiness probes, polled with a deadline (never a fixed sleep). The supervisor runs them on the host
(`Host.call`), so they reach services bound to the host's loopback, whatever firewall the host has."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable

from webinfra.plan.spec import Probe


def _check(probe: Probe, timeout: float) -> bool:
    try:
        if probe.kind == "tcp":
            with socket.create_connection((probe.address, probe.port), timeout=timeout):
                return True
        if probe.kind == "https":
            # The server's certificate must chain to our CA and carry the address we dial.
            context = ssl.create_default_context(cafile=probe.ca_file or None)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                probe.address, probe.port, timeout=timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(probe.address, probe.port, timeout=timeout)
        try:
            conn.request("GET", probe.path, headers={"Host": probe.host_header or probe.address})
            return 200 <= conn.getresponse().status < 300
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return False


def probe_once(probe: Probe, timeout: float = 1.0) -> bool:
    """One attempt, from wherever the caller runs; `Host.call(lambda: probe_once(p))` runs it on a host."""
    return _check(probe, timeout)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
