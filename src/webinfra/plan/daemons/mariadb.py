"""MariaDB on hosts with the `db` role: `my.cnf` and the service. Pure (its lifecycle: daemons/mariadb.py)."""

from __future__ import annotations

from webinfra.model import Role, Topology
from webinfra.plan.render import NOTHING, Contribution, HostContext, host_tls, render
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec


def server_id_of(topo: Topology, host: str) -> int:
    """MariaDB server_id: the host's offset in the subnet (unique, never 0, stable when hosts are
    reordered; web-01 at .11 writes GTIDs 0-11-N, which reads well)."""
    return int(topo.address_of(host)) - int(topo.network.subnet.network_address)


def contribute(ctx: HostContext) -> Contribution:
    topo, layout, name, dirs = ctx.topo, ctx.layout, ctx.name, ctx.dirs
    if not ctx.spec.has(Role.DB):
        return NOTHING
    cnf = dirs.etc / "my.cnf"
    text = render(
        "my.cnf.j2",
        **ctx.template_values(),
        datadir=dirs.data / "mariadb",
        socket=dirs.sockets / "mariadb.sock",
        bind_address="0.0.0.0",
        port=topo.db.port,
        server_id=server_id_of(topo, name),
        # With HA every node starts read-only: only the agent holding the lease makes it writable.
        read_only=topo.ha or ctx.spec.db_role == "replica",
        semi_sync=topo.ha,
        tls=host_tls(topo, layout, name) if topo.tls.enabled else None,
    )
    service = ServiceSpec(
        name="mariadb",
        argv=("mariadbd", f"--defaults-file={cnf}"),
        probe=Probe("tcp", ctx.address, topo.db.port),
        pidfile=dirs.run / "mariadb.svc.pid",
        log=dirs.log / "mariadb.out",
        configs=(cnf,),
        stop_timeout=30.0,
    )
    return Contribution([FileSpec(cnf, text)], [service])
