"""The agent's /metrics: its /status as Prometheus gauges, over the real HTTP API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_agent_api import Api, leader, replica

from webinfra.agent.api import Published
from webinfra.agent.metrics import exposition


def gauges(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    a = Api(tmp_path_factory.mktemp("api-metrics"))
    yield a
    a.server.shutdown()
    a.server.server_close()


def test_a_leader(api: Api) -> None:
    api.current = leader()
    response = httpx.get(api.url + "/metrics", timeout=2)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    g = gauges(response.text)
    assert g[("agent_is_leader", ())] == 1
    assert g[("agent_role", (("role", "primary"),))] == 1 and g[("agent_role", (("role", "replica"),))] == 0
    assert g[("agent_gtid_seq", ())] == 9
    assert g[("agent_semi_sync", (("state", "on"),))] == 1
    assert 0 < g[("agent_lease_ttl_left_seconds", ())] <= 2
    assert g[("agent_lease_fresh", ())] == 1 and g[("agent_fenced", ())] == 0
    assert ("agent_replication_lag_seconds", ()) not in g  # a primary has no lag to report
    assert httpx.head(api.url + "/metrics", timeout=2).status_code == 200


def test_a_replica(api: Api) -> None:
    api.current = replica(lag=3.0)
    g = gauges(httpx.get(api.url + "/metrics", timeout=2).text)
    assert g[("agent_is_leader", ())] == 0
    assert g[("agent_role", (("role", "replica"),))] == 1
    assert g[("agent_replication_lag_seconds", ())] == 3.0


def test_before_the_first_cycle() -> None:
    g = gauges(exposition(Published().status(0.0)))
    assert g[("agent_role", (("role", "unknown"),))] == 1 and g[("agent_is_leader", ())] == 0
