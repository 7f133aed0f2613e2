"""`webinfra bench --monitoring`: what monitoring costs the site, as a ratio taken in one run.

One cluster (`benchmon`, 198.18.58.0/24): the seed design plus `mon-01`. Each round measures reads through
the LB (wrk, `GET /api/entries?limit=10`) twice: with every collector running (node_exporter on each host,
mysqld_exporter on each DB host, Prometheus scraping every target every `scrape_interval`, HAProxy's
exporter and the app's /metrics being scraped, the event watcher) and with those daemons stopped, so nothing
scrapes. The order alternates round by round (on/off, off/on, ...) so drift on a noisy machine hits both.
What stays in both: the app's request counting (its middleware is part of the app) and HAProxy's exporter
frontend (idle when nobody scrapes).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from webinfra.control.cluster import Cluster
from webinfra.errors import ClusterError
from webinfra.model import Role, parse_topology
from webinfra.model.relocate import amended, relocated, seed_text
from webinfra.observe import prom
from webinfra.proving import scratch
from webinfra.proving.bench import BenchParams, WrkResult, seed_rows, wrk

CLUSTER = "benchmon"
SUBNET = "198.18.58.0/24"
COLLECTORS = ("node-exporter", "mysqld-exporter", "nginx-exporter", "alertmanager", "prometheus", "monitor")
ON, OFF = "monitoring on", "monitoring off"


def topology_text() -> str:
    """The seed design plus a monitoring host."""
    text = relocated(seed_text(), CLUSTER, SUBNET)
    return amended(text, extra_hosts=({"name": "mon-01", "roles": ["monitoring"]},))


@dataclass
class MonitoringBenchReport:
    rows: dict[str, list[WrkResult]] = field(default_factory=dict)
    targets: int = 0
    samples_per_second: float | None = None
    collector_cores: list[float] = field(default_factory=list)  # CPU used by the collectors, per "on" run

    def median(self, key: str, attr: str = "requests_per_second") -> float:
        return statistics.median(getattr(r, attr) for r in self.rows[key])

    @property
    def ratio(self) -> float:
        return self.median(ON) / self.median(OFF)

    @property
    def paired_ratio(self) -> float:
        """Median of each round's on/off ratio: the two runs of a round are back to back, so slow drift of the
        machine's load (other work on it) cancels out within a pair."""
        pairs = zip(self.rows[ON], self.rows[OFF], strict=False)
        return statistics.median(on.requests_per_second / off.requests_per_second for on, off in pairs)


def collectors(cluster: Cluster) -> list[tuple[str, str]]:
    """(host, service) of every monitoring daemon, in start order."""
    return [(hp.name, svc.name) for hp, svc in cluster.plan.start_order() if svc.name in COLLECTORS]


def collector_cpu_seconds(cluster: Cluster) -> float:
    """CPU time (user + system) the running monitoring daemons have used so far."""
    total = 0.0
    for host, service in collectors(cluster):
        used = cluster.hosts[host].usage().get(service)
        total += used.cpu_seconds if used is not None else 0.0
    return total


def set_monitoring(cluster: Cluster, on: bool) -> None:
    pairs = collectors(cluster)
    if not on:
        for host, service in reversed(pairs):
            cluster.stop(host, service)
        return
    for host, service in pairs:
        cluster.start(host, service)
    # Measure only once Prometheus scrapes every target again.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            targets = prom.targets(cluster)
            if targets and all(t.get("health") == "up" for t in targets):
                # Past Prometheus's start-up work: measure the steady state, one more scrape round from now.
                time.sleep(cluster.topology.monitoring.scrape_interval_ms / 1000)
                return
        except prom.PrometheusError:
            pass
        time.sleep(0.2)
    raise ClusterError("Prometheus did not see every target up within 30s")


def run_monitoring_bench(
    params: BenchParams, *, root: Path | None = None, say: Callable[[str], None] = print
) -> MonitoringBenchReport:
    report = MonitoringBenchReport()
    with scratch.scratch_run("webinfra-bench-mon-", root, params.keep) as run:
        cluster = run.prepare(topology_text(), source="<bench>")
        say(f"up: {CLUSTER} (seed design + mon-01, {SUBNET})...")
        cluster.up()
        seed_rows(cluster)
        set_monitoring(cluster, True)
        report.targets = len(prom.targets(cluster))
        url = f"{cluster.topology.site_url.rstrip('/')}/api/entries?limit=10"
        wrk(url, duration=params.duration, connections=params.connections)  # warm-up (pools, caches), not counted
        for n in range(params.rounds):
            order = (ON, OFF) if n % 2 == 0 else (OFF, ON)
            for key in order:
                set_monitoring(cluster, key == ON)
                cpu_before, started = collector_cpu_seconds(cluster), time.monotonic()
                result = wrk(url, duration=params.duration, connections=params.connections)
                if key == ON:
                    used = collector_cpu_seconds(cluster) - cpu_before
                    report.collector_cores.append(used / (time.monotonic() - started))
                report.rows.setdefault(key, []).append(result)
                say(
                    f"  round {n + 1}/{params.rounds} {key:<15} {result.requests_per_second:8.0f} req/s  "
                    f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms"
                )
        set_monitoring(cluster, True)
        rate = prom.query(cluster, "rate(prometheus_tsdb_head_samples_appended_total[1m])")
        report.samples_per_second = rate[0][1] if rate else None
    return report


def monitoring_markdown(report: MonitoringBenchReport, command: str) -> str:
    hosts = len(parse_topology(topology_text(), "<bench>").hosts)
    dbs = len(parse_topology(topology_text(), "<bench>").with_role(Role.DB))
    lines = [
        f"Command: `{command}` (`GET /api/entries?limit=10` through the LB; the seed design plus `mon-01`; "
        f"{report.targets} targets scraped every 2 s: node_exporter on {hosts} hosts, mysqld_exporter on {dbs}, "
        "HAProxy, the 2 apps, Prometheus itself and the event watcher; monitoring stopped and started between "
        "runs, order alternating)",
        "",
        "| run | req/s (median) | p50 ms | p99 ms | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, results in report.rows.items():
        lines.append(
            f"| {key} | {report.median(key):.0f} | {report.median(key, 'p50_ms'):.1f} | "
            f"{report.median(key, 'p99_ms'):.1f} | {sum(r.non_2xx for r in results)} | "
            f"{sum(r.errors for r in results)} |"
        )
    lines += [
        "",
        f"- Site throughput with monitoring / without: **{report.ratio:.3f}** (ratio of the medians; goal ≥ 0.95)",
        f"- Median of the per-round ratios (each round's two runs back to back): **{report.paired_ratio:.3f}**",
    ]
    if report.collector_cores:
        share = statistics.median(report.collector_cores)
        lines.append(
            f"- CPU used by the monitoring daemons (exporters, Prometheus, the watcher) while the site was under "
            f"load: **{share:.1%} of one core** (median over the runs; the machine has {os.cpu_count()} cores). "
            "HAProxy's exporter and the app's /metrics run inside HAProxy and the app: not counted in that figure"
        )
    if report.samples_per_second is not None:
        lines.append(f"- Prometheus ingests {report.samples_per_second:.0f} samples/s for this cluster")
    return "\n".join(lines) + "\n"
