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
    text = render(
        "dbproxy.cfg.j2",
        host=name,
        cluster=topo.name,
        runtime_socket=dirs.sockets / "dbproxy.sock",
        agent_port=topo.db.agent_port,
        inter_ms=max(100, topo.db.loop_interval_ms // 2),
        down_inter_ms=100,
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
