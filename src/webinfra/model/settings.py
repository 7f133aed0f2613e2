"""The settings of each tier of a topology (`[lb]`, `[db]`, `[tls]`, `[monitoring]`, …) and the strict
value types they are written in. Frozen pydantic models with their defaults; model/topology.py puts them
together with the hosts into a `Topology`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints
from pydantic_core import PydanticCustomError

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


class Frozen(BaseModel):
    """Every model of a topology: immutable (a topology is a value), and an unknown key is a mistake."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteSpec(Frozen):
    name: SiteName = "www.foobar.com"


class NetworkSpec(Frozen):
    subnet: IPv4Network = ipaddress.IPv4Network("198.18.0.0/24")


class LbSpec(Frozen):
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


class WebSpec(Frozen):
    # Default 80, or 443 when the LB -> nginx hop is encrypted ([tls] enabled and backend): see Topology.
    port: Int = Field(default=80, ge=1, le=65535)
    max_body_kib: Int = Field(default=1024, ge=64, le=1_048_576)


class AppSpec(Frozen):
    workers: Int = Field(default=1, ge=1, le=16)
    port: Int = Field(default=8000, ge=1, le=65535)
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,32}$")] = "1"


class DbSpec(Frozen):
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


class EtcdSpec(Frozen):
    # With [tls] enabled, client and peer ports speak TLS only (certificates from the local CA) and etcd
    # auth is on (docs/SECURITY.md); the metrics port is plain HTTP (/metrics, /health) for Prometheus.
    client_port: Int = Field(default=2379, ge=1, le=65535)
    peer_port: Int = Field(default=2380, ge=1, le=65535)
    metrics_port: Int = Field(default=2381, ge=1, le=65535)
    heartbeat_ms: Int = Field(default=50, ge=10, le=5000)
    election_timeout_ms: Int = Field(default=500, ge=50, le=50_000)


class TlsSpec(Frozen):
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


class AlertsSpec(Frozen):
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


class MonitoringSpec(Frozen):
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
