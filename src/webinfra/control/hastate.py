"""What the hardened topology's HA state is, read from outside: etcd quorum, the agents' view, the DB
leader, the VIP holder, and waits for them (used by `up`, status, ops and the chaos runs).
The decisions themselves belong to the agents (webinfra.agent)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from webinfra.control import etcd_access
from webinfra.model import Role
from webinfra.parallel import map_ordered
from webinfra.runtime.probe import wait_until

if TYPE_CHECKING:
    import httpx

    from webinfra.control.cluster import Cluster


def _get(cluster: Cluster, host: str, port: int, path: str, timeout: float = 0.5) -> httpx.Response | None:
    """GET from inside `host` (its own network view) to itself."""
    from webinfra.runtime.client import client_on  # httpx: not at start-up (`status` makes no httpx call)

    address = str(cluster.topology.address_of(host))

    try:
        with client_on(cluster.hosts[host], timeout=timeout) as client:
            return client.get(f"http://{address}:{port}{path}")
    except Exception:  # no answer, or the host is gone (down)
        return None


def etcd_healthy(cluster: Cluster, host: str) -> bool:
    return etcd_access.healthy(cluster, host)


def wait_etcd_quorum(cluster: Cluster, timeout: float = 30.0) -> bool:
    members = [h.name for h in cluster.topology.with_role(Role.ETCD)]
    return wait_until(lambda: any(etcd_healthy(cluster, m) for m in members), timeout, interval=0.1)


def etcd_leader(cluster: Cluster, members: list[str]) -> str | None:
    """The member that says it leads (its plain-HTTP /metrics: `etcd_server_is_leader 1`), or None."""
    port = cluster.topology.etcd.metrics_port

    def leads(member: str) -> bool:
        resp = _get(cluster, member, port, "/metrics")
        return resp is not None and resp.status_code == 200 and "\netcd_server_is_leader 1" in resp.text

    return next((m for m, yes in zip(members, map_ordered(leads, members), strict=True) if yes), None)


def agent_status(cluster: Cluster, host: str) -> dict[str, Any] | None:
    resp = _get(cluster, host, cluster.topology.db.agent_port, "/status")
    if resp is None or resp.status_code != 200:
        return None
    try:
        data: dict[str, Any] = resp.json()
    except ValueError:
        return None
    return data


def writable_primaries(cluster: Cluster) -> list[str]:
    """DB hosts whose agent answers /primary with 200 right now."""
    out = []
    for spec in cluster.topology.with_role(Role.DB):
        resp = _get(cluster, spec.name, cluster.topology.db.agent_port, "/primary")
        if resp is not None and resp.status_code == 200:
            out.append(spec.name)
    return out


def current_primary(cluster: Cluster) -> str | None:
    primaries = writable_primaries(cluster)
    return primaries[0] if len(primaries) == 1 else None


def wait_for_leader(cluster: Cluster, timeout: float = 30.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = current_primary(cluster)
        if leader:
            return leader
        time.sleep(0.1)
    return None


def vip_holders(cluster: Cluster) -> list[str]:
    vip = cluster.topology.vip
    if vip is None:
        return []
    # Asked of each LB's machine (a bind to the address, in the emulated host's namespace: no process per
    # question, which `up` polls every 0.1 s and `status` asks once).
    holders = []
    for lb in cluster.topology.with_role(Role.LB):
        try:
            if cluster.hosts[lb.name].holds_address(str(vip)):
                holders.append(lb.name)
        except Exception:  # the host is gone: it holds nothing
            continue
    return holders


def wait_for_vip(cluster: Cluster, timeout: float = 15.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = vip_holders(cluster)
        if len(holders) == 1:
            return holders[0]
        time.sleep(0.1)
    return None
