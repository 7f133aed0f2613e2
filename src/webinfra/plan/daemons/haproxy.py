"""HAProxy on hosts with the `lb` role: `haproxy.cfg` (the site's frontends and backends, the metrics
frontend) and the service. Pure (its runtime client, hooks and live weights: daemons/haproxy.py)."""

from __future__ import annotations

from typing import Any

from webinfra.model import Role, Topology
from webinfra.plan.render import (
    NOTHING,
    TLS12_CIPHERS,
    TLS13_CIPHERSUITES,
    Contribution,
    HostContext,
    render,
)
from webinfra.plan.spec import BackendServer, FileSpec, Probe, ServiceSpec
from webinfra.state import Layout

HAPROXY_THREADS = 1  # one thread measured fastest for this workload on 2 cores shared by every host


# HAProxy towards the web servers (docs/RESILIENCE.md has the measurements): connections on a LAN are set up
# in well under a millisecond, reads and writes answer in tens of them. Past these bounds a request that is
# safe to replay (reads, POSTs carrying an Idempotency-Key) goes to another server; a few failed connections
# in a row mark a server down.
LB_CONNECT_TIMEOUT_MS = 500


LB_READ_TIMEOUT_MS = 1000


LB_KEYED_WRITE_TIMEOUT_MS = 1500


LB_ERROR_LIMIT = 3


# The HAProxy exporter's frontend: scraped by Prometheus, and nothing else.
HAPROXY_METRICS_FRONTEND = "metrics"


def haproxy_metrics(topo: Topology, host: str, port: int | None = None) -> dict[str, Any] | None:
    """Values for the `frontend metrics` of an HAProxy on `host` (None: no monitoring, no frontend)."""
    if topo.monitoring_host is None:
        return None
    return {
        "name": HAPROXY_METRICS_FRONTEND,
        "address": str(topo.address_of(host)),
        "port": port or topo.monitoring.haproxy_metrics_port,
    }


def haproxy_runtime_socket(layout: Layout, lb_host: str) -> str:
    return str(layout.host(lb_host).sockets / "haproxy.sock")


def default_server_args(topo: Topology) -> str:
    """The `default-server` settings of haproxy.cfg (health checks, passive health). A dynamic server added
    through the runtime API does not inherit them: `lb_servers` gives each server its full arguments."""
    interval = topo.lb.check_interval_ms
    return (
        f"inter {interval}ms fastinter {max(100, interval // 4)}ms downinter {interval}ms"
        f" fall {topo.lb.check_fall} rise {topo.lb.check_rise} observe layer4 error-limit {LB_ERROR_LIMIT}"
        " on-error mark-down"
    )


def _backends(topo: Topology, layout: Layout) -> dict[str, Any]:
    """The values of the `site` and `site_writes` backends, shared by the file and `lb_servers`."""
    webs = topo.with_role(Role.WEB)
    servers = [
        {
            "name": w.name,
            "address": str(topo.address_of(w.name)),
            "port": topo.web.port,
            "weight": w.lb_weight,
            "backup": w.is_backup,
            # Re-encrypted hop: nginx's certificate must be issued by our CA for this very host.
            "tls": f" ssl verify required ca-file {layout.ca_cert} verifyhost {w.name}" if topo.backend_tls else "",
        }
        for w in webs
    ]
    primary = topo.db_primary
    write_check: dict[str, str | int | None] = {"uri": "/healthz", "port": None}
    if topo.ha:
        # The primary moves: every web host with a database may take writes, and the agent's /primary
        # check says which one does now (a demoted or dead primary's server gets none).
        route_writes = topo.lb.route_writes_to == "primary"
        write_servers = [{**s, "weight": 1} for w, s in zip(webs, servers, strict=True) if w.has(Role.DB)]
        route_writes = route_writes and bool(write_servers)
        write_check = {"uri": "/primary", "port": topo.db.agent_port}
    else:
        route_writes = topo.lb.route_writes_to == "primary" and primary is not None and primary.has(Role.WEB)
        # The write backend has one server; its weight does not matter, but 0 would refuse every write.
        write_servers = [{**s, "weight": 1} for s in servers if primary is not None and s["name"] == primary.name]
    return {
        "servers": servers,
        "route_writes": route_writes,
        "write_servers": write_servers,
        "write_check": write_check,
    }


def lb_servers(topo: Topology, layout: Layout) -> tuple[BackendServer, ...]:
    """Every server line of an LB's haproxy.cfg as a value (the same on every LB): what drain and scale
    give the runtime API, and what the server-state hooks keep, without reading the file back."""
    values, defaults = _backends(topo, layout), default_server_args(topo)
    check_port = values["write_check"]["port"]
    out = []
    writes = values["write_servers"] if values["route_writes"] else []  # no write backend in the file
    for backend, servers in (("site", values["servers"]), ("site_writes", writes)):
        for s in servers:
            own = f"weight {s['weight']} check"
            if backend == "site":
                own += (" backup" if s["backup"] else "") + (" check-ssl" + s["tls"] if s["tls"] else "")
            else:
                own += f" port {check_port}" if check_port else ""
                own += ((" no-check-ssl" if check_port else " check-ssl") + s["tls"]) if s["tls"] else ""
            args = " ".join(f"{s['address']}:{s['port']} {defaults} {own}".split())
            out.append(BackendServer(backend, s["name"], s["address"], s["port"], s["weight"], bool(s["tls"]), args))
    return tuple(out)


def render_haproxy(topo: Topology, layout: Layout, name: str) -> str:
    dirs = layout.host(name)
    return render(
        "haproxy.cfg.j2",
        **_backends(topo, layout),
        default_server=default_server_args(topo),
        host=name,
        cluster=topo.name,
        runtime_socket=haproxy_runtime_socket(layout, name),
        server_state_file=dirs.data / "haproxy-server-state",
        threads=HAPROXY_THREADS,
        bind_address="0.0.0.0",
        port=topo.lb.port,
        site_name=topo.site.name,
        connect_timeout_ms=LB_CONNECT_TIMEOUT_MS,
        read_timeout_ms=LB_READ_TIMEOUT_MS,
        keyed_write_timeout_ms=LB_KEYED_WRITE_TIMEOUT_MS,
        error_limit=LB_ERROR_LIMIT,
        tls=_lb_tls(topo, layout),
        metrics=haproxy_metrics(topo, name),
    )


def _lb_tls(topo: Topology, layout: Layout) -> dict[str, object] | None:
    if not topo.tls.enabled:
        return None
    return {
        "site_pem": str(layout.site_pem),
        "https_port": topo.lb.https_port,
        "ciphers": TLS12_CIPHERS,
        "ciphersuites": TLS13_CIPHERSUITES,
        "backend": topo.backend_tls,
    }


def contribute(ctx: HostContext) -> Contribution:
    topo, dirs = ctx.topo, ctx.dirs
    if not ctx.spec.has(Role.LB):
        return NOTHING
    cfg = dirs.etc / "haproxy.cfg"
    service = ServiceSpec(
        name="haproxy",
        argv=("haproxy", "-W", "-f", str(cfg), "-p", str(dirs.run / "haproxy.pid")),
        probe=Probe("tcp", ctx.address, topo.lb.port),
        pidfile=dirs.run / "haproxy.svc.pid",
        log=dirs.log / "haproxy.log",
        configs=(cfg,),
        reload_signal="USR2",
    )
    return Contribution(
        [FileSpec(cfg, render_haproxy(topo, ctx.layout, ctx.name))], [service], lb_servers(topo, ctx.layout)
    )
