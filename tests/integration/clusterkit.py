"""Helpers for integration tests: topologies, HTTP clients for a cluster, leftover checks."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from webinfra.control.cluster import Cluster
from webinfra.hosts import network as netmod
from webinfra.model import parse_topology
from webinfra.plan.layout import Layout

WEBINFRA = Path(sys.executable).parent / "webinfra"

FAST_CHECKS = """
[lb]
route_writes_to = "{route}"
check_interval_ms = 500
check_fall = 2
check_rise = 2
"""


def seed_topology(
    name: str,
    octet: int,
    *,
    route: str = "primary",
    web02_extra: str = "",
    web01_weight: int = 1,
    web02_weight: int = 1,
) -> str:
    """The seed design (lb-01, web-01 primary, web-02 replica) with fast health checks."""
    return f"""
name = "{name}"
[network]
subnet = "198.18.{octet}.0/24"
{FAST_CHECKS.format(route=route)}
[[hosts]]
name = "lb-01"
roles = ["lb"]

[[hosts]]
name = "web-01"
roles = ["web", "app", "db"]
db_role = "primary"
weight = {web01_weight}

[[hosts]]
name = "web-02"
roles = ["web", "app", "db"]
db_role = "replica"
weight = {web02_weight}
{web02_extra}
"""


def leftovers(cluster: Cluster) -> list[str]:
    """Namespaces, links and processes of this cluster still present."""
    left = [ns for ns in netmod.existing_namespaces() if ns.startswith(f"wi-{cluster.topology.name}-")]
    if netmod.link_exists(netmod.bridge_name(cluster.topology.name)):
        left.append(netmod.bridge_name(cluster.topology.name))
    left += [link.veth for link in cluster.network.links if netmod.link_exists(link.veth)]
    return left


def bring_up(toml: str, root: Path) -> Cluster:
    topo = parse_topology(toml, "<test>")
    netmod.sweep_cluster(topo.name)  # a crashed earlier run must not hold our addresses
    cluster = Cluster(topo, Layout.for_cluster(topo.name, root), toml)
    cluster.up()
    return cluster


def take_down(cluster: Cluster) -> None:
    cluster.down(purge=True)
    left = leftovers(cluster)
    netmod.sweep_cluster(cluster.topology.name)
    assert not left, f"teardown left {left}"


def site(cluster: Cluster, **kwargs: object) -> httpx.Client:
    """An HTTP client for the site through the load balancer."""
    return httpx.Client(base_url=cluster.topology.site_url, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def direct(cluster: Cluster, host: str, **kwargs: object) -> httpx.Client:
    """An HTTP client for one server's nginx, bypassing the load balancer."""
    url = f"http://{cluster.topology.address_of(host)}:{cluster.topology.web.port}"
    return httpx.Client(base_url=url, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def cli(cluster: Cluster, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `webinfra` command against `cluster`."""
    where = ["--state-dir", str(cluster.layout.cluster_dir.parent), "--cluster", cluster.topology.name]
    argv = [str(WEBINFRA), args[0], *where, *args[1:]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll `condition` until true; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def backend_states(cluster: Cluster) -> dict[str, str]:
    from webinfra.control.status import snapshot

    return {b["name"]: b["state"] for b in snapshot(cluster)["lb"]["backends"]}
