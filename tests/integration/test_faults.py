"""Faults on a server under load: a whole server stopped, an app server killed. Own cluster (writes go to
any server, so a killed app server also meets writes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from clusterkit import backend_states, bring_up, cli, direct, seed_topology, take_down, wait_for

from webinfra.control.cluster import Cluster
from webinfra.proving.loadgen import BackgroundLoad

# Bounds are several times the goal (health checks every 0.5 s, 2 failures to mark down ≈ 1 s).
DETECT_BOUND = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = bring_up(seed_topology("tfault", 11, route="any"), tmp_path_factory.mktemp("state-fault"))
    yield c
    take_down(c)


def _outage(cluster: Cluster, stop: callable, start: callable, **load_options: object) -> BackgroundLoad:  # type: ignore[valid-type]
    with BackgroundLoad(cluster.topology.site_url, duration=60, concurrency=4, **load_options) as load:
        wait_for(lambda: load.samples_so_far() >= 10, 10, "load start")
        stop()
        wait_for(lambda: backend_states(cluster)["web-02"] == "down", DETECT_BOUND, "web-02 marked down")
        start()
        wait_for(lambda: backend_states(cluster)["web-02"] == "up", DETECT_BOUND * 3, "web-02 back up")
        # A fast outage can be over in ~2 s: keep loading until the run has enough samples to judge (the
        # tests count > 50), rather than bounding a rate that a loaded machine can miss.
        wait_for(lambda: load.samples_so_far() >= 60, 30, "60 samples in the run")
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


def _sql(cluster: Cluster, query: str) -> list[str]:
    out = cli(cluster, "sql", "web-01", "-e", query).stdout.splitlines()
    return out[1].split("\t") if len(out) > 1 else []


def test_a_killed_app_server_fails_no_keyed_write(cluster: Cluster) -> None:
    """Every POST carries an Idempotency-Key: HAProxy replays the ones that met the dead app server elsewhere,
    and the app stores each exactly once."""
    load = _outage(
        cluster,
        lambda: cluster.stop("web-02", "app", kill=True),
        lambda: cluster.start("web-02", "app"),
        write_ratio=1.0,
        keyed_ratio=1.0,
    )
    result = load.result
    posts = [s for s in result.samples if s.method == "POST"]
    assert len(posts) > 50 and all(s.keyed for s in posts)
    assert not result.failed, [(s.status, s.error, s.served_by) for s in result.failed[:5]]
    assert set(result.served_by_counts()) == {"web-01", "web-02"}
    rows, distinct = _sql(cluster, "SELECT COUNT(*), COUNT(DISTINCT text) FROM site.entries WHERE text LIKE 'load %'")
    assert int(rows) == int(distinct) == len(posts), "a keyed write was stored twice, or an acknowledged one is missing"


def test_a_keyed_retry_on_another_server_returns_the_first_result(cluster: Cluster) -> None:
    key, text = f"it-{uuid.uuid4()}", f"retried {uuid.uuid4()}"
    headers = {"Idempotency-Key": key}
    with direct(cluster, "web-01") as one, direct(cluster, "web-02") as two:
        first = one.post("/api/entries", json={"text": text}, headers=headers)
        again = two.post("/api/entries", json={"text": text}, headers=headers)
        other = two.post("/api/entries", json={"text": text + " (changed)"}, headers=headers)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert (first.headers["x-served-by"], again.headers["x-served-by"]) == ("web-01", "web-02")
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert _sql(cluster, f"SELECT COUNT(*) FROM site.entries WHERE text = '{text}'") == ["1"]


def test_a_cut_off_server_fails_no_read_and_no_keyed_write(cluster: Cluster) -> None:
    """web-02 partitioned (its requests hang rather than fail): HAProxy gives reads 1 s and keyed POSTs 1.5 s,
    then replays them on web-01. The seed design replicates asynchronously, so no commit waits for web-02."""
    from webinfra.ops import faults

    load = _outage(
        cluster,
        lambda: faults.fail(cluster, "web-02", None, "partition"),
        lambda: faults.recover(cluster, "web-02"),
        write_ratio=0.3,
        keyed_ratio=1.0,
    )
    result = load.result
    assert len(result.samples) > 50 and any(s.method == "POST" for s in result.samples)
    assert not result.failed, [(s.method, s.status, s.error, round(s.latency, 2)) for s in result.failed[:5]]
