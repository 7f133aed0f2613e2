"""What a plan is made of: files to write and services to run, per host. Plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from webinfra.model import Topology
from webinfra.plan.layout import HostDirs, Layout


@dataclass(frozen=True)
class FileSpec:
    path: Path
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class Probe:
    """How to tell a service is ready: a TCP connect, an HTTP(S) GET answering 2xx, or a command (`argv`,
    run on the machine) exiting 0."""

    kind: Literal["tcp", "http", "https", "command"]
    address: str
    port: int
    path: str = "/"
    host_header: str = ""
    ca_file: str = ""  # https: the CA the server's certificate must chain to
    argv: tuple[str, ...] = ()  # command


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: tuple[str, ...]
    probe: Probe
    pidfile: Path
    log: Path
    configs: tuple[Path, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # Signal that makes the daemon re-read its configs in place; None means restart to apply changes.
    reload_signal: str | None = None
    stop_timeout: float = 10.0


@dataclass(frozen=True)
class AppRelease:
    """The code base an app host runs: `version` (site.json, `X-App-Version`) and `app_dir`, a release
    directory holding a `webinfra/site` package (services/releases.py), or None for the installed one."""

    version: str
    app_dir: Path | None = None


@dataclass(frozen=True)
class HostPlan:
    name: str
    address: str
    roles: tuple[str, ...]
    dirs: HostDirs
    files: tuple[FileSpec, ...] = ()
    services: tuple[ServiceSpec, ...] = ()

    def service(self, name: str) -> ServiceSpec:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(f"{self.name} runs no service {name!r}")

    def files_of(self, service: ServiceSpec) -> tuple[FileSpec, ...]:
        return tuple(f for f in self.files if f.path in service.configs)


# Services start in this order across the cluster (a database before the apps that use it, apps before
# the web servers in front of them, the load balancer last) and stop in the reverse order. Exporters start
# after the daemon they read; Prometheus and the event watcher (plan/monitoring.py) come last.
SERVICE_ORDER = (
    "etcd",
    "mariadb",
    "mysqld-exporter",
    "agent",
    "dbproxy",
    "app",
    "nginx",
    "haproxy",
    "keepalived",
    "node-exporter",
    "nginx-exporter",
    "alertmanager",
    "prometheus",
    "monitor",
)

# Services whose instance on the primary database's host starts (and is ready) before the others: a replica
# replicates from a running primary, and the primary's agent takes the leader lease first.
PRIMARY_FIRST = ("mariadb", "agent")

Step = tuple[HostPlan, ServiceSpec]  # one service on one host


@dataclass(frozen=True)
class ClusterPlan:
    topology: Topology
    layout: Layout
    hosts: tuple[HostPlan, ...] = field(default_factory=tuple)

    def host(self, name: str) -> HostPlan:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def start_order(self) -> list[tuple[HostPlan, ServiceSpec]]:
        """(host, service) pairs in start order; the primary database before its replicas."""
        topo = self.topology
        primary = topo.db_primary.name if topo.db_primary else ""

        def rank(item: tuple[HostPlan, ServiceSpec]) -> tuple[int, int]:
            host, svc = item
            return SERVICE_ORDER.index(svc.name), 0 if host.name == primary else 1

        pairs = [(h, s) for h in self.hosts for s in h.services]
        return sorted(pairs, key=rank)

    def start_phases(self) -> list[tuple[str, list[list[Step]]]]:
        """`start_order()` as phases, one per service name in SERVICE_ORDER, each a list of waves: the steps
        of a wave (one service on different hosts) do not depend on each other and may start together; a
        wave starts once the one before it is ready. One wave per phase, except PRIMARY_FIRST services: the
        primary's instance alone, then the rest."""
        primary = self.topology.db_primary.name if self.topology.db_primary else ""
        phases: list[tuple[str, list[list[Step]]]] = []
        for step in self.start_order():
            svc = step[1]
            if not phases or phases[-1][0] != svc.name:
                phases.append((svc.name, [[]]))
            waves = phases[-1][1]
            if svc.name in PRIMARY_FIRST and waves[-1] and waves[-1][-1][0].name == primary:
                waves.append([])  # the primary's wave is complete: the replicas come after it
            waves[-1].append(step)
        return phases
