"""Fault injection, for tests and for people who want to see what breaks:

    crash      SIGKILL: one service, or every process of the host with its link cut (a host that dies)
    stop       a clean stop: one service, or all of the host's services
    partition  the host's traffic dropped by nftables rules inside its namespace (processes keep running)
    slow       the host made slow: 200 ms of delay on everything it sends (`tc qdisc ... netem delay` on its
               eth0); on a kernel without netem, its processes throttled to 10 % of one CPU (cgroup cpu quota)
    freeze     one service stopped in its tracks (SIGSTOP to its process group): alive, holding its sockets
               and its state, doing nothing — a stall, a GC pause, a VM freeze. `recover` sends SIGCONT.

`recover` undoes whatever was injected on a host and starts its services again. Faults in force are
recorded in <cluster>/faults.json (shown by `status`) and every injection/recovery is an event.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from webinfra.control import events
from webinfra.hosts import network as netmod
from webinfra.hosts.process import read_pidfile, signal_group
from webinfra.services import supervisor

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster

Mode = Literal["crash", "stop", "partition", "slow", "freeze"]
MODES: tuple[str, ...] = ("crash", "stop", "partition", "slow", "freeze")
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


def _faults_file(cluster: Cluster) -> Path:
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
    if mode == "slow":
        if service is not None:
            raise UsageError("--mode slow delays a whole host's traffic; it takes no --service")
        what = _make_slow(cluster, host)
    elif mode == "partition":
        if service is not None:
            raise UsageError("--mode partition cuts a whole host off; it takes no --service")
        cluster.hosts[host].run(["nft", "-f", "-"], input=f"delete table inet {FAULT_TABLE}\n", check=False)
        cluster.hosts[host].run(["nft", "-f", "-"], input=PARTITION_RULES)
        what = "partitioned (all traffic on eth0 dropped)"
    elif mode == "freeze":
        if service is None:
            raise UsageError("--mode freeze stops one service's processes; give --service")
        proc = read_pidfile(hp.service(service).pidfile)
        if proc is None or not signal_group(proc, signal.SIGSTOP):
            raise UsageError(f"{host} {service} is not running: nothing to freeze")
        what = f"{service} frozen (SIGSTOP)"
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
    _undo_slow(cluster, host)
    for svc in cluster.host_plan(host).services:  # a frozen service resumes (harmless for a running one)
        proc = read_pidfile(svc.pidfile)
        if proc is not None:
            signal_group(proc, signal.SIGCONT)
    cluster.start(host)
    _remember(cluster, host, None)
    events.record(cluster.layout, "fault_recovered", host, "link up, no fault rules, services started")
    return "recovered"


# ---- slow: netem delay, or a CPU quota where the kernel has no netem ----
SLOW_DELAY_MS = 200
SLOW_CPU_PERCENT = 10


def _make_slow(cluster: Cluster, host: str) -> str:
    h = cluster.hosts[host]
    h.run(["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
    proc = h.run(["tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{SLOW_DELAY_MS}ms"], check=False)
    if proc.returncode == 0:
        return f"slow ({SLOW_DELAY_MS} ms delay on everything it sends, tc netem)"
    # Some kernels (e.g. small VM kernels) are built without sch_netem: slow the host down by CPU instead.
    group = _cpu_cgroup(cluster, host)
    if group is None:
        from webinfra.control.cluster import ClusterError

        raise ClusterError(f"cannot make {host} slow: no netem qdisc ({proc.stderr.strip()}), no cgroup cpu controller")
    group.mkdir(exist_ok=True)
    period = 100_000
    if (group / "cpu.cfs_quota_us").exists():  # cgroup v1
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(period * SLOW_CPU_PERCENT // 100))
    else:  # cgroup v2
        (group / "cpu.max").write_text(f"{period * SLOW_CPU_PERCENT // 100} {period}")
    link = next(link for link in cluster.network.links if link.host == host)
    for pid in netmod.namespace_pids(link.netns):  # hostd too, so whatever it starts later is slow as well
        with contextlib.suppress(OSError):
            (group / "cgroup.procs").write_text(str(pid))
    return f"slow (every process held to {SLOW_CPU_PERCENT} % of one CPU: this kernel has no netem)"


def _undo_slow(cluster: Cluster, host: str) -> None:
    cluster.hosts[host].run(["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
    group = _cpu_cgroup(cluster, host)
    if group is None or not group.is_dir():
        return
    home = _own_cpu_cgroup()
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):
            (home / "cgroup.procs").write_text(pid)
    with contextlib.suppress(OSError):
        group.rmdir()


def _cpu_root() -> Path | None:
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1
    v2 = Path("/sys/fs/cgroup")
    try:
        if "cpu" in (v2 / "cgroup.controllers").read_text().split():
            return v2
    except OSError:
        pass
    return None


def _own_cpu_cgroup() -> Path:
    root = _cpu_root()
    assert root is not None
    v1 = root != Path("/sys/fs/cgroup")
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (v1 and "cpu" in controllers.split(",")) or (not v1 and controllers == ""):
            return root / path.lstrip("/")
    return root


def _cpu_cgroup(cluster: Cluster, host: str) -> Path | None:
    root = _cpu_root()
    return None if root is None else root / f"webinfra-{cluster.topology.name}-{host}"
