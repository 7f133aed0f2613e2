"""Plan pieces of monitoring, present when one host has the 'monitoring' role. Pure, like the rest of plan/.

    node-exporter    every host      Debian's prometheus-node-exporter, on the host's address (plan/exporters.py;
                                     on an LB pair it also exports keepalived's VRRP state)
    mysqld-exporter  db hosts        prometheus-mysqld-exporter over the local socket, as the least-privilege
                                     user `exporter` (services/monitoring.py writes its client file and account)
    nginx-exporter   web hosts       prometheus-nginx-exporter, reading nginx's stub_status on 127.0.0.1
    HAProxy metrics  lb hosts        HAProxy's own exporter: a `frontend metrics` in haproxy.cfg (and in the
                     (app hosts, HA) dbproxy's config), on the host's address only
    site /metrics    app hosts       the app's own metrics (site/metrics.py), scraped on the app port
    agent /metrics   db hosts, HA    the DB agents' role, lease and lag
    etcd /metrics    etcd hosts      etcd's own metrics (leader, proposals), on `etcd_metrics_port`
    prometheus       monitoring      scrapes all of the above by address, evaluates the alert rules
                                     (plan/alert_rules.py) and sends what fires to Alertmanager
    alertmanager     monitoring      groups, inhibits, silences and routes the alerts (plan/alertmanager.py)
    monitor          monitoring      webinfra's watcher (observe/monitor.py): records the events it sees
                                     (backend down/up, VIP moved, primary changed) and exports a few gauges

`flows()` lists the traffic a firewall must let through for this (monitoring host -> each exporter).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import yaml

from webinfra.model import Role, Topology
from webinfra.plan import alertmanager
from webinfra.plan.alert_rules import alert_rules, render_alert_rules
from webinfra.plan.exporters import EXPORTER_SECRET, MYSQLD_EXPORTER_CNF, exporter_services
from webinfra.plan.layout import HostDirs, Layout
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec

# Re-exported: callers and tests read the rules and the exporters' names through this module.
__all__ = ["EXPORTER_SECRET", "MYSQLD_EXPORTER_CNF", "alert_rules", "render_alert_rules"]

RETENTION = "2d"
# The HAProxy exporter's frontend: scraped by Prometheus, and nothing else.
HAPROXY_METRICS_FRONTEND = "metrics"


@dataclass(frozen=True)
class Target:
    """One endpoint Prometheus scrapes."""

    job: str
    host: str
    address: str  # address:port
    path: str = "/metrics"


def _addr(topo: Topology, host: str) -> str:
    return str(topo.address_of(host))


def targets(topo: Topology) -> list[Target]:
    """Every scrape target of the topology, by job then file order (empty without a monitoring host)."""
    mon, mhost = topo.monitoring, topo.monitoring_host
    if mhost is None:
        return []
    out: list[Target] = []
    address = {h.name: _addr(topo, h.name) for h in topo.hosts}  # once: `address_of` scans the hosts

    def add(job: str, role: Role | None, port: int, *, when: bool = True) -> None:
        if not when:
            return
        for h in topo.hosts if role is None else topo.with_role(role):
            out.append(Target(job, h.name, f"{address[h.name]}:{port}"))

    add("node", None, mon.node_exporter_port)
    add("haproxy", Role.LB, mon.haproxy_metrics_port)
    add("dbproxy", Role.APP, mon.dbproxy_metrics_port, when=topo.ha)
    add("site", Role.APP, topo.app.port)
    add("mysqld", Role.DB, mon.mysqld_exporter_port)
    add("agent", Role.DB, topo.db.agent_port, when=topo.ha)
    add("nginx", Role.WEB, mon.nginx_exporter_port)
    add("etcd", Role.ETCD, etcd_metrics_port(topo))
    add("prometheus", Role.MONITORING, mon.prometheus_port)
    add("webinfra", Role.MONITORING, mon.monitor_port)
    add("alertmanager", Role.MONITORING, mon.alertmanager_port)
    return out


def etcd_metrics_port(topo: Topology) -> int:
    """Where Prometheus reads etcd's /metrics: a plain-HTTP listener of their own (`--listen-metrics-urls`,
    plan/ha.py), since the client port needs TLS and a login (the scrape target and the firewall flow follow)."""
    return topo.etcd.metrics_port


def haproxy_metrics(topo: Topology, host: str, port: int | None = None) -> dict[str, Any] | None:
    """Values for the `frontend metrics` of an HAProxy on `host` (None: no monitoring, no frontend)."""
    if topo.monitoring_host is None:
        return None
    return {
        "name": HAPROXY_METRICS_FRONTEND,
        "address": _addr(topo, host),
        "port": port or topo.monitoring.haproxy_metrics_port,
    }


def dbproxy_metrics(topo: Topology, host: str) -> dict[str, Any] | None:
    return haproxy_metrics(topo, host, topo.monitoring.dbproxy_metrics_port)


# ---- services ----


def files_and_services(
    topo: Topology, layout: Layout, name: str, dirs: HostDirs, python: str = sys.executable
) -> tuple[list[FileSpec], list[ServiceSpec]]:
    """What monitoring adds to host `name`: its exporters; Prometheus, Alertmanager and the watcher on the
    monitoring host."""
    if topo.monitoring_host is None:
        return [], []
    files: list[FileSpec] = []
    services = exporter_services(topo, name, dirs)
    if topo.host(name).has(Role.MONITORING):
        prom_files, prom = prometheus_files_and_service(topo, layout, name, dirs)
        am_files, am = alertmanager.files_and_service(topo, name, dirs)
        files += prom_files + am_files
        services += [am, prom, monitor_service(topo, layout, name, dirs, python)]
    return files, services


def prometheus_files_and_service(
    topo: Topology, layout: Layout, name: str, dirs: HostDirs
) -> tuple[list[FileSpec], ServiceSpec]:
    address, port = _addr(topo, name), topo.monitoring.prometheus_port
    config, rules = dirs.etc / "prometheus.yml", dirs.etc / "alert-rules.yml"
    service = ServiceSpec(
        name="prometheus",
        argv=(
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={dirs.data / 'prometheus'}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address={address}:{port}",
            "--log.level=warn",
        ),
        probe=Probe("http", address, port, "/-/ready"),
        pidfile=dirs.run / "prometheus.svc.pid",
        log=dirs.log / "prometheus.log",
        configs=(config, rules),
        reload_signal="HUP",  # re-reads the config and the rules in place
    )
    files = [
        FileSpec(config, render_prometheus_config(topo, name, rules)),
        FileSpec(rules, render_alert_rules(topo)),
    ]
    return files, service


def monitor_service(topo: Topology, layout: Layout, name: str, dirs: HostDirs, python: str) -> ServiceSpec:
    address, port = _addr(topo, name), topo.monitoring.monitor_port
    return ServiceSpec(
        name="monitor",
        argv=(
            python,
            "-m",
            "webinfra.observe.monitor",
            "--state-dir",
            str(layout.cluster_dir.parent),
            "--cluster",
            topo.name,
            "--listen",
            f"{address}:{port}",
        ),
        probe=Probe("tcp", address, port),
        pidfile=dirs.run / "monitor.svc.pid",
        log=dirs.log / "monitor.log",
        stop_timeout=5.0,
    )


# ---- prometheus.yml and the alert rules ----


def _duration(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _yaml(header: str, data: Any) -> str:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return header + body


def render_prometheus_config(topo: Topology, host: str, rules_file: Any) -> str:
    interval = topo.monitoring.scrape_interval_ms
    jobs: dict[str, list[Target]] = {}
    for t in targets(topo):
        jobs.setdefault(t.job, []).append(t)
    config = {
        "global": {
            "scrape_interval": _duration(interval),
            # A slow target must not make a scrape overlap the next one.
            "scrape_timeout": _duration(max(500, interval * 4 // 5)),
            "evaluation_interval": _duration(interval),
            "external_labels": {"cluster": topo.name},
        },
        "alerting": alertmanager.prometheus_alerting(topo),
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": ts[0].path,
                "static_configs": [{"targets": [t.address], "labels": {"host": t.host}} for t in ts],
            }
            for job, ts in jobs.items()
        ],
    }
    return _yaml(f"# Rendered by webinfra for {host} ({topo.name}). Do not edit: `webinfra up` rewrites it.\n", config)


# ---- firewall ----


def flows(topo: Topology) -> list[Any]:
    """Inbound flows monitoring needs, as `plan.firewall.Flow`s (to add to `firewall.flows()`): the
    monitoring host scrapes every exporter, and the management side (the gateway) reaches Prometheus.
    The watcher and Prometheus scrape themselves over loopback, which every ruleset accepts."""
    from webinfra.plan.firewall import Flow  # late: the firewall module may import this one

    mhost = topo.monitoring_host
    if mhost is None:
        return []
    mon_addr = (_addr(topo, mhost.name),)
    by_dest: dict[str, list[tuple[str, int]]] = {}
    for t in targets(topo):
        if t.host != mhost.name:
            by_dest.setdefault(t.host, []).append((t.job, int(t.address.rsplit(":", 1)[1])))
    out = [
        Flow(
            f"monitoring -> {', '.join(job for job, _ in scrapes)}", dest, mon_addr, "tcp", tuple(p for _, p in scrapes)
        )
        for dest, scrapes in by_dest.items()
    ]
    mon = topo.monitoring
    out.append(
        Flow(
            "management -> prometheus, alertmanager",
            mhost.name,
            (str(topo.gateway),),
            "tcp",
            (mon.prometheus_port, mon.alertmanager_port),
        )
    )
    return out


# ---- the site's own metrics ----

METRICS_DIR_ENV = "WEBINFRA_METRICS_DIR"


def site_metrics_env(topo: Topology, dirs: HostDirs) -> tuple[tuple[str, str], ...]:
    """With several uvicorn workers, the app's metrics live in files that every worker writes and any worker
    reads back on a scrape (prometheus_client's multiprocess mode); one worker keeps them in memory."""
    if topo.app.workers <= 1:
        return ()
    return ((METRICS_DIR_ENV, str(dirs.tmp / "app-metrics")),)
