"""The hardened design's lifecycle on servers: what the emulated `up` does around the etcd, mariadb, agent and
keepalived phases, done over SSH once pyinfra has written and started everything else.

1. etcd: quorum, then the auth bootstrap (users root and agent, the role; control/etcd_access.py, idempotent).
2. MariaDB: the one-time bootstrap (run.py: schema and accounts on the primary, the replica pointed at it),
   recorded by the management machine's `db-bootstrapped` marker, as on emulated hosts.
3. The agents, held back by the first `up` until then, are started; a leader is awaited and the schema
   ensured on it.
4. keepalived: one LB holds the VIP on `[machines] vip_interface`.

webinfra's own checks (control/hastate.py, etcd_access.py) run on the servers' `Cluster`, whose machines are
`SshMachine`s (control/machines.py): commands over SSH, HTTP from inside each server through the shipped helper
(runtime/ssh.py), so every request leaves from inside the cluster as on emulated hosts.
"""

from __future__ import annotations

from collections.abc import Callable

from webinfra.control import hastate
from webinfra.control.cluster import Cluster
from webinfra.daemons import etcd, mariadb
from webinfra.model import Role, Topology
from webinfra.servers import ServersError, units
from webinfra.state import Layout

Say = Callable[[str, str, str], None]
HELD_UNTIL_BOOTSTRAP = frozenset({"agent"})
QUORUM_TIMEOUT = 90.0
LEADER_TIMEOUT = 90.0
VIP_TIMEOUT = 60.0


def held(topo: Topology, local: Layout) -> frozenset[str]:
    """Services the first `up` writes but does not start: the agents, until the database is bootstrapped."""
    return HELD_UNTIL_BOOTSTRAP if topo.ha and not local.db_bootstrapped_marker.exists() else frozenset()


def bootstrapped(topo: Topology, local: Layout) -> bool:
    return topo.ha and local.db_bootstrapped_marker.exists()


def etcd_ready(cluster: Cluster, say: Say) -> None:
    """Quorum, then etcd's auth bootstrap: the emulated `up`'s etcd step, with room for servers to start."""
    etcd.after_phase(cluster, say, timeout=QUORUM_TIMEOUT)


def agents_ready(cluster: Cluster, started: frozenset[str], say: Say) -> None:
    """Start the agents held back by this `up`, then wait for a leader and ensure the schema on it."""
    topo = cluster.topology
    if "agent" in started:
        for spec in topo.with_role(Role.DB):
            cluster.hosts[spec.name].run(["systemctl", "enable", "--now", units.unit_name("agent")])
            say(spec.name, "agent", "started (after the database bootstrap)")
    leader = hastate.wait_for_leader(cluster, timeout=LEADER_TIMEOUT)
    if leader is None:
        raise ServersError(
            f"no DB leader elected within {LEADER_TIMEOUT:g}s (journalctl -u {units.unit_name('agent')})"
        )
    say(leader, "agent", "leader (writable primary)")
    mariadb.ensure_schema(cluster.hosts[leader], cluster.plan.host(leader), topo)


def vip_ready(cluster: Cluster, say: Say) -> None:
    """One LB holds the VIP (hastate's wait, as the emulated `up`'s; longer, for servers)."""
    topo = cluster.topology
    if not topo.lb_pair or topo.vip is None:
        return
    holder = hastate.wait_for_vip(cluster, timeout=VIP_TIMEOUT)
    if holder is None:
        found = hastate.vip_holders(cluster)
        raise ServersError(
            f"the VIP {topo.vip} is held by {', '.join(found) or 'no LB'} after {VIP_TIMEOUT:g}s "
            f"(journalctl -u {units.unit_name('keepalived')}; [machines] vip_interface = "
            f"{topo.machines.vip_interface!r})"
        )
    say(holder, "keepalived", f"holds the VIP {topo.vip}")
