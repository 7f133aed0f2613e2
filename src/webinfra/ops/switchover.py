"""`webinfra switchover`: ask the leader's HA agent to hand the primary role over, and wait for it.
The agents decide and carry it out (agent/decide.py); this only writes the request to etcd."""

from __future__ import annotations

import json
import time

from webinfra.control import etcd_access, events, hastate
from webinfra.control.cluster import Cluster, ClusterError, UsageError
from webinfra.model import Role
from webinfra.plan.ha import dcs_prefix


def switchover(cluster: Cluster, target: str | None, timeout: float = 30.0) -> tuple[str, str, float]:
    """Ask the leader's agent to hand over (to `target` or the most advanced replica); wait for the new
    primary. Returns (old, new, seconds).

    The request key lives on an etcd lease of `timeout` + 5 s and is deleted when the wait times out: a
    request nobody carried out must not linger and promote its target later, when it may be lagging (the
    agents also refuse a target that is not the most advanced, decide.py)."""
    if not cluster.topology.ha:
        raise UsageError("switchover needs the hardened topology (hosts with the 'etcd' role run the DB agents)")
    dbs = [h.name for h in cluster.topology.with_role(Role.DB)]
    if target is not None and target not in dbs:
        raise UsageError(f"--to {target!r}: not a DB host (DB hosts: {', '.join(dbs)})")
    # A /primary check can miss one beat on a loaded machine (or right after a recovery): give it a moment.
    old = hastate.wait_for_leader(cluster, timeout=10.0)
    if old is None:
        raise ClusterError("no single writable primary for 10 s; not asking for a switchover")
    if target == old:
        raise UsageError(f"--to {target!r}: it is already the primary")
    started = time.monotonic()
    request = json.dumps({"to": target, "requested_at": time.time()})
    key = dcs_prefix(cluster.topology) + "switchover"
    if not etcd_access.put(cluster, key, request, ttl=int(timeout) + 5):
        raise ClusterError("could not reach etcd to ask for the switchover")
    events.record(cluster.layout, "switchover_requested", old, f"to {target or 'most advanced replica'}")
    deadline = started + timeout
    while time.monotonic() < deadline:
        new = hastate.current_primary(cluster)
        if new is not None and new != old and (target is None or new == target):
            return old, new, time.monotonic() - started
        time.sleep(0.1)
    withdrawn = etcd_access.delete(cluster, key)
    raise ClusterError(
        f"no new primary within {timeout:g}s; switchover request "
        f"{'withdrawn' if withdrawn else 'left to expire with its lease'} (see `webinfra events` and the agents' logs)"
    )
