"""The hardened design's lifecycle on servers: what the emulated `up` does around the etcd, mariadb, agent and
keepalived phases, done over SSH once pyinfra has written and started everything else.

1. etcd: quorum, then the auth bootstrap (users root and agent, the role; control/etcd_access.py, idempotent).
2. MariaDB: the one-time bootstrap (run.py: schema and accounts on the primary, the replica pointed at it),
   recorded by the management machine's `db-bootstrapped` marker, as on emulated hosts.
3. The agents, held back by the first `up` until then, are started; a leader is awaited and the schema
   ensured on it.
4. keepalived: one LB holds the VIP on `[machines] vip_interface`.

webinfra's own checks (control/hastate.py, etcd_access.py) ask a `Cluster` for `hosts[name].run` and `.http`.
`ServerCluster` gives them servers: `run` over SSH, `http` through `python -m webinfra.runtime.helper http`
on a server of the release (the host itself when it has one, else a DB host, which the firewall lets reach
etcd and the agents), so every request leaves from inside the cluster as on emulated hosts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

from webinfra.model import Role, Topology
from webinfra.plan.daemons.etcd import ETCD_ROOT_SECRET, etcd_secured
from webinfra.runtime.http import HttpFailure, HttpRequest, HttpResponse
from webinfra.runtime.machine import Machine, RunResult
from webinfra.runtime.probe import wait_until
from webinfra.servers import ServersError, units
from webinfra.servers.remote import SshRunner
from webinfra.services.secrets import ensure_secret
from webinfra.state import Layout, ServerLayout

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster
    from webinfra.plan.spec import ClusterPlan

Say = Callable[[str, str, str], None]
HELD_UNTIL_BOOTSTRAP = frozenset({"agent"})
QUORUM_TIMEOUT = 90.0
LEADER_TIMEOUT = 90.0
VIP_TIMEOUT = 60.0


@dataclass
class ServerMachine:
    """The two Machine operations webinfra's HA checks use, on a server."""

    runner: SshRunner
    relay: SshRunner  # a server with the release venv: where HTTP requests are made from
    python: str
    ca_file: str  # the CA on the servers: the management side names its own path

    @property
    def name(self) -> str:
        return self.runner.name

    @property
    def run(self) -> Callable[..., RunResult]:
        return self.runner.run  # Machine.run's keywords (input, timeout, check, env) as they are

    def http(self, request: HttpRequest) -> HttpResponse:
        from webinfra.runtime.helper import decode_response, encode_request

        there = replace(request, ca_file=self.ca_file if request.ca_file else None)
        result = self.relay.run(
            [self.python, "-m", "webinfra.runtime.helper", "http"],
            input=json.dumps(encode_request(there)),
            check=False,
            timeout=request.timeout + 20,
        )
        if result.returncode != 0:
            raise HttpFailure(f"{self.relay.name}: helper failed: {result.stderr.strip()[-200:]}")
        return decode_response(json.loads(result.stdout))


@dataclass
class ServerCluster:
    """What control/hastate.py and etcd_access.py read from a `Cluster`, for servers."""

    topology: Topology
    layout: Layout  # the management machine's: secrets are read here
    plan: ClusterPlan
    hosts: dict[str, ServerMachine]

    @classmethod
    def of(cls, topo: Topology, local: Layout, plan: ClusterPlan, runner: Callable[[str], SshRunner]) -> Cluster:
        with_release = [hp.name for hp in plan.hosts if any(units.runs_python(s) for s in hp.services)]
        if not with_release:
            raise ServersError("the hardened design needs a server with the release (an app or DB host)")
        python = next(s.argv[0] for hp in plan.hosts for s in hp.services if units.runs_python(s))
        ca = str(ServerLayout().ca_cert)
        dbs = [h.name for h in topo.with_role(Role.DB) if h.name in with_release]
        relay_default = runner((dbs or with_release)[0])
        hosts = {}
        for hp in plan.hosts:
            own = runner(hp.name)
            hosts[hp.name] = ServerMachine(own, own if hp.name in with_release else relay_default, python, ca)
        # Duck-typed: hastate and etcd_access use only topology, layout, plan and hosts[...].run/http.
        return cast("Cluster", cls(topo, local, plan, hosts))


def held(topo: Topology, local: Layout) -> frozenset[str]:
    """Services the first `up` writes but does not start: the agents, until the database is bootstrapped."""
    return HELD_UNTIL_BOOTSTRAP if topo.ha and not local.db_bootstrapped_marker.exists() else frozenset()


def bootstrapped(topo: Topology, local: Layout) -> bool:
    return topo.ha and local.db_bootstrapped_marker.exists()


def etcd_ready(cluster: Cluster, say: Say) -> None:
    from webinfra.control import etcd_access, hastate

    if not hastate.wait_etcd_quorum(cluster, timeout=QUORUM_TIMEOUT):
        raise ServersError(
            f"etcd has no quorum within {QUORUM_TIMEOUT:g}s (journalctl -u {units.unit_name('etcd')} on its members)"
        )
    say("all", "etcd", "quorum")
    if etcd_secured(cluster.topology):  # root's password: only webinfra uses it, from here (never on a server)
        ensure_secret(cluster.layout, ETCD_ROOT_SECRET)
    try:
        changes = etcd_access.ensure_auth(cluster)
    except etcd_access.EtcdAuthError as exc:
        raise ServersError(str(exc)) from None
    for change in changes:
        say("all", "etcd", change)


def agents_ready(cluster: Cluster, started: frozenset[str], say: Say) -> None:
    """Start the agents held back by this `up`, then wait for a leader and ensure the schema on it."""
    from webinfra.control import hastate
    from webinfra.daemons import mariadb

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
    mariadb.ensure_schema(cast(Machine, cluster.hosts[leader]), cluster.plan.host(leader), topo)


def vip_holders(cluster: Cluster) -> list[str]:
    topo = cluster.topology
    dev = topo.machines.vip_interface
    out = []
    for lb in topo.with_role(Role.LB):
        result = cluster.hosts[lb.name].run(["ip", "-o", "-4", "addr", "show", "dev", dev], check=False)
        if f" {topo.vip}/" in result.stdout:
            out.append(lb.name)
    return out


def vip_ready(cluster: Cluster, say: Say) -> None:
    topo = cluster.topology
    if not topo.lb_pair or topo.vip is None:
        return
    found: list[str] = []

    def one_holder() -> bool:
        found[:] = vip_holders(cluster)
        return len(found) == 1

    if not wait_until(one_holder, VIP_TIMEOUT, 0.5):
        raise ServersError(
            f"the VIP {topo.vip} is held by {', '.join(found) or 'no LB'} after {VIP_TIMEOUT:g}s "
            f"(journalctl -u {units.unit_name('keepalived')}; [machines] vip_interface = "
            f"{topo.machines.vip_interface!r})"
        )
    say(found[0], "keepalived", f"holds the VIP {topo.vip}")
