"""The DB HA agent (webinfra.agent, one per DB host with HA): what `up` waits for after the agent phase.
Its agent.json and command line are in the plan (plan/daemons/agent.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from webinfra.control import hastate
from webinfra.daemons import mariadb
from webinfra.errors import ClusterError

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster, Progress


def after_phase(cluster: Cluster, progress: Progress) -> None:
    """A leader within 30 s; then the schema on it (the leader is the writable primary)."""
    leader = hastate.wait_for_leader(cluster)
    if leader is None:
        raise ClusterError("no DB leader elected within 30s (see the DB hosts' log/agent.log)")
    progress(leader, "agent", "leader (writable primary)")
    mariadb.ensure_schema(cluster.hosts[leader], cluster.plan.host(leader), cluster.topology)
