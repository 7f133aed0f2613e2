"""keepalived: before it starts, make sure the unicast VRRP peers can hear each other at once.

A recovering LB host comes back with empty neighbour (ARP) tables, and its peer's entry for it may be in
FAILED state. Until both are resolved the peer's adverts do not arrive; the starting keepalived then
declares itself master, sees the peer's lower priority and keeps the VIP: the VIP flaps back although
`nopreempt` is set. One ping to each peer resolves both directions first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from webinfra.control import hastate
from webinfra.errors import ClusterError
from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.runtime import Machine
from webinfra.services import supervisor

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster, Progress


def resolve_peers(host: Machine, plan: HostPlan, svc: ServiceSpec) -> None:
    for peer in plan.vrrp_peers:  # the plan's values, not the rendered config parsed back
        host.run(["ping", "-c", "1", "-W", "1", peer], check=False, timeout=5)


HOOKS = supervisor.Hooks(before_start=resolve_peers)


def after_phase(cluster: Cluster, progress: Progress) -> None:
    """`up` goes on once one LB holds the VIP (15 s at most)."""
    holder = hastate.wait_for_vip(cluster)
    if holder is None:
        raise ClusterError("no load balancer took the virtual IP within 15s (see the LBs' log/keepalived.log)")
    progress(holder, "keepalived", f"holds the VIP {cluster.topology.vip}")
