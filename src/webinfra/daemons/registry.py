"""THE list of daemons: one `Daemon` entry per service name a plan can hold, in start order. `Cluster` (up,
start, stop, certificates), `ops/scale.py` (bringing running services in line with a new topology) and the
supervisor's hooks are dispatched from here; nothing registers itself on import.

What each daemon renders (its FileSpecs, ServiceSpec and readiness Probe) is pure and lives below, in plan/
(plan/build.py assembles it; see daemons/__init__.py for why). A unit test checks that the names here are
exactly plan.spec.SERVICE_ORDER, so a new daemon cannot be planned without an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from webinfra.daemons import agent, etcd, haproxy, keepalived, mariadb, mysqld_exporter
from webinfra.plan.spec import HostPlan
from webinfra.services import supervisor

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster, Progress

AfterStart = Callable[["Cluster", HostPlan, str, "Progress"], None]  # (cluster, host, action, progress)
AfterPhase = Callable[["Cluster", "Progress"], None]


class Refresh(StrEnum):
    """How a running instance takes a changed config when `webinfra scale` changes the topology."""

    APPLY = "apply"  # supervisor.start: reload if it can, else restart
    LIVE = "live"  # its runtime state was already changed live: write the file, run before_reload, no reload
    NEXT_START = "next-start"  # write the file only; read at its next start (a restart would cost too much)
    LEADER_KEEPS = "leader-keeps"  # NEXT_START on the DB leader (a restart hands its lease over), else APPLY
    CYCLE = "cycle"  # one host at a time, out of rotation (ops/deploy.cycle)
    RESTART = "restart"  # restarted whenever the topology changes: it reads the topology at start


# Certificates a running daemon holds: the CA, the site's (HAProxy's front), or its host's own.
CA, SITE, HOST = "ca", "site", "host"


@dataclass(frozen=True)
class Daemon:
    name: str  # the ServiceSpec name
    hooks: supervisor.Hooks = field(default_factory=supervisor.Hooks)
    after_start: AfterStart | None = None  # right after each instance's start (one host)
    after_phase: AfterPhase | None = None  # once its phase is done on every host (cluster-wide wait)
    certs: tuple[str, ...] = ()  # stopped by `up` when one of these was reissued
    refresh: Refresh = Refresh.APPLY


DAEMONS: tuple[Daemon, ...] = (
    Daemon("etcd", after_phase=etcd.after_phase, certs=(CA, HOST)),
    Daemon(
        "mariadb",
        hooks=mariadb.HOOKS,
        after_start=mariadb.after_start,
        after_phase=mariadb.after_phase,
        certs=(CA, HOST),
        refresh=Refresh.NEXT_START,
    ),
    Daemon("mysqld-exporter", hooks=mysqld_exporter.HOOKS),
    Daemon("agent", after_phase=agent.after_phase, certs=(CA,), refresh=Refresh.LEADER_KEEPS),
    Daemon("dbproxy"),
    Daemon("app", certs=(CA,), refresh=Refresh.CYCLE),
    Daemon("nginx", certs=(CA, HOST)),
    Daemon("haproxy", hooks=haproxy.HOOKS, after_start=haproxy.after_start, certs=(CA, SITE), refresh=Refresh.LIVE),
    Daemon("keepalived", hooks=keepalived.HOOKS, after_phase=keepalived.after_phase),
    Daemon("node-exporter"),
    Daemon("nginx-exporter"),
    Daemon("alertmanager"),
    Daemon("prometheus"),
    Daemon("monitor", refresh=Refresh.RESTART),
)

BY_NAME: dict[str, Daemon] = {d.name: d for d in DAEMONS}


def daemon(name: str) -> Daemon:
    return BY_NAME[name]


def install_hooks() -> None:
    """Give the supervisor every daemon's hooks (idempotent). Called explicitly by `Cluster`, which every
    start and stop goes through, instead of as a side effect of importing the daemon modules."""
    for d in DAEMONS:
        supervisor.register_hooks(d.name, d.hooks)
