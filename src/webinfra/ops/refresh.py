"""Bring a running cluster's services in line with a changed topology, each the way clients do not see.

`webinfra scale` (ops/scale.py) edits the topology, then calls `refresh` for every host it did not just
create or is about to remove. How a daemon takes a changed config is its registry entry's `Refresh`
(daemons/registry.py): nothing here names a daemon.
"""

from __future__ import annotations

from webinfra.control import hastate
from webinfra.control.cluster import Cluster, Progress
from webinfra.daemons import firewall, registry
from webinfra.daemons.registry import Refresh
from webinfra.ops import deploy
from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.services import supervisor


def apply_firewalls(new: Cluster, progress: Progress) -> None:
    """Every host's rules are derived from the topology: re-apply them all (idempotent)."""
    for hp in new.plan.hosts:
        action = firewall.apply(new.hosts[hp.name], hp)
        if action not in ("none", "unchanged"):
            progress(hp.name, "firewall", action)


def _changed(hp: HostPlan, svc: ServiceSpec) -> bool:
    """Whether any file of `svc` on disk differs from what the plan renders now."""
    for f in hp.files_of(svc):
        try:
            if f.path.read_text() != f.content:
                return True
        except FileNotFoundError:
            return True
    return False


def refresh(new: Cluster, skip: set[str], progress: Progress) -> None:
    """Bring the other hosts' running services in line with the new topology, each the way clients do not
    see: firewalls re-applied; HAProxy's file written without a reload (its runtime state was changed
    live); apps restarted one at a time out of rotation; the leader's agent left running (a restart would
    hand its lease over: it reads its new config at its next start), and every agent when no single leader
    answers right now; the rest reloaded or restarted."""
    apply_firewalls(new, progress)
    leader = hastate.current_primary(new) if new.topology.ha else None
    for hp, svc in new.plan.start_order():
        if hp.name in skip or not _changed(hp, svc):
            continue
        node = new.hosts[hp.name]
        running = supervisor.running(node, svc)
        daemon = registry.daemon(svc.name)
        how = daemon.refresh
        if how is Refresh.LEADER_KEEPS:
            how = Refresh.NEXT_START if leader is None or hp.name == leader else Refresh.APPLY
        if how is Refresh.LIVE:
            supervisor.write_configs(node, hp, svc)
            if daemon.hooks.before_reload is not None:  # what a reload would have saved (HAProxy: its state)
                daemon.hooks.before_reload(node, hp, svc)
            progress(hp.name, svc.name, "config written (changed live; no reload)")
        elif not running or how is Refresh.NEXT_START:
            supervisor.write_configs(node, hp, svc)
            progress(hp.name, svc.name, "config written (read at its next start)")
        elif how is Refresh.CYCLE:
            release = deploy.current_releases(new)[hp.name]
            deploy.cycle(new, hp.name, release, progress=progress)
        else:
            progress(hp.name, svc.name, supervisor.start(node, hp, svc))
    for hp, svc in new.plan.start_order():
        restart = registry.daemon(svc.name).refresh is Refresh.RESTART
        if restart and hp.name not in skip and supervisor.running(new.hosts[hp.name], svc):
            supervisor.stop(new.hosts[hp.name], hp, svc)
            progress(hp.name, svc.name, supervisor.start(new.hosts[hp.name], hp, svc))
