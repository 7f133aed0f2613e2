"""What a plan is made of: files to write and services to run, per host. Plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from webinfra.state import HostDirs, Layout

if TYPE_CHECKING:  # only named in annotations: the helper that runs on servers (runtime/ssh.py) ships this
    # module with the standard library alone, without the model (pydantic)
    from webinfra.model import Topology


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
class Flow:
    """Inbound traffic a host must accept: from `sources` (addresses; None = anywhere) to `ports`."""

    name: str  # e.g. "lb -> nginx"; the rule's comment
    dest: str  # host name
    sources: tuple[str, ...] | None
    proto: Literal["tcp", "vrrp"] = "tcp"
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class AppRelease:
    """The code base an app host runs: `version` (site.json, `X-App-Version`) and `app_dir`, a release
    directory holding a `webinfra/site` package (services/releases.py), or None for the installed one."""

    version: str
    app_dir: Path | None = None


@dataclass(frozen=True)
class BackendServer:
    """One server line of an HAProxy backend, as a value: what the runtime API and the server-state file
    name it by, and `args`, the `add server` arguments that give a dynamic server what a reload of the file
    would (its address, the `default-server` settings it does not inherit, then its own)."""

    backend: str
    name: str
    address: str
    port: int
    weight: int
    tls: bool
    args: str


@dataclass(frozen=True)
class HostPlan:
    name: str
    address: str
    roles: tuple[str, ...]
    dirs: HostDirs
    files: tuple[FileSpec, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    lb_servers: tuple[BackendServer, ...] = ()  # with the `lb` role: haproxy.cfg's servers
    vrrp_peers: tuple[str, ...] = ()  # with an LB pair: the other LB's address, keepalived's unicast peer

    def service(self, name: str) -> ServiceSpec:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(f"{self.name} runs no service {name!r}")

    def files_of(self, service: ServiceSpec) -> tuple[FileSpec, ...]:
        return tuple(f for f in self.files if f.path in service.configs)


# Services start in this order across the cluster (a database before the apps that use it, apps before
# the web servers in front of them, the load balancer last) and stop in the reverse order. Exporters start
# after the daemon they read; Prometheus and the event watcher (plan/daemons/monitor.py) come last.
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

# The phases each phase waits for (its service ready on every host), when they are in the plan. SERVICE_ORDER
# is one order that honours them; `up` starts a phase as soon as what it waits for is ready, so the front
# tier (dbproxy, app, nginx, HAProxy, keepalived) comes up while etcd, MariaDB and the agents elect a
# leader: none of them needs the database to start (the app opens no connection until a request, dbproxy
# marks a writer up once an agent says it is the primary). `down` stops a phase once every phase waiting
# for it has stopped. Within the DB chain the order is needed: an agent needs etcd and its MariaDB, an
# exporter the daemon it reads; in the front chain it keeps a tier from being health-checked down before
# the tier behind it listens (HAProxy would then wait `rise` checks before sending it anything).
START_AFTER: dict[str, tuple[str, ...]] = {
    "etcd": (),
    "mariadb": (),
    "mysqld-exporter": ("mariadb",),
    "agent": ("etcd", "mariadb"),
    "dbproxy": (),
    "app": ("dbproxy",),
    "nginx": ("app",),
    "haproxy": ("nginx",),
    "keepalived": ("haproxy",),
    "node-exporter": (),
    "nginx-exporter": ("nginx",),
    "alertmanager": (),
    "prometheus": ("alertmanager",),
    "monitor": ("prometheus",),
}

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

    def phase_graph(self) -> dict[str, tuple[str, ...]]:
        """Each phase of `start_phases()` with the phases of this plan it waits for (START_AFTER, looking
        through a phase the plan lacks to what that one waits for)."""
        present = {name for name, _ in self.start_phases()}

        def waits_for(name: str) -> set[str]:
            found: set[str] = set()
            for dep in START_AFTER[name]:
                found |= {dep} if dep in present else waits_for(dep)
            return found

        return {
            name: tuple(sorted(waits_for(name), key=SERVICE_ORDER.index))
            for name in sorted(present, key=SERVICE_ORDER.index)
        }
