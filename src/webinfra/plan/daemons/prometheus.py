"""Prometheus on the monitoring host: every scrape target of the topology, `prometheus.yml`, the alert
rules file (daemons/alert_rules.py) and the service; `flows()`, what the firewall must let through for
its scrapes. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webinfra.model import Role, Topology
from webinfra.plan.daemons import alertmanager
from webinfra.plan.daemons.alert_rules import render_alert_rules
from webinfra.plan.render import yaml_text
from webinfra.plan.spec import FileSpec, Flow, Probe, ServiceSpec
from webinfra.state import HostDirs, Layout

RETENTION = "2d"


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
    plan/daemons/etcd.py), since the client port needs TLS and a login (the scrape target and the firewall
    flow follow)."""
    return topo.etcd.metrics_port


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


def _duration(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _yaml(header: str, data: Any) -> str:
    return header + yaml_text(data)


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


def flows(topo: Topology) -> list[Any]:
    """Inbound flows monitoring needs, as `plan.spec.Flow`s (to add to `firewall.flows()`): the
    monitoring host scrapes every exporter, and the management side (the gateway) reaches Prometheus (on
    emulated hosts; servers are queried through SSH instead).
    The watcher and Prometheus scrape themselves over loopback, which every ruleset accepts."""
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
    if topo.machines.ssh:
        # Servers: no port of the monitoring host is opened to the management machine. The CLI and the
        # dashboard query Prometheus and Alertmanager from inside the monitoring server, through the SSH it
        # already has (runtime/ssh.py's helper), as every other command does: one door to guard (SSH, with
        # its keys and known hosts) instead of two unauthenticated HTTP APIs, and it works the same from a
        # laptop behind NAT or a bastion.
        return out
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
