"""runtime/: the machine seam. Everything above asks a `Machine` for things expressed as values that could
cross a process boundary (later: SSH): run an argv, put/read a file, start/stop/signal/inspect a *named*
service, evaluate a readiness `Probe`, make an HTTP call or talk to a unix socket from the machine, and the
network faults (partition, slow, crash, heal). See `machine.py` for the operations.

    machine.py   the `Machine` protocol and its values (`RunResult`, `ServiceRun`, `ServiceStatus`), `CommandError`
    http.py      `HttpRequest`/`HttpResponse`, `perform` (make the call from here), `client_on(machine)` (httpx)
    probe.py     `check_network` (a TCP/HTTP(S) probe from here), `wait_until`
    helper.py    `python3 -m webinfra.runtime.helper OP` (JSON in, JSON out): the ops a remote machine runs
    emulated/    network namespaces with hostd: the only place that knows PIDs, the kernel's process
                 table, signals, namespace joins and namespace paths. Others import the names
                 `webinfra.runtime.emulated` exports, never its modules (import-linter enforces it).

Imports: plan/ (for `Probe`), parallel.py, and the standard library/httpx. Nothing above.

Where PIDs are still handled outside runtime/emulated, and why (the check: `grep -rnE
"os[.]kill|killpg|/proc|setns|NetnsHost" src/webinfra | grep -vE "runtime/emulated|agent/|site/|testbed/"`
prints nothing):
- testbed/ (`webinfra lab`, the nspawn lab) is itself a provider of machines, like emulated/: it
  supervises its systemd-nspawn and apt proxy processes on the management machine with
  `runtime.emulated.process`' PID files (import-linter allows it that one import).
- agent/ and site/ are daemons that run *on* a machine: the agent signals its own host's mariadbd and
  reads its process state, the site's metrics clean up after dead workers of its own host. They never
  reach another machine's processes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from webinfra.runtime.client import client_on
    from webinfra.runtime.http import HttpFailure, HttpRequest, HttpResponse
    from webinfra.runtime.machine import (
        SIGNALS,
        CommandError,
        FaultError,
        Machine,
        MachineUnreachable,
        RunResult,
        ServiceRun,
        ServiceStatus,
        ServiceUsage,
    )

_HOME = {
    "CommandError": "webinfra.runtime.machine",
    "FaultError": "webinfra.runtime.machine",
    "HttpFailure": "webinfra.runtime.http",
    "HttpRequest": "webinfra.runtime.http",
    "HttpResponse": "webinfra.runtime.http",
    "Machine": "webinfra.runtime.machine",
    "MachineUnreachable": "webinfra.runtime.machine",
    "RunResult": "webinfra.runtime.machine",
    "SIGNALS": "webinfra.runtime.machine",
    "ServiceRun": "webinfra.runtime.machine",
    "ServiceStatus": "webinfra.runtime.machine",
    "ServiceUsage": "webinfra.runtime.machine",
    "client_on": "webinfra.runtime.client",
}
__all__ = [
    "SIGNALS",
    "CommandError",
    "FaultError",
    "HttpFailure",
    "HttpRequest",
    "HttpResponse",
    "Machine",
    "MachineUnreachable",
    "RunResult",
    "ServiceRun",
    "ServiceStatus",
    "ServiceUsage",
    "client_on",
]


def lazy_exports(package: str, home: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports each exported name from its module on first use.

    Lazy on purpose: hostd runs as `python -m webinfra.runtime.emulated.hostd` once per host and must
    start in ~50 ms, without httpx and pydantic (0.4 s), which importing this package and
    runtime/emulated/ eagerly would pull in."""

    def getattr_(name: str) -> Any:
        if name in home:
            return getattr(importlib.import_module(home[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return getattr_


__getattr__ = lazy_exports(__name__, _HOME)
