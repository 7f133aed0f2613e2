"""Fault injection, for tests and for people who want to see what breaks:

    crash      SIGKILL: one service, or every process of the host with its link cut (a host that dies)
    stop       a clean stop: one service, or all of the host's services
    partition  the host's traffic dropped by nftables rules inside its namespace (processes keep running)

`recover` undoes whatever was injected on a host and starts its services again. Faults in force are
recorded in <cluster>/faults.json (shown by `status`) and every injection/recovery is an event.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import TYPE_CHECKING, Literal

from webinfra.control import events
from webinfra.hosts import network as netmod
from webinfra.hosts.process import read_pidfile
from webinfra.services import supervisor

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster

Mode = Literal["crash", "stop", "partition"]
FAULT_TABLE = "webinfra_fault"

PARTITION_RULES = f"""
table inet {FAULT_TABLE} {{
    chain input {{
        type filter hook input priority -300; policy accept;
        iifname "eth0" drop
    }}
    chain output {{
        type filter hook output priority -300; policy accept;
        oifname "eth0" drop
    }}
}}
"""


def _faults_file(cluster: Cluster):  # type: ignore[no-untyped-def]
    return cluster.layout.cluster_dir / "faults.json"


def active_faults(cluster: Cluster) -> dict[str, str]:
    try:
        data: dict[str, str] = json.loads(_faults_file(cluster).read_text())
        return data
    except (FileNotFoundError, ValueError):
        return {}


def _remember(cluster: Cluster, host: str, what: str | None) -> None:
    faults = active_faults(cluster)
    if what is None:
        faults.pop(host, None)
    else:
        faults[host] = what
    _faults_file(cluster).write_text(json.dumps(faults, indent=2))


def fail(cluster: Cluster, host: str, service: str | None = None, mode: Mode = "crash") -> str:
    """Inject a fault; returns a one-line description."""
    from webinfra.control.cluster import UsageError

    hp = cluster.host_plan(host)
    if service is not None:
        cluster.service_plan(host, service)
    if mode == "partition":
        if service is not None:
            raise UsageError("--mode partition cuts a whole host off; it takes no --service")
        cluster.hosts[host].run(["nft", "-f", "-"], input=f"delete table inet {FAULT_TABLE}\n", check=False)
        cluster.hosts[host].run(["nft", "-f", "-"], input=PARTITION_RULES)
        what = "partitioned (all traffic on eth0 dropped)"
    elif mode == "stop":
        cluster.stop(host, service)
        what = f"{service or 'all services'} stopped"
    elif service is not None:
        svc = hp.service(service)
        supervisor.stop(cluster.hosts[host], hp, svc, kill=True)
        what = f"{service} crashed (SIGKILL)"
    else:
        # The whole host dies: every process in its namespace, at once, and its link goes dark, so peers
        # see silence (timeouts), not refused connections.
        link = next(link for link in cluster.network.links if link.host == host)
        netmod.set_link(link.veth, up=False)
        for pid in netmod.namespace_pids(link.netns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for svc in hp.services:
            proc = read_pidfile(svc.pidfile)
            if proc is not None:
                svc.pidfile.unlink(missing_ok=True)
        what = "host down (all processes killed, link down)"
    _remember(cluster, host, what)
    events.record(cluster.layout, "fault_injected", host, what)
    return what


def recover(cluster: Cluster, host: str) -> str:
    cluster.host_plan(host)
    link = next(link for link in cluster.network.links if link.host == host)
    cluster.network.ensure_host(link)
    netmod.set_link(link.veth, up=True)
    cluster.hosts[host].run(["nft", "-f", "-"], input=f"delete table inet {FAULT_TABLE}\n", check=False)
    cluster.start(host)
    _remember(cluster, host, None)
    events.record(cluster.layout, "fault_recovered", host, "link up, no fault rules, services started")
    return "recovered"
