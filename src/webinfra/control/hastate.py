"""What the hardened topology's HA state is, read from outside: etcd quorum, the agents' view, the DB
leader, the VIP holder, and waits for them (used by `up`, status, ops and the chaos runs).
The decisions themselves belong to the agents (webinfra.agent)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

from webinfra.control import etcd_access
from webinfra.model import Role
from webinfra.runtime import client_on
from webinfra.runtime.probe import wait_until

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster


def _get(cluster: Cluster, host: str, port: int, path: str, timeout: float = 0.5) -> httpx.Response | None:
    """GET from inside `host` (its own network view) to itself."""
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
    holders = []
    for lb in cluster.topology.with_role(Role.LB):
        try:
            out = cluster.hosts[lb.name].run(["ip", "-o", "-4", "addr", "show", "dev", "eth0"], check=False).stdout
        except Exception:
            continue
        if f" {vip}/" in out:
            holders.append(lb.name)
    return holders


def wait_for_vip(cluster: Cluster, timeout: float = 15.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = vip_holders(cluster)
        if len(holders) == 1:
            return holders[0]
        time.sleep(0.1)
    return None


def bootstrapped_marker(cluster: Cluster) -> Any:
    return cluster.layout.cluster_dir / "db-bootstrapped"
