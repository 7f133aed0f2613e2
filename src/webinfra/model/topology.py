"""The topology: hosts, their roles, and the settings of each tier (model/settings.py). Immutable, pure.

`Topology` is built only by `webinfra.model.load` (which turns validation failures into one-line
`TopologyError`s). Its derived views (addresses, the VIP, the LB pair, who reads from which replica) are
here, with `listeners()`, the ports each host's roles open. The cross-field rules are in model/checks.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from webinfra.model.machines import MachinesSpec
from webinfra.model.settings import (
    AppSpec,
    Bool,
    DbSpec,
    EtcdSpec,
    Frozen,
    Int,
    IPv4Address,
    LbSpec,
    MonitoringSpec,
    NetworkSpec,
    SiteSpec,
    TlsSpec,
    WebSpec,
)

HostName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
ClusterName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{0,7}$")]

# Gateway (the client side, in the machine's own namespace) takes the first address of the subnet;
# hosts without an explicit address are numbered from this offset, in file order.
GATEWAY_OFFSET = 1
FIRST_HOST_OFFSET = 10


class Role(StrEnum):
    LB = "lb"  # HAProxy, the site's entry point
    WEB = "web"  # nginx, a backend of the load balancer
    APP = "app"  # the site's app server (uvicorn) and code base
    DB = "db"  # MariaDB; `db_role` says primary or replica (the initial one when HA is on)
    ETCD = "etcd"  # a member of the etcd cluster the DB agents keep their leader lease in (turns HA on)
    MONITORING = "monitoring"  # Prometheus and webinfra's event watcher (turns the exporters on every host on)


class HostSpec(Frozen):
    name: HostName
    roles: tuple[Role, ...] = Field(min_length=1)
    address: IPv4Address | None = None
    # Load-balancer settings of a web host (a backend).
    weight: Int | None = Field(default=None, ge=0, le=256)
    backup: Bool | None = None
    # Replication role of a db host.
    db_role: Literal["primary", "replica"] | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def lb_weight(self) -> int:
        return 1 if self.weight is None else self.weight

    @property
    def is_backup(self) -> bool:
        return bool(self.backup)


class Topology(Frozen):
    name: ClusterName = "webinfra"
    site: SiteSpec = SiteSpec()
    network: NetworkSpec = NetworkSpec()
    lb: LbSpec = LbSpec()
    web: WebSpec = WebSpec()
    app: AppSpec = AppSpec()
    db: DbSpec = DbSpec()
    etcd: EtcdSpec = EtcdSpec()
    tls: TlsSpec = TlsSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    # nftables in every host: inbound dropped except the flows the topology needs (plan/daemons/firewall.py).
    firewall: Bool = True
    # How hosts are reached: namespaces on this machine, or servers over SSH (model/machines.py).
    machines: MachinesSpec = MachinesSpec()
    hosts: tuple[HostSpec, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _web_port_follows_backend_tls(cls, data: Any) -> Any:
        """nginx listens on 443 by default when the LB -> nginx hop is TLS (an explicit `[web] port` wins)."""
        if not isinstance(data, dict):
            return data
        tls, web = data.get("tls", {}), data.get("web", {})
        if not (isinstance(tls, dict) and isinstance(web, dict)) or "port" in web:
            return data
        if tls.get("enabled", True) is True and tls.get("backend", True) is True:
            return {**data, "web": {**web, "port": 443}}
        return data

    # ---- derived views (pure) ----
    def host(self, name: str) -> HostSpec:
        return self._by_name[name]

    def with_role(self, role: Role) -> tuple[HostSpec, ...]:
        return self._by_role.get(role, ())

    # The views below are computed once per topology (it is immutable): rendering asks them for every
    # host, and a plan of thousands of hosts must stay linear.
    @cached_property
    def _by_role(self) -> dict[Role, tuple[HostSpec, ...]]:
        out: dict[Role, list[HostSpec]] = {}
        for host in self.hosts:
            for role in dict.fromkeys(host.roles):
                out.setdefault(role, []).append(host)
        return {role: tuple(hosts) for role, hosts in out.items()}

    @cached_property
    def _hash(self) -> int:
        return hash((type(self), *(getattr(self, name) for name in type(self).model_fields)))

    def __hash__(self) -> int:
        return self._hash

    @cached_property
    def ha(self) -> bool:
        """High availability: DB agents with a leader lease in etcd, and DB routing on app hosts."""
        return any(h.has(Role.ETCD) for h in self.hosts)

    @property
    def monitoring_host(self) -> HostSpec | None:
        """The host that runs Prometheus; with one, every host also runs the exporters of its roles."""
        hosts = self.with_role(Role.MONITORING)
        return hosts[0] if hosts else None

    @property
    def lb_pair(self) -> bool:
        return len(self.with_role(Role.LB)) > 1

    @property
    def vip(self) -> ipaddress.IPv4Address | None:
        """The site's virtual IP when there is an LB pair."""
        if not self.lb_pair:
            return None
        if self.lb.vip is not None:
            return self.lb.vip
        subnet = self.network.subnet
        candidate = subnet.network_address + 100
        return candidate if candidate < subnet.broadcast_address else subnet.broadcast_address - 1

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.network.subnet.network_address + GATEWAY_OFFSET

    @cached_property
    def _addresses(self) -> dict[str, ipaddress.IPv4Address]:
        """Every host's address, computed once: hosts without `address` are numbered in file order."""
        out: dict[str, ipaddress.IPv4Address] = {}
        offset = FIRST_HOST_OFFSET
        for host in self.hosts:
            if host.address is not None:
                out.setdefault(host.name, host.address)
                continue
            # Numbered past 255.255.255.255 (a subnet at the top of the space): check_topology reports it.
            with contextlib.suppress(ipaddress.AddressValueError):
                out.setdefault(host.name, self.network.subnet.network_address + offset)
            offset += 1
        return out

    @cached_property
    def _by_name(self) -> dict[str, HostSpec]:
        out: dict[str, HostSpec] = {}
        for host in self.hosts:
            out.setdefault(host.name, host)
        return out

    def address_of(self, name: str) -> ipaddress.IPv4Address:
        try:
            return self._addresses[name]
        except KeyError:
            if name in self._by_name:
                raise ipaddress.AddressValueError(f"no address left for {name}") from None
            raise

    @cached_property
    def db_primary(self) -> HostSpec | None:
        return next((h for h in self.with_role(Role.DB) if h.db_role == "primary"), None)

    @cached_property
    def db_replicas(self) -> tuple[HostSpec, ...]:
        return tuple(h for h in self.with_role(Role.DB) if h.db_role == "replica")

    @property
    def entry_host(self) -> HostSpec:
        """The host clients reach: the (first) load balancer."""
        return self.with_role(Role.LB)[0]

    @property
    def backend_tls(self) -> bool:
        """The LB -> nginx hop is encrypted."""
        return self.tls.enabled and self.tls.backend

    @property
    def site_url(self) -> str:
        entry = self.vip if self.vip is not None else self.address_of(self.entry_host.name)
        if self.tls.enabled:
            port = "" if self.lb.https_port == 443 else f":{self.lb.https_port}"
            return f"https://{entry}{port}/"
        port = "" if self.lb.port == 80 else f":{self.lb.port}"
        return f"http://{entry}{port}/"

    def app_upstreams_of(self, web_host: str) -> tuple[HostSpec, ...]:
        """App servers an nginx on `web_host` proxies to: its own app if it has one, else every app-only host."""
        host = self.host(web_host)
        if host.has(Role.APP):
            return (host,)
        return tuple(h for h in self.with_role(Role.APP) if not h.has(Role.WEB))

    def db_readers_for(self, app_host: str) -> tuple[HostSpec, ...]:
        """Replicas an app server reads from, in preference order: its local replica first, then the others."""
        replicas = self.db_replicas
        local = tuple(r for r in replicas if r.name == app_host)
        return local + tuple(r for r in replicas if r.name != app_host)


def listeners(topo: Topology, host: HostSpec) -> list[tuple[str, int]]:
    """(service, TCP port) pairs a host listens on, from its roles. The firewall derives from these too."""
    out: list[tuple[str, int]] = []
    if host.has(Role.LB):
        out.append(("haproxy", topo.lb.port))
        if topo.tls.enabled:
            out.append(("haproxy-https", topo.lb.https_port))
    if host.has(Role.WEB):
        out.append(("nginx", topo.web.port))
    if host.has(Role.APP):
        out.append(("app", topo.app.port))
        if topo.ha:
            out += [("dbproxy-writer", topo.db.writer_port), ("dbproxy-reader", topo.db.reader_port)]
    if host.has(Role.DB):
        out.append(("mariadb", topo.db.port))
        if topo.ha:
            out.append(("agent", topo.db.agent_port))
    if host.has(Role.ETCD):
        out += [
            ("etcd-client", topo.etcd.client_port),
            ("etcd-peer", topo.etcd.peer_port),
            ("etcd-metrics", topo.etcd.metrics_port),
        ]
    out += _monitoring_listeners(topo, host)
    return out


def _monitoring_listeners(topo: Topology, host: HostSpec) -> list[tuple[str, int]]:
    """The exporters a host runs when the topology has a monitoring host (the site's and the agents' metrics
    are served on their own ports)."""
    mon = topo.monitoring
    if topo.monitoring_host is None:
        return []
    out = [("node-exporter", mon.node_exporter_port)]
    if host.has(Role.LB):
        out.append(("haproxy-metrics", mon.haproxy_metrics_port))
    if host.has(Role.APP) and topo.ha:
        out.append(("dbproxy-metrics", mon.dbproxy_metrics_port))
    if host.has(Role.DB):
        out.append(("mysqld-exporter", mon.mysqld_exporter_port))
    if host.has(Role.WEB):
        out += [("nginx-exporter", mon.nginx_exporter_port), ("nginx-status", mon.nginx_status_port)]
    if host.has(Role.MONITORING):
        out += [
            ("prometheus", mon.prometheus_port),
            ("monitor", mon.monitor_port),
            ("alertmanager", mon.alertmanager_port),
        ]
    return out
