"""The DB HA agent (webinfra.agent) on each DB host with HA: `agent.json` and its command line. Pure
(what `up` waits for after its phase: daemons/agent.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from webinfra.model import Role, Topology
from webinfra.plan.daemons.etcd import ETCD_AGENT_SECRET, ETCD_AGENT_USER, etcd_endpoints, etcd_secured
from webinfra.plan.render import NOTHING, Contribution, HostContext
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec
from webinfra.state import HostDirs, Layout

AGENT_TOKEN_SECRET = "agent-token"


def webinfra_command(python: str) -> str:
    """The `webinfra` console script next to the interpreter running us."""
    return str(Path(python).parent / "webinfra")


def dcs_prefix(topo: Topology) -> str:
    return f"/webinfra/{topo.name}/"


def agent_files_and_service(
    topo: Topology, layout: Layout, name: str, dirs: HostDirs, python: str = sys.executable
) -> tuple[FileSpec, ServiceSpec]:
    address = str(topo.address_of(name))
    primary = topo.db_primary
    assert primary is not None
    wi = webinfra_command(python)
    where = ["--state-dir", str(layout.cluster_dir.parent), "-c", topo.name]
    config = {
        "cluster": topo.name,
        "host": name,
        "address": address,
        "listen_address": "0.0.0.0",
        "listen_port": topo.db.agent_port,
        "etcd_endpoints": _local_first(etcd_endpoints(topo), address),
        **(
            {
                "etcd_ca_file": str(layout.ca_cert),
                "etcd_user": ETCD_AGENT_USER,
                "etcd_password_file": str(layout.secret(ETCD_AGENT_SECRET)),
            }
            if etcd_secured(topo)
            else {}
        ),
        "prefix": dcs_prefix(topo),
        "lease_ttl": topo.db.lease_ttl_seconds,
        "loop_interval": topo.db.loop_interval_ms / 1000,
        "replica_max_lag": topo.db.replica_max_lag_seconds,
        "when_no_replica_acks": topo.db.when_no_replica_acks,
        "semi_sync_fallback_ms": topo.db.semi_sync_fallback_ms,
        "mariadb": {
            "socket": str(dirs.sockets / "mariadb.sock"),
            "port": topo.db.port,
            "datadir": str(dirs.data / "mariadb"),
            # my.cnf's pid-file: with the socket, the agent's proof that mysqld is gone (not slow).
            "pid_file": str(dirs.run / "mariadb.pid"),
        },
        "members": {h.name: {"address": str(topo.address_of(h.name))} for h in topo.with_role(Role.DB)},
        "initial_primary": primary.name,
        "repl_user": "repl",
        "repl_password_file": str(layout.secret("db-repl")),
        "token_file": str(layout.secret(AGENT_TOKEN_SECRET)),
        **({"repl_ssl_ca": str(layout.ca_cert)} if topo.tls.enabled else {}),
        "mariadb_control": _mariadb_control(topo, wi, where, name),
        "events_file": str(layout.events_file),
    }
    path = dirs.etc / "agent.json"
    service = ServiceSpec(
        name="agent",
        argv=(python, "-m", "webinfra.agent", "--config", str(path)),
        probe=Probe("http", address, topo.db.agent_port, "/status"),  # 200 from the first cycle on
        pidfile=dirs.run / "agent.svc.pid",
        log=dirs.log / "agent.log",
        configs=(path,),
        stop_timeout=5.0,
    )
    return FileSpec(path, json.dumps(config, indent=2) + "\n"), service


def _mariadb_control(topo: Topology, wi: str, where: list[str], name: str) -> dict[str, list[str]]:
    """How the agent stops and starts its MariaDB: through webinfra on emulated hosts; through systemd on a
    server (servers/units.py names the unit `webinfra-mariadb.service`; the agent runs as root there)."""
    if topo.machines.ssh:
        return {verb: ["systemctl", verb, "webinfra-mariadb.service"] for verb in ("stop", "start")}
    return {verb: [wi, verb, *where, name, "mariadb"] for verb in ("stop", "start")}


def _local_first(endpoints: list[str], address: str) -> list[str]:
    return sorted(endpoints, key=lambda url: f"//{address}:" not in url)


def contribute(ctx: HostContext) -> Contribution:
    if not (ctx.spec.has(Role.DB) and ctx.topo.ha):
        return NOTHING
    agent_file, agent_svc = agent_files_and_service(ctx.topo, ctx.layout, ctx.name, ctx.dirs, ctx.python)
    return Contribution([agent_file], [agent_svc])
