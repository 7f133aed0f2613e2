"""After pyinfra's operations: the steps that talk to the running daemons, on the servers' `Cluster` (its
machines are `SshMachine`s from the machine factory, as for every other command on servers).

    bootstrap_database  the design as drawn: schema and accounts on the primary, replicas pointed at it
                        (daemons/mariadb.py, the same code as on emulated hosts); idempotent
    exporter_accounts   with monitoring: each DB node's `exporter` account (the emulated start hook's,
                        daemons/mysqld_exporter.py); its client file was written by pyinfra (ops.py)
    wait_ready          each service's readiness probe, in start order, evaluated on its server (the helper
                        of runtime/ssh.py): behind the firewall the management machine reaches only SSH and
                        the public ports, and an HTTPS probe names the CA where the server keeps it
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from webinfra.control.cluster import Cluster
from webinfra.daemons import mariadb
from webinfra.parallel import map_ordered
from webinfra.plan.daemons.exporters import EXPORTER_SECRET
from webinfra.plan.spec import HostPlan
from webinfra.runtime.probe import wait_until
from webinfra.servers import ServersError, units
from webinfra.services.secrets import ensure_secret
from webinfra.state import Layout, ServerLayout

Say = Callable[[str, str, str], None]
PROBE_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServerCa(Layout):
    """The management side's secrets, with the CA named where the servers keep it (CHANGE MASTER's
    MASTER_SSL_CA is read by the replica's MariaDB)."""

    @property
    def ca_cert(self) -> Path:
        return ServerLayout().ca_cert


def bootstrap_database(cluster: Cluster, say: Say) -> None:
    """Schema and accounts on the primary, each replica pointed at it and caught up. Idempotent."""
    topo, plan = cluster.topology, cluster.plan
    primary = topo.db_primary
    if primary is None:
        return
    hp = plan.host(primary.name)
    prim = cluster.hosts[primary.name]
    socket = str(mariadb.socket_path(hp))  # what the bootstrap's admin SQL connects through
    if not wait_until(lambda: prim.run(["test", "-S", socket], check=False).returncode == 0, PROBE_TIMEOUT, 0.5):
        raise ServersError(
            f"{primary.name}: MariaDB did not open its socket within {PROBE_TIMEOUT:g}s "
            f"(journalctl -u {units.unit_name('mariadb')})"
        )
    mariadb.bootstrap_primary(prim, hp, topo, cluster.layout)
    say(primary.name, "mariadb", "primary: schema and accounts")
    target_gtid = mariadb.gtid_binlog_pos(prim, hp)
    for replica in topo.db_replicas:
        rhp = plan.host(replica.name)
        rep = cluster.hosts[replica.name]
        if not wait_until(lambda: rep.probe(rhp.service("mariadb").probe, timeout=2.0), PROBE_TIMEOUT, 0.5):  # noqa: B023
            raise ServersError(f"{replica.name}: MariaDB is not answering on {rhp.address}:{topo.db.port}")
        ca = ServerCa(cluster.layout.cluster_dir)
        mariadb.setup_replica(rep, rhp, topo, ca, str(topo.address_of(primary.name)))
        mariadb.wait_caught_up(rep, rhp, target_gtid)
        say(replica.name, "mariadb", f"replica of {primary.name}, caught up")


def exporter_accounts(cluster: Cluster, say: Say) -> None:
    """Each DB node's monitoring account, on every `up` (idempotent, written with the binlog off on each node:
    monitoring may be added to a running cluster, whose bootstrap ran once)."""
    hosts = [hp for hp in cluster.plan.hosts if any(s.name == "mysqld-exporter" for s in hp.services)]
    if not hosts:
        return
    password = ensure_secret(cluster.layout, EXPORTER_SECRET)

    def ensure(hp: HostPlan) -> None:
        mariadb.ensure_exporter_user(cluster.hosts[hp.name], hp, password)
        say(hp.name, "mysqld-exporter", "account exporter@localhost")

    map_ordered(ensure, hosts)


def wait_ready(cluster: Cluster, say: Say) -> None:
    """Each service's probe on its server; the hosts side by side (one SSH connection each), a host's services
    in start order."""

    def host_ready(hp: HostPlan) -> None:
        machine = cluster.hosts[hp.name]
        for svc in hp.services:
            if not wait_until(lambda: machine.probe(svc.probe, timeout=2.0), PROBE_TIMEOUT, 0.2):  # noqa: B023
                raise ServersError(
                    f"{hp.name}: {svc.name} not ready on {svc.probe.address}:{svc.probe.port} within "
                    f"{PROBE_TIMEOUT:g}s (journalctl -u {units.unit_name(svc.name)})"
                )
            say(hp.name, svc.name, "ready")

    map_ordered(host_ready, cluster.plan.hosts)
