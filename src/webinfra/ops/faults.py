"""Fault injection, for tests and for people who want to see what breaks:

    crash      SIGKILL: one service, or every process of the host with its link cut (a host that dies)
    stop       a clean stop: one service, or all of the host's services
    partition  the host's traffic dropped (processes keep running)
    slow       the host made slow: 200 ms of delay on everything it sends, or a CPU quota where the kernel
               has no netem
    freeze     one service stopped in its tracks (SIGSTOP to its processes): alive, holding its sockets
               and its state, doing nothing — a stall, a GC pause, a VM freeze. `recover` resumes it.

How each is done is the machine's business (`Machine.partition`, `slow`, `crash`, `heal`,
`signal_service`); this module records faults in <cluster>/faults.json (shown by `status`) and every
injection/recovery as an event.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from webinfra.control import events
from webinfra.errors import ClusterError, UsageError
from webinfra.runtime import FaultError
from webinfra.services import supervisor

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster

Mode = Literal["crash", "stop", "partition", "slow", "freeze"]
MODES: tuple[str, ...] = ("crash", "stop", "partition", "slow", "freeze")


def active_faults(cluster: Cluster) -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads(cluster.layout.faults_file.read_text())
        return data
    except (FileNotFoundError, ValueError):
        return {}


def _remember(cluster: Cluster, host: str, what: str | None) -> None:
    faults = active_faults(cluster)
    if what is None:
        faults.pop(host, None)
    else:
        faults[host] = what
    cluster.layout.faults_file.write_text(json.dumps(faults, indent=2))


def fail(cluster: Cluster, host: str, service: str | None = None, mode: Mode = "crash") -> str:
    """Inject a fault; returns a one-line description."""
    hp = cluster.host_plan(host)
    if service is not None:
        cluster.service_plan(host, service)
    machine = cluster.hosts[host]
    if mode == "slow":
        if service is not None:
            raise UsageError("--mode slow delays a whole host's traffic; it takes no --service")
        try:
            what = machine.slow()
        except FaultError as exc:
            raise ClusterError(str(exc)) from None
    elif mode == "partition":
        if service is not None:
            raise UsageError("--mode partition cuts a whole host off; it takes no --service")
        what = machine.partition()
    elif mode == "freeze":
        if service is None:
            raise UsageError("--mode freeze stops one service's processes; give --service")
        if not machine.signal_service(service, "STOP"):
            raise UsageError(f"{host} {service} is not running: nothing to freeze")
        what = f"{service} frozen (SIGSTOP)"
    elif mode == "stop":
        cluster.stop(host, service)
        what = f"{service or 'all services'} stopped"
    elif service is not None:
        svc = hp.service(service)
        supervisor.stop(machine, hp, svc, kill=True)
        what = f"{service} crashed (SIGKILL)"
    else:
        # The whole host dies: every process at once, and its link goes dark, so peers see silence
        # (timeouts), not refused connections.
        machine.crash()
        what = "host down (all processes killed, link down)"
    _remember(cluster, host, what)
    events.record(cluster.layout, "fault_injected", host, what)
    return what


def recover(cluster: Cluster, host: str) -> str:
    cluster.host_plan(host)
    cluster.fleet.ensure_host(host)  # emulated: the namespace and link made again if gone
    cluster.hosts[host].heal()  # link up, no fault rules, no delay, frozen services resumed
    cluster.start(host)
    _remember(cluster, host, None)
    events.record(cluster.layout, "fault_recovered", host, "link up, no fault rules, services started")
    return "recovered"
