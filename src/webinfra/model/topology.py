"""The topology: hosts, their roles, and the settings of each tier. Immutable, validated, pure.

`Topology` is built only by `webinfra.model.load` (which turns validation failures into one-line
`TopologyError`s). Cross-field rules live in `check_topology`, which returns (field, value, message)
problems so the loader can name the offending field.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from webinfra.model.errors import NO_VALUE
from webinfra.model.machines import MachinesSpec, check_machines

HostName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
ClusterName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{0,7}$")]
# Hostname-ish: labels of letters, digits and hyphens.
SiteName = Annotated[
    str,
    StringConstraints(max_length=253, pattern=r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9-]{1,63}$"),
]

# TOML values are typed: `weight = true`, `weight = "5"` or `backup = 1` is a mistake, not a value to coerce.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # strict floats still take integers (`ryw_wait_seconds = 1`)
Bool = Annotated[bool, Strict()]


def _ip_text(value: Any) -> Any:
    # pydantic would otherwise turn an integer into an address (`subnet = 5` -> 0.0.0.5/32).
    if isinstance(value, str | ipaddress.IPv4Address | ipaddress.IPv4Network):
        return value
    raise PydanticCustomError("ip_type", "Input should be a string")


IPv4Network = Annotated[ipaddress.IPv4Network, BeforeValidator(_ip_text)]
IPv4Address = Annotated[ipaddress.IPv4Address, BeforeValidator(_ip_text)]

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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteSpec(_Frozen):
    name: SiteName = "www.foobar.com"


class NetworkSpec(_Frozen):
    subnet: IPv4Network = ipaddress.IPv4Network("198.18.0.0/24")


class LbSpec(_Frozen):
    route_writes_to: Literal["primary", "any"] = "primary"
    port: Int = Field(default=80, ge=1, le=65535)
    https_port: Int = Field(default=443, ge=1, le=65535)  # with [tls] enabled: HTTPS here, `port` only redirects
    check_interval_ms: Int = Field(default=500, ge=100, le=60_000)
    check_fall: Int = Field(default=2, ge=1, le=10)
    check_rise: Int = Field(default=2, ge=1, le=10)
    # LB pair: the site's virtual IP, held by keepalived (VRRP, unicast) on the active LB.
    vip: IPv4Address | None = None  # default: the subnet's .100 (or its last usable address)
    # The backup LB takes the VIP after 3 missed adverts + its skew (~0.7 s at 200 ms).
    vrrp_advert_ms: Int = Field(default=200, ge=100, le=10_000)
    virtual_router_id: Int = Field(default=51, ge=1, le=255)


class WebSpec(_Frozen):
    # Default 80, or 443 when the LB -> nginx hop is encrypted ([tls] enabled and backend): see Topology.
    port: Int = Field(default=80, ge=1, le=65535)
    max_body_kib: Int = Field(default=1024, ge=64, le=1_048_576)


class AppSpec(_Frozen):
    workers: Int = Field(default=1, ge=1, le=16)
    port: Int = Field(default=8000, ge=1, le=65535)
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,32}$")] = "1"


class DbSpec(_Frozen):
    port: Int = Field(default=3306, ge=1, le=65535)
    database: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "site"
    ryw_wait_seconds: Float = Field(default=0.5, ge=0.0, le=30.0)
    # High availability (on when some hosts have the 'etcd' role): leader lease, agents, DB routing.
    # A partitioned primary's lease expires ~TTL after its last renewal (the replica cannot promote before);
    # the leader fences itself min(1 s, TTL/3) before that. 3 s, not 2: under load fencing SQL took up to
    # 0.9 s and a promotion away from a cut-off source 1.4 s, which a 2 s lease's 0.67 s margin and 1.33 s
    # window do not hold (docs/HA.md has the measured budget).
    lease_ttl_seconds: Int = Field(default=3, ge=2, le=60)
    loop_interval_ms: Int = Field(default=500, ge=100, le=10_000)
    replica_max_lag_seconds: Float = Field(default=5.0, gt=0, le=3600)
    # Semi-synchronous replication (AFTER_SYNC): a write is acknowledged once a replica has it. When no
    # replica acknowledges: "fallback_async" (the leader's agent switches to async after the timeout, only
    # while it still holds its lease) keeps writes available; "block" never acknowledges an unreplicated write.
    when_no_replica_acks: Literal["fallback_async", "block"] = "fallback_async"
    # 500 ms, not 1 s (issue 13): with a replica cut off, every commit waits this long (plus detection,
    # 0.1 s while commits wait) before the fallback, and the site's clients give up after 2 s. Shorter is
    # not less safe (the optime rule covers what is acknowledged alone), only more eager to go async.
    semi_sync_fallback_ms: Int = Field(default=500, ge=100, le=600_000)
    agent_port: Int = Field(default=8008, ge=1, le=65535)
    writer_port: Int = Field(default=3307, ge=1, le=65535)  # app host's local DB routing (HAProxy), writes
    reader_port: Int = Field(default=3308, ge=1, le=65535)  # ...and reads


class EtcdSpec(_Frozen):
    # With [tls] enabled, client and peer ports speak TLS only (certificates from the local CA) and etcd
    # auth is on (docs/SECURITY.md); the metrics port is plain HTTP (/metrics, /health) for Prometheus.
    client_port: Int = Field(default=2379, ge=1, le=65535)
    peer_port: Int = Field(default=2380, ge=1, le=65535)
    metrics_port: Int = Field(default=2381, ge=1, le=65535)
    heartbeat_ms: Int = Field(default=50, ge=10, le=5000)
    election_timeout_ms: Int = Field(default=500, ge=50, le=50_000)


class TlsSpec(_Frozen):
    """HTTPS at the load balancer, and TLS on the hops behind it (LB -> nginx, app -> MariaDB, replication)."""

    enabled: Bool = True
    backend: Bool = True  # re-encrypt LB -> nginx (nginx listens with TLS, HAProxy verifies it against the CA)
    # The user's own site certificate (PEM files, absolute paths); default: one from webinfra's local CA.
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None  # the CA that issued cert_file, for clients to trust (`webinfra ca` prints it)

    @property
    def user_cert(self) -> bool:
        return self.cert_file is not None


def _webhook_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise PydanticCustomError("webhook_url", "must be an http:// or https:// URL with a host")
    return value


def _email_address(value: str) -> str:
    if not re.fullmatch(r"[^@\s<>,;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", value):
        raise PydanticCustomError("email", "must be an e-mail address (name@domain)")
    return value


WebhookUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_webhook_url)]
EmailAddress = Annotated[str, StringConstraints(max_length=254), AfterValidator(_email_address)]
SmartHost = Annotated[
    str, StringConstraints(max_length=260, pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?:[0-9]{1,5}$")
]


class AlertsSpec(_Frozen):
    """Where Alertmanager (on the monitoring host) sends the alerts Prometheus fires (plan/daemons/alertmanager.py).
    Nothing set: Alertmanager still groups, inhibits and holds silences; `webinfra alerts` shows them."""

    webhook_urls: tuple[WebhookUrl, ...] = Field(default=(), max_length=16)
    email_to: tuple[EmailAddress, ...] = Field(default=(), max_length=16)
    email_from: EmailAddress | None = None
    smarthost: SmartHost | None = None  # the SMTP relay, "host:port"
    # Grouping: the first notification of a new group waits this long for its siblings to join it.
    group_wait_seconds: Int = Field(default=10, ge=0, le=600)
    group_interval_seconds: Int = Field(default=60, ge=1, le=3600)  # between two notifications of a group
    repeat_interval_minutes: Int = Field(default=240, ge=1, le=10_080)  # a still-firing alert again


class MonitoringSpec(_Frozen):
    """Metrics and alerts, on when one host has the 'monitoring' role: exporters on every host, Prometheus
    and the event watcher on the monitoring host (plan/daemons/monitor.py, docs/MONITORING.md)."""

    scrape_interval_ms: Int = Field(default=2000, ge=500, le=60_000)  # also the rule evaluation interval
    prometheus_port: Int = Field(default=9090, ge=1, le=65535)
    node_exporter_port: Int = Field(default=9100, ge=1, le=65535)  # every host
    mysqld_exporter_port: Int = Field(default=9104, ge=1, le=65535)  # db hosts
    haproxy_metrics_port: Int = Field(default=8405, ge=1, le=65535)  # lb hosts: HAProxy's own exporter
    dbproxy_metrics_port: Int = Field(default=8406, ge=1, le=65535)  # app hosts with HA: the dbproxy's exporter
    monitor_port: Int = Field(default=9107, ge=1, le=65535)  # the event watcher's metrics (monitoring host)
    dashboard_port: Int = Field(default=8088, ge=1, le=65535)  # `webinfra dashboard`, on the management side
    alertmanager_port: Int = Field(default=9093, ge=1, le=65535)  # monitoring host
    nginx_exporter_port: Int = Field(default=9113, ge=1, le=65535)  # web hosts
    nginx_status_port: Int = Field(default=8081, ge=1, le=65535)  # web hosts, on 127.0.0.1: nginx's stub_status
    # Each alert's `runbook_url` annotation is this plus "#<alert name in lower case>". The default is the
    # runbook's path in the repository; point it at wherever you publish docs/RUNBOOK.md.
    runbook_url: Annotated[str, StringConstraints(max_length=512, pattern=r"^\S+$")] = "docs/RUNBOOK.md"
    alerts: AlertsSpec = AlertsSpec()
    # Alert bounds.
    down_after_seconds: Int = Field(default=5, ge=0, le=3600)  # a target or backend down this long fires
    max_replication_lag_seconds: Float = Field(default=5.0, gt=0, le=86_400)
    max_error_ratio: Float = Field(default=0.05, gt=0, le=1.0)  # share of 5xx answers over 1 minute
    max_p99_seconds: Float = Field(default=0.5, gt=0, le=600)  # the site's p99 latency over 1 minute
    cert_expiry_days: Int = Field(default=14, ge=1, le=3650)
    min_disk_free_ratio: Float = Field(default=0.1, gt=0, lt=1.0)  # DiskFilling below this share free, for 5 min


class HostSpec(_Frozen):
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


class Topology(_Frozen):
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


Problem = tuple[str, Any, str]


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


def check_topology(topo: Topology) -> list[Problem]:
    """Cross-field rules. Returns problems as (field path, value, message); empty when the topology is usable."""
    problems: list[Problem] = []
    subnet = topo.network.subnet
    if not 16 <= subnet.prefixlen <= 28:
        problems.append(("network.subnet", str(subnet), "prefix length must be between /16 and /28"))
        return problems
    seen_names: dict[str, int] = {}
    seen_addrs: dict[ipaddress.IPv4Address, str] = {}
    for i, host in enumerate(topo.hosts):
        at = f"hosts[{i}]"
        if host.name in seen_names:
            problems.append((f"{at}.name", host.name, f"duplicate host name (also hosts[{seen_names[host.name]}])"))
        seen_names.setdefault(host.name, i)
        if len(set(host.roles)) != len(host.roles):
            problems.append((f"{at}.roles", [r.value for r in host.roles], "a role is listed twice"))
        try:
            addr = topo.address_of(host.name)
        except ipaddress.AddressValueError:  # numbered past 255.255.255.255 (a subnet at the top of the space)
            problems.append((f"{at}.address", None, f"no address left in {subnet} for this host"))
            continue
        # On servers the subnet's first address is no longer this machine's: only emulated hosts keep off it.
        reserved = (subnet.network_address, subnet.broadcast_address) + (() if topo.machines.ssh else (topo.gateway,))
        if addr not in subnet or addr in reserved:
            problems.append(
                (
                    f"{at}.address",
                    str(addr),
                    f"must be a usable host address in {subnet} other than {topo.gateway}",
                )
            )
        elif addr in seen_addrs:
            problems.append((f"{at}.address", str(addr), f"address already used by {seen_addrs[addr]}"))
        seen_addrs.setdefault(addr, host.name)
        if not host.has(Role.WEB):
            if host.weight is not None:
                problems.append(
                    (f"{at}.weight", host.weight, "only a 'web' host (a load-balancer backend) has a weight")
                )
            if host.backup is not None:
                problems.append(
                    (
                        f"{at}.backup",
                        host.backup,
                        "only a 'web' host (a load-balancer backend) can be a backup",
                    )
                )
        if host.has(Role.DB) and host.db_role is None:
            problems.append((f"{at}.db_role", None, 'a \'db\' host needs db_role = "primary" or "replica"'))
        if not host.has(Role.DB) and host.db_role is not None:
            problems.append((f"{at}.db_role", host.db_role, "only a host with the 'db' role has a db_role"))
    problems += check_machines(topo.machines, [h.name for h in topo.hosts])
    if problems:
        return problems

    lbs, webs, apps = topo.with_role(Role.LB), topo.with_role(Role.WEB), topo.with_role(Role.APP)
    primaries = [h for h in topo.hosts if h.db_role == "primary"]
    if len(lbs) not in (1, 2):
        problems.append(("hosts", [h.name for h in lbs], "one host (single LB) or two (an LB pair) must have 'lb'"))
    monitors = topo.with_role(Role.MONITORING)
    if len(monitors) > 1:
        problems.append(("hosts", [h.name for h in monitors], "at most one host may have the 'monitoring' role"))
    if topo.etcd.election_timeout_ms < 5 * topo.etcd.heartbeat_ms:
        problems.append(
            (
                "etcd.election_timeout_ms",
                topo.etcd.election_timeout_ms,
                f"etcd needs at least 5 x heartbeat_ms ({5 * topo.etcd.heartbeat_ms})",
            )
        )
    if topo.db.loop_interval_ms * 2 > topo.db.lease_ttl_seconds * 1000:
        problems.append(
            (
                "db.loop_interval_ms",
                topo.db.loop_interval_ms,
                f"the agents renew their lease once a cycle: keep it at most half of "
                f"lease_ttl_seconds ({topo.db.lease_ttl_seconds * 500} ms)",
            )
        )
    etcds = topo.with_role(Role.ETCD)
    if etcds and len(etcds) % 2 == 0:
        problems.append(("hosts", [h.name for h in etcds], "the 'etcd' role needs an odd number of hosts (3 for HA)"))
    if topo.lb_pair and topo.vip is not None:
        vip = topo.vip
        used = {topo.address_of(h.name) for h in topo.hosts}
        if vip not in subnet or vip in (subnet.network_address, subnet.broadcast_address, topo.gateway) or vip in used:
            problems.append(("lb.vip", str(vip), f"must be a free usable address in {subnet}"))
    if topo.lb.vip is not None and not topo.lb_pair:
        problems.append(("lb.vip", str(topo.lb.vip), "a virtual IP needs two 'lb' hosts (an LB pair)"))
    if not webs:
        problems.append(("hosts", [], "at least one host must have the 'web' role"))
    elif all(h.is_backup for h in webs):
        problems.append(("hosts", [h.name for h in webs], "every 'web' host is a backup: at least one must be active"))
    elif all(h.lb_weight == 0 for h in webs):
        # HAProxy sends nothing to a server of weight 0: the site would answer 503 to every request.
        problems.append(("hosts", [h.name for h in webs], "every 'web' host has weight 0: no host would get traffic"))
    if not apps:
        problems.append(("hosts", [], "at least one host must have the 'app' role"))
    problems += _check_primary(topo, primaries)
    app_only_exists = any(not h.has(Role.WEB) for h in apps)  # computed once: checks stay linear in hosts
    web_only_exists = any(not w.has(Role.APP) for w in webs)
    for i, host in enumerate(topo.hosts):
        if host.has(Role.WEB) and not host.has(Role.APP) and not app_only_exists:
            problems.append(
                (
                    f"hosts[{i}].roles",
                    [r.value for r in host.roles],
                    "a 'web' host without 'app' needs app-only hosts to proxy to",
                )
            )
        if host.has(Role.APP) and not host.has(Role.WEB) and not web_only_exists:
            problems.append(
                (
                    f"hosts[{i}].roles",
                    [r.value for r in host.roles],
                    "an app-only host is reached by no web host (add a 'web' host without 'app')",
                )
            )
    for i, host in enumerate(topo.hosts):
        ports = [port for _, port in listeners(topo, host)]
        clash = sorted({port for port in ports if ports.count(port) > 1})
        if clash:
            problems.append(
                (
                    f"hosts[{i}].roles",
                    [r.value for r in host.roles],
                    f"two services on this host would listen on port {clash[0]}; change one of the ports",
                )
            )
    problems += _check_tls(topo)
    problems += _check_alerts(topo)
    if topo.lb.route_writes_to == "primary" and len(primaries) == 1 and not primaries[0].has(Role.WEB) and not topo.ha:
        problems.append(
            (
                "lb.route_writes_to",
                "primary",
                f"the primary DB host {primaries[0].name!r} is not a 'web' host; use \"any\"",
            )
        )
    return problems


def _check_primary(topo: Topology, primaries: list[HostSpec]) -> list[Problem]:
    """Exactly one db host is the (initial) primary; the message says which way it is wrong."""
    if len(primaries) == 1:
        return []
    if len(primaries) > 1:
        names = [h.name for h in primaries]
        return [("hosts", names, f"{len(names)} 'db' hosts have db_role = \"primary\": exactly one may")]
    dbs = topo.with_role(Role.DB)
    if not dbs:
        return [("hosts", NO_VALUE, "no host has the 'db' role: add one with db_role = \"primary\"")]
    db_names = ", ".join(h.name for h in dbs)
    return [("hosts", NO_VALUE, f"no 'db' host has db_role = \"primary\" (db hosts: {db_names}): make one the primary")]


def _check_tls(topo: Topology) -> list[Problem]:
    """The user's own certificate: both files or neither, absolute paths (whether they can be read is checked
    where files are read, by `up`, not here)."""
    tls = topo.tls
    problems: list[Problem] = []
    for field in ("cert_file", "key_file", "ca_file"):
        value = getattr(tls, field)
        if value is not None and not value.startswith("/"):
            problems.append((f"tls.{field}", value, "must be an absolute path"))
    if (tls.cert_file is None) != (tls.key_file is None):
        field = "tls.key_file" if tls.key_file is None else "tls.cert_file"
        problems.append((field, None, "cert_file and key_file go together: give both or neither"))
    if tls.ca_file is not None and tls.cert_file is None:
        problems.append(("tls.ca_file", tls.ca_file, "names the CA of your own certificate: give cert_file too"))
    return problems


def _check_alerts(topo: Topology) -> list[Problem]:
    """E-mail needs a sender and a relay; routes need Alertmanager, which runs on the monitoring host."""
    alerts = topo.monitoring.alerts
    problems: list[Problem] = []
    if alerts.email_to:
        if alerts.email_from is None:
            problems.append(("monitoring.alerts.email_from", NO_VALUE, "email_to needs a sender address (email_from)"))
        if alerts.smarthost is None:
            problems.append(("monitoring.alerts.smarthost", NO_VALUE, 'email_to needs an SMTP relay ("host:port")'))
    routed = alerts.webhook_urls or alerts.email_to
    if routed and topo.monitoring_host is None:
        problems.append(
            (
                "monitoring.alerts",
                list(alerts.webhook_urls or alerts.email_to),
                "alert routes need a host with the 'monitoring' role (Alertmanager runs there)",
            )
        )
    return problems
