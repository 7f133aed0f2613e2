"""dbproxy: each app host's DB routing with HA, a local HAProxy (writer and reader ports, checking the
agents' /primary and /read). Pure."""

from __future__ import annotations

from typing import Any

from webinfra.model import Role, Topology
from webinfra.plan.daemons.haproxy import haproxy_metrics
from webinfra.plan.render import NOTHING, Contribution, HostContext, render
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec
from webinfra.state import HostDirs


def dbproxy_metrics(topo: Topology, host: str) -> dict[str, Any] | None:
    return haproxy_metrics(topo, host, topo.monitoring.dbproxy_metrics_port)


# Every dbproxy asks every agent, over a new connection each time (the agent's API is a threaded
# http.server: a thread per check). So the checks one agent answers grow with the number of app hosts: at 34
# app hosts it was ~480 a second per agent, and the agents and dbproxies were half of an idle 40-host
# cluster's CPU (docs/BENCHMARKS.md, scale). Up to PROXIES_AT_FULL_RATE app hosts the intervals are the
# fastest (what the failover goals are measured with); beyond, they grow with the count, so an agent answers
# about as many checks as with PROXIES_AT_FULL_RATE, up to the caps: a promotion is then routed to within
# DOWN_INTER_CAP_MS instead of 100 ms, and a demoted or dead server leaves the rotation within INTER_CAP_MS.
PROXIES_AT_FULL_RATE = 4
DOWN_INTER_MS = 100
DOWN_INTER_CAP_MS = 500
INTER_CAP_MS = 500


def check_intervals(topo: Topology) -> tuple[int, int]:
    """(inter, downinter) in ms of every dbproxy's checks of the agents."""
    proxies = sum(1 for h in topo.hosts if h.has(Role.APP)) if topo.ha else 0
    scale = max(1.0, proxies / PROXIES_AT_FULL_RATE)
    inter = max(100, topo.db.loop_interval_ms // 2)
    scaled_inter = max(inter, min(int(inter * scale), INTER_CAP_MS))
    return scaled_inter, min(int(DOWN_INTER_MS * scale), DOWN_INTER_CAP_MS)


def dbproxy_files_and_service(topo: Topology, name: str, dirs: HostDirs) -> tuple[FileSpec, ServiceSpec]:
    host = topo.host(name)
    local = host.has(Role.DB)
    servers = [
        {
            "name": d.name,
            "address": str(topo.address_of(d.name)),
            "port": topo.db.port,
            # With a local DB, other nodes serve this host's reads only when the local one cannot.
            "backup": local and d.name != name,
        }
        for d in topo.with_role(Role.DB)
    ]
    cfg = dirs.etc / "dbproxy.cfg"
    inter_ms, down_inter_ms = check_intervals(topo)
    text = render(
        "dbproxy.cfg.j2",
        host=name,
        cluster=topo.name,
        runtime_socket=dirs.sockets / "dbproxy.sock",
        agent_port=topo.db.agent_port,
        inter_ms=inter_ms,
        down_inter_ms=down_inter_ms,
        writer_port=topo.db.writer_port,
        reader_port=topo.db.reader_port,
        servers=servers,
        local=local,
        metrics=dbproxy_metrics(topo, name),
    )
    service = ServiceSpec(
        name="dbproxy",
        argv=("haproxy", "-W", "-f", str(cfg), "-p", str(dirs.run / "dbproxy.pid")),
        probe=Probe("tcp", "127.0.0.1", topo.db.writer_port),
        pidfile=dirs.run / "dbproxy.svc.pid",
        log=dirs.log / "dbproxy.log",
        configs=(cfg,),
        reload_signal="USR2",
    )
    return FileSpec(cfg, text), service


def contribute(ctx: HostContext) -> Contribution:
    if not (ctx.spec.has(Role.APP) and ctx.topo.ha):
        return NOTHING
    proxy_file, proxy_svc = dbproxy_files_and_service(ctx.topo, ctx.name, ctx.dirs)
    return Contribution([proxy_file], [proxy_svc])
