"""Readiness probes, and polling with a deadline (never a fixed sleep).

`check_network` makes a TCP or HTTP(S) probe from wherever it runs; a machine's `probe` op runs it on the
machine (so it reaches services bound to the host's loopback, whatever firewall the host has), and runs a
`command` probe with its own `run`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from webinfra.plan.spec import Probe
from webinfra.runtime.http import HttpFailure, HttpRequest, perform


def check_network(probe: Probe, timeout: float = 1.0) -> bool:
    """One TCP or HTTP(S) attempt from here; an HTTP probe wants a 2xx, an HTTPS one a certificate that
    chains to `ca_file` and carries the address dialled."""
    if probe.kind == "tcp":
        try:
            with socket.create_connection((probe.address, probe.port), timeout=timeout):
                return True
        except OSError:
            return False
    try:
        return 200 <= perform(probe_request(probe, timeout)).status < 300
    except HttpFailure:
        return False


def probe_request(probe: Probe, timeout: float = 1.0) -> HttpRequest:
    """The GET an HTTP(S) probe makes (`status` makes it through `Machine.http` to read the answer too)."""
    if probe.kind not in ("http", "https"):
        raise ValueError(f"not a network probe: {probe.kind}")
    return HttpRequest(
        "GET",
        f"{probe.kind}://{probe.address}:{probe.port}{probe.path}",
        headers=(("Host", probe.host_header or probe.address),),
        ca_file=probe.ca_file or None,
        timeout=timeout,
    )


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
