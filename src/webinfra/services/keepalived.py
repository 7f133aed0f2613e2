"""keepalived: before it starts, make sure the unicast VRRP peers can hear each other at once.

A recovering LB host comes back with empty neighbour (ARP) tables, and its peer's entry for it may be in
FAILED state. Until both are resolved the peer's adverts do not arrive; the starting keepalived then
declares itself master, sees the peer's lower priority and keeps the VIP: the VIP flaps back although
`nopreempt` is set. One ping to each peer resolves both directions first.
"""

from __future__ import annotations

import re

from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.runtime import Machine
from webinfra.services import supervisor

_PEERS = re.compile(r"unicast_peer\s*\{([^}]*)\}", re.S)


def peers_of(config_text: str) -> list[str]:
    match = _PEERS.search(config_text)
    return match.group(1).split() if match else []


def resolve_peers(host: Machine, plan: HostPlan, svc: ServiceSpec) -> None:
    for f in plan.files_of(svc):
        for peer in peers_of(f.content):
            host.run(["ping", "-c", "1", "-W", "1", peer], check=False, timeout=5)


supervisor.register_hooks("keepalived", supervisor.Hooks(before_start=resolve_peers))
