"""Faults on a server under load: a whole server stopped, an app server killed. Own cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clusterkit import backend_states, bring_up, seed_topology, take_down, wait_for

from webinfra.control.cluster import Cluster
from webinfra.control.load import BackgroundLoad

# Bounds are several times the goal (health checks every 0.5 s, 2 failures to mark down ≈ 1 s).
DETECT_BOUND = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = bring_up(seed_topology("tfault", 11), tmp_path_factory.mktemp("state-fault"))
    yield c
    take_down(c)


def _outage(cluster: Cluster, stop: callable, start: callable) -> BackgroundLoad:  # type: ignore[valid-type]
    with BackgroundLoad(cluster.topology.site_url, duration=60, concurrency=4) as load:
        wait_for(lambda: load.samples_so_far() >= 10, 10, "load start")
        stop()
        wait_for(lambda: backend_states(cluster)["web-02"] == "down", DETECT_BOUND, "web-02 marked down")
        start()
        wait_for(lambda: backend_states(cluster)["web-02"] == "up", DETECT_BOUND * 3, "web-02 back up")
    return load


def test_a_whole_server_stopped_fails_no_get(cluster: Cluster) -> None:
    load = _outage(cluster, lambda: cluster.stop("web-02"), lambda: cluster.start("web-02"))
    result = load.result
    assert len(result.samples) > 50
    assert not result.failed, [(s.status, s.error, s.served_by) for s in result.failed[:5]]
    assert set(result.served_by_counts()) == {"web-01", "web-02"}


def test_a_killed_app_server_causes_no_5xx(cluster: Cluster) -> None:
    load = _outage(cluster, lambda: cluster.stop("web-02", "app", kill=True), lambda: cluster.start("web-02", "app"))
    result = load.result
    assert len(result.samples) > 50
    assert not [s for s in result.samples if s.status >= 500 or s.status == 0], result.failed[:5]


def test_replica_database_down_reads_fall_back(cluster: Cluster) -> None:
    cluster.stop("web-02", "mariadb")
    try:
        import httpx

        with httpx.Client(base_url=cluster.topology.site_url, timeout=10) as client:
            reads = [client.get("/api/entries") for _ in range(20)]
        assert all(r.status_code == 200 for r in reads)
        assert {r.headers["x-db"] for r in reads} == {"web-01"}
    finally:
        cluster.start("web-02", "mariadb")
