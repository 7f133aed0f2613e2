"""Monitoring, present when one host has the 'monitoring' role. Pure, like the rest of plan/.

    node-exporter    every host      Debian's prometheus-node-exporter, on the host's address
                                     (plan/daemons/exporters.py; on an LB pair it also exports keepalived's
                                     VRRP state)
    mysqld-exporter  db hosts        prometheus-mysqld-exporter over the local socket, as the least-privilege
                                     user `exporter` (daemons/mysqld_exporter.py writes its client file and account)
    nginx-exporter   web hosts       prometheus-nginx-exporter, reading nginx's stub_status on 127.0.0.1
    HAProxy metrics  lb hosts        HAProxy's own exporter: a `frontend metrics` in haproxy.cfg (and in the
                     (app hosts, HA) dbproxy's config), on the host's address only
    site /metrics    app hosts       the app's own metrics (site/metrics.py), scraped on the app port
    agent /metrics   db hosts, HA    the DB agents' role, lease and lag
    etcd /metrics    etcd hosts      etcd's own metrics (leader, proposals), on `etcd_metrics_port`
    prometheus       monitoring      scrapes all of the above by address, evaluates the alert rules
                                     (plan/daemons/alert_rules.py) and sends what fires to Alertmanager
    alertmanager     monitoring      groups, inhibits, silences and routes the alerts (plan/daemons/alertmanager.py)
    monitor          monitoring      webinfra's watcher (observe/monitor.py): records the events it sees
                                     (backend down/up, VIP moved, primary changed) and exports a few gauges

This module: the watcher's service, and what the monitoring host runs (`contribute`).

On servers (`[machines] kind = "ssh"`) the watcher runs on the monitoring server from the release venv and
holds no key to the other servers: it reads the topology from a file the plan ships next to it
(`topology.json`) and looks at the cluster over the network, through the endpoints the firewall already
admits from the monitoring host (observe/netlook.py).
"""

from __future__ import annotations

from webinfra.model import Role, Topology
from webinfra.plan.daemons import alertmanager, prometheus
from webinfra.plan.render import NOTHING, Contribution, HostContext
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec
from webinfra.state import HostDirs, Layout

TOPOLOGY_FILE = "topology.json"  # servers: what the watcher reads instead of the management machine's state


def monitor_service(topo: Topology, layout: Layout, name: str, dirs: HostDirs, python: str) -> ServiceSpec:
    address, port = str(topo.address_of(name)), topo.monitoring.monitor_port
    if topo.machines.ssh:
        source: tuple[str, ...] = ("--topology", str(dirs.etc / TOPOLOGY_FILE))
    else:
        source = ("--state-dir", str(layout.cluster_dir.parent), "--cluster", topo.name)
    return ServiceSpec(
        name="monitor",
        argv=(python, "-m", "webinfra.observe.monitor", *source, "--listen", f"{address}:{port}"),
        probe=Probe("tcp", address, port),
        pidfile=dirs.run / "monitor.svc.pid",
        log=dirs.log / "monitor.log",
        configs=(dirs.etc / TOPOLOGY_FILE,) if topo.machines.ssh else (),
        stop_timeout=5.0,
    )


def topology_file(topo: Topology, dirs: HostDirs) -> list[FileSpec]:
    """Servers: the topology as the watcher reads it (0640: it may name alert routes' URLs)."""
    if not topo.machines.ssh:
        return []
    return [FileSpec(dirs.etc / TOPOLOGY_FILE, topo.model_dump_json(indent=1) + "\n", 0o640)]


def contribute(ctx: HostContext) -> Contribution:
    """The monitoring host's daemons: Prometheus and Alertmanager's files, then Alertmanager, Prometheus and
    the watcher (in this order: a plan lists them so)."""
    if ctx.topo.monitoring_host is None or not ctx.spec.has(Role.MONITORING):
        return NOTHING
    prom_files, prom = prometheus.prometheus_files_and_service(ctx.topo, ctx.layout, ctx.name, ctx.dirs)
    am_files, am = alertmanager.files_and_service(ctx.topo, ctx.name, ctx.dirs)
    return Contribution(
        prom_files + am_files + topology_file(ctx.topo, ctx.dirs),
        [am, prom, monitor_service(ctx.topo, ctx.layout, ctx.name, ctx.dirs, ctx.python)],
    )
