"""Plan pieces of monitoring, present when one host has the 'monitoring' role. Pure, like the rest of plan/.

    node-exporter    every host      Debian's prometheus-node-exporter, on the host's address
    mysqld-exporter  db hosts        prometheus-mysqld-exporter over the local socket, as the least-privilege
                                     user `exporter` (services/monitoring.py writes its client file and account)
    HAProxy metrics  lb hosts        HAProxy's own exporter: a `frontend metrics` in haproxy.cfg (and in the
                     (app hosts, HA) dbproxy's config), on the host's address only
    site /metrics    app hosts       the app's own metrics (site/metrics.py), scraped on the app port
    agent /metrics   db hosts, HA    the DB agents' role, lease and lag
    prometheus       monitoring      scrapes all of the above by address, evaluates `alert_rules`
    monitor          monitoring      webinfra's watcher (control/monitor.py): records the events it sees
                                     (backend down/up, VIP moved, primary changed) and exports a few gauges

`flows()` lists the traffic a firewall must let through for this (monitoring host -> each exporter).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import yaml

from webinfra.model import Role, Topology
from webinfra.plan.layout import HostDirs, Layout
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec

# node_exporter collectors that work inside a network namespace and say something useful about a host.
# The defaults include collectors that read hardware or host-wide state (hwmon, thermal, rapl, mdadm...):
# in an emulated host they either fail or describe the whole machine, so only these are enabled.
NODE_COLLECTORS = (
    "cpu",
    "meminfo",
    "loadavg",
    "netdev",
    "filesystem",
    "stat",
    "time",
    "uname",
    "vmstat",
    "sockstat",
    "netstat",
    "pressure",
    "filefd",
)
FILESYSTEM_EXCLUDE = "^/(dev|proc|run|sys|var/lib/docker/.+)($|/)"
RETENTION = "2d"
MYSQLD_EXPORTER_CNF = "mysqld-exporter.cnf"
EXPORTER_SECRET = "db-exporter"
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
    add("prometheus", Role.MONITORING, mon.prometheus_port)
    add("webinfra", Role.MONITORING, mon.monitor_port)
    return out


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
    """What monitoring adds to host `name`: its exporters, and Prometheus and the watcher on the monitoring host."""
    if topo.monitoring_host is None:
        return [], []
    spec = topo.host(name)
    files: list[FileSpec] = []
    services = [node_exporter_service(topo, name, dirs)]
    if spec.has(Role.DB):
        services.append(mysqld_exporter_service(topo, name, dirs))
    if spec.has(Role.MONITORING):
        prom_files, prom = prometheus_files_and_service(topo, layout, name, dirs)
        files += prom_files
        services += [prom, monitor_service(topo, layout, name, dirs, python)]
    return files, services


def node_exporter_service(topo: Topology, name: str, dirs: HostDirs) -> ServiceSpec:
    address, port = _addr(topo, name), topo.monitoring.node_exporter_port
    return ServiceSpec(
        name="node-exporter",
        argv=(
            "prometheus-node-exporter",
            f"--web.listen-address={address}:{port}",
            "--log.level=warn",
            "--collector.disable-defaults",
            *(f"--collector.{c}" for c in NODE_COLLECTORS),
            f"--collector.filesystem.mount-points-exclude={FILESYSTEM_EXCLUDE}",
        ),
        probe=Probe("tcp", address, port),
        pidfile=dirs.run / "node-exporter.svc.pid",
        log=dirs.log / "node-exporter.log",
    )


def mysqld_exporter_service(topo: Topology, name: str, dirs: HostDirs) -> ServiceSpec:
    """The client file it reads holds a password, so it is not part of the plan: the service's start hook
    (services/monitoring.py) writes it (0600) and makes sure the `exporter` account exists."""
    address, port = _addr(topo, name), topo.monitoring.mysqld_exporter_port
    return ServiceSpec(
        name="mysqld-exporter",
        argv=(
            "prometheus-mysqld-exporter",
            f"--web.listen-address={address}:{port}",
            f"--config.my-cnf={dirs.etc / MYSQLD_EXPORTER_CNF}",
            "--log.level=warn",
            # Kept: global status and variables, replication status. Off: what needs more privileges or a
            # plugin MariaDB does not load here.
            "--no-collect.info_schema.innodb_cmp",
            "--no-collect.info_schema.innodb_cmpmem",
            "--no-collect.info_schema.query_response_time",
        ),
        probe=Probe("tcp", address, port),
        pidfile=dirs.run / "mysqld-exporter.svc.pid",
        log=dirs.log / "mysqld-exporter.log",
    )


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
            "webinfra.control.monitor",
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


def _rule(name: str, expr: str, for_s: float, severity: str, summary: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_s > 0:
        rule["for"] = f"{for_s:g}s"
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary}
    return rule


def alert_rules(topo: Topology) -> list[dict[str, Any]]:
    """The alert rules, with the bounds of `[monitoring]` (docs/MONITORING.md explains each)."""
    mon = topo.monitoring
    down = mon.down_after_seconds
    site_lb = 'job="haproxy",proxy="site"'
    rules = [
        _rule(
            "InstanceDown",
            "up == 0",
            down,
            "critical",
            "{{ $labels.job }} on {{ $labels.host }} ({{ $labels.instance }}) does not answer scrapes",
        ),
        _rule(
            "BackendDown",
            f'haproxy_server_status{{{site_lb},state="DOWN"}} == 1',
            down,
            "critical",
            "backend {{ $labels.server }} is down (health checks of {{ $labels.host }})",
        ),
        _rule(
            "SiteDown",
            f"sum by (host) (haproxy_backend_active_servers{{{site_lb}}})"
            f" + sum by (host) (haproxy_backend_backup_servers{{{site_lb}}}) == 0",
            down,
            "critical",
            "no backend of {{ $labels.host }} is up: the site answers 503",
        ),
        _rule("MysqlDown", "mysql_up == 0", down, "critical", "MariaDB on {{ $labels.host }} does not answer"),
        _rule(
            "ReplicationBroken",
            "mysql_slave_status_slave_io_running == 0 or mysql_slave_status_slave_sql_running == 0",
            down,
            "critical",
            "replication on {{ $labels.host }} is stopped (from {{ $labels.master_host }})",
        ),
        _rule(
            "ReplicationLag",
            f"mysql_slave_status_seconds_behind_master > {mon.max_replication_lag_seconds:g}",
            down,
            "warning",
            "{{ $labels.host }} is {{ $value }}s behind its primary",
        ),
        _rule(
            "FailoverHappened",
            "increase(webinfra_primary_changes_total[5m]) > 0",
            0,
            "warning",
            "the primary database changed in the last 5 minutes (see `webinfra events`)",
        ),
        _rule(
            "HighErrorRate",
            f'sum by (host) (rate(haproxy_frontend_http_responses_total{{{site_lb},code="5xx"}}[1m]))'
            f" / sum by (host) (rate(haproxy_frontend_http_requests_total{{{site_lb}}}[1m]))"
            f" > {mon.max_error_ratio:g}",
            10,
            "warning",
            "{{ $value | humanizePercentage }} of the site's answers through {{ $labels.host }} are 5xx",
        ),
        _rule(
            "HighLatencyP99",
            "histogram_quantile(0.99, sum by (host, le) "
            '(rate(site_request_duration_seconds_bucket{route!="/healthz"}[1m])))'
            f" > {mon.max_p99_seconds:g}",
            10,
            "warning",
            "p99 latency of the app on {{ $labels.host }} is {{ $value | humanizeDuration }}",
        ),
    ]
    if topo.lb_pair:
        rules.append(
            _rule(
                "VipMoved",
                "increase(webinfra_vip_moves_total[5m]) > 0",
                0,
                "warning",
                "the site's virtual IP moved to another load balancer in the last 5 minutes",
            )
        )
    if topo.tls.enabled:
        # Only with TLS: the watcher exports the certificates' expiry (webinfra_cert_not_after_seconds).
        rules.append(
            _rule(
                "CertificateExpiringSoon",
                f"webinfra_cert_not_after_seconds - time() < {mon.cert_expiry_days * 86400}",
                0,
                "warning",
                "certificate {{ $labels.cert }} expires in {{ $value | humanizeDuration }}",
            )
        )
    return rules


def render_alert_rules(topo: Topology) -> str:
    header = f"# Rendered by webinfra ({topo.name}). Do not edit: `webinfra up` rewrites it.\n"
    return _yaml(header, {"groups": [{"name": "webinfra", "rules": alert_rules(topo)}]})


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
    out.append(
        Flow("management -> prometheus", mhost.name, (str(topo.gateway),), "tcp", (topo.monitoring.prometheus_port,))
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
