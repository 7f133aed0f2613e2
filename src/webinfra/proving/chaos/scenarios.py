"""The chaos scenarios: a table from a name to what to break, resolved from roles, never from host names.

`resolve(name, topology, roles)` is pure: `Roles` is what the cluster looks like right now (who holds the
VIP, which DB node is the writable primary), read by `roles_of(cluster)` in run.py. A scenario that the
topology cannot express (an etcd member on the seed design, which has no etcd) resolves to `NotApplicable`
with the reason, which reports show as such rather than as an error. The same table serves both targets,
emulated hosts and servers over SSH; a scenario the servers cannot take says why in `not_on_servers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from webinfra.model import Role, Topology

Mode = Literal["crash", "stop", "partition", "slow", "restart"]


@dataclass(frozen=True)
class Roles:
    """Who does what right now (the parts that move during failovers)."""

    vip_holder: str | None  # the LB holding the VIP (a pair), or None
    primary: str | None  # the writable primary DB node


@dataclass(frozen=True)
class Target:
    scenario: str
    host: str | None  # None: every host (full-restart)
    service: str | None  # None: the whole host
    mode: Mode
    what: str  # one line for people: "web-02's app server crashes (SIGKILL)"


@dataclass(frozen=True)
class NotApplicable:
    scenario: str
    reason: str


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # what it breaks, in general terms
    expect: str  # what a design without single points of failure should show
    not_on_servers: str = ""  # why it does not run on servers over SSH ("": it does)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("app-crash", "an app server's process is killed", "reads unaffected; LB stops sending to it"),
    Scenario("app-partition", "an app server's host is cut off the network", "the LB and the DB routing avoid it"),
    Scenario("lb-crash", "HAProxy on the active load balancer is killed", "the other LB takes the VIP"),
    Scenario("lb-host-down", "the active load balancer's host dies", "the other LB takes the VIP"),
    Scenario("primary-crash", "the primary database is killed", "a replica is promoted; no acknowledged write lost"),
    Scenario("primary-partition", "the primary database's host is cut off", "it fences itself; a replica is promoted"),
    Scenario("replica-down", "a replica database stops", "reads move to other nodes; writes continue"),
    Scenario("replica-slow", "a replica's host becomes slow", "the site stays up (slower at worst)"),
    Scenario("etcd-member-down", "one etcd member (not on the primary's host) is killed", "nothing changes"),
    Scenario(
        "full-restart",
        "everything down (data kept), then up again",
        "no acknowledged write lost",
        not_on_servers="it takes every server down and redeploys them (`webinfra down`, then `up`): run those yourself",
    ),
)
NAMES: tuple[str, ...] = tuple(s.name for s in SCENARIOS)


def scenario(name: str) -> Scenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(name)


def _app_host(topo: Topology, roles: Roles) -> str | None:
    """An app server, preferably one whose host holds neither the primary DB nor an LB, so the fault hits
    the app tier and not something else."""
    apps = [h.name for h in topo.with_role(Role.APP)]
    if not apps:
        return None
    primary = roles.primary or (topo.db_primary.name if topo.db_primary else None)
    lbs = {h.name for h in topo.with_role(Role.LB)}
    ranked = sorted(apps, key=lambda name: (name == primary, name in lbs))
    return ranked[0]


def _replica(topo: Topology, roles: Roles) -> str | None:
    dbs = [h.name for h in topo.with_role(Role.DB)]
    primary = roles.primary or (topo.db_primary.name if topo.db_primary else None)
    others = [d for d in dbs if d != primary]
    return others[0] if others else None


def resolve(name: str, topo: Topology, roles: Roles, *, servers: bool = False) -> Target | NotApplicable:
    """What `name` breaks in this topology, given who holds which role now (`servers`: on servers over SSH)."""
    spec = scenario(name)  # KeyError for an unknown name
    if servers and spec.not_on_servers:
        return NotApplicable(name, f"not on servers: {spec.not_on_servers}")
    lbs = [h.name for h in topo.with_role(Role.LB)]
    lb = roles.vip_holder if roles.vip_holder in lbs else (lbs[0] if lbs else None)
    primary = roles.primary or (topo.db_primary.name if topo.db_primary else None)

    def na(reason: str) -> NotApplicable:
        return NotApplicable(name, reason)

    if name in ("app-crash", "app-partition"):
        app = _app_host(topo, roles)
        if app is None:
            return na("no host has the 'app' role")
        if name == "app-crash":
            return Target(name, app, "app", "crash", f"{app}'s app server is killed (SIGKILL)")
        return Target(name, app, None, "partition", f"{app} (an app server's host) is cut off the network")
    if name in ("lb-crash", "lb-host-down"):
        if lb is None:
            return na("no host has the 'lb' role")
        active = "the active LB" if topo.lb_pair else "the only LB"
        if name == "lb-crash":
            return Target(name, lb, "haproxy", "crash", f"HAProxy on {lb} ({active}) is killed (SIGKILL)")
        return Target(name, lb, None, "crash", f"{lb} ({active}) dies: every process killed, link down")
    if name in ("primary-crash", "primary-partition"):
        if primary is None:
            return na("no primary database")
        if name == "primary-crash":
            return Target(name, primary, "mariadb", "crash", f"the primary's MariaDB on {primary} is killed (SIGKILL)")
        return Target(name, primary, None, "partition", f"{primary} (the primary DB's host) is cut off the network")
    if name in ("replica-down", "replica-slow"):
        replica = _replica(topo, roles)
        if replica is None:
            return na("no replica database")
        if name == "replica-down":
            return Target(name, replica, "mariadb", "stop", f"the replica's MariaDB on {replica} stops")
        return Target(name, replica, None, "slow", f"{replica} (a replica's host) becomes slow")
    if name == "etcd-member-down":
        members = [h.name for h in topo.with_role(Role.ETCD)]
        if not members:
            return na("no etcd (the design has no DB leader election)")
        dbs = {h.name for h in topo.with_role(Role.DB)}
        candidates = sorted((m for m in members if m != primary), key=lambda m: m in dbs)
        if not candidates:
            return na("every etcd member is on the primary's host")
        member = candidates[0]
        return Target(name, member, "etcd", "crash", f"the etcd member on {member} is killed (SIGKILL)")
    assert name == "full-restart"
    return Target(name, None, None, "restart", "every host down (data kept), then `up` again")
