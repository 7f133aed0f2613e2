"""The app's /metrics: request counts by route template, latency histogram, the DB layer's counters and
pool gauge; refused through a proxy; multiprocess mode with several uvicorn workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from site_testlib import AppClient, Cluster, free_port, gtid_cookie
from test_site_app_nodb import dead_config

from testkit import wait_for
from webinfra.site import CONFIG_ENV

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_requests_are_counted_by_route_template(serve: AppClient, password_file: Path) -> None:
    async with serve(dead_config(password_file)) as (client, _app):
        before = await scrape(client)
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/api/entries/x1")).status_code == 404  # not an id: refused before the DB
        assert (await client.get("/api/entries?limit=0")).status_code == 400
        assert (await client.get("/api/entries/7")).status_code == 503  # the DB is dead
        assert (await client.get("/no/such/page")).status_code == 404
        after = await scrape(client)

    def delta(route: str, method: str, status: str) -> float:
        labels = {"route": route, "method": method, "status": status}
        return value(after, "site_requests_total", **labels) - value(before, "site_requests_total", **labels)

    assert delta("/healthz", "GET", "200") == 3
    assert delta("/api/entries/{entry_id}", "GET", "404") == 1
    assert delta("/api/entries", "GET", "400") == 1
    assert delta("/api/entries/{entry_id}", "GET", "503") == 1
    assert delta("other", "GET", "404") == 1
    # Raw paths never become labels; /metrics itself is not counted.
    routes = {dict(k[1]).get("route") for k in samples(after) if k[0] == "site_requests_total"}
    assert "/api/entries/7" not in routes and "/metrics" not in routes
    count = "site_request_duration_seconds_count"
    assert value(after, count, route="/healthz") - value(before, count, route="/healthz") == 3
    assert value(after, "site_request_duration_seconds_bucket", route="/healthz", le="+Inf") >= 3
    assert value(after, "site_db_unavailable_total") - value(before, "site_db_unavailable_total") >= 1
    assert ("site_db_pool_in_use", (("endpoint", "db-dead-w"),)) in samples(after)


async def test_metrics_are_refused_through_a_proxy(serve: AppClient, password_file: Path) -> None:
    async with serve(dead_config(password_file)) as (client, _app):
        response = await client.get("/metrics", headers={"X-Forwarded-For": "198.18.0.1"})
        assert response.status_code == 404
        assert response.json() == {"error": "not found"}


async def test_read_your_writes_waits_and_pool_are_exported(serve: AppClient, mariadb_cluster: Cluster) -> None:
    async with serve(mariadb_cluster.config(ryw_wait_seconds=5)) as (client, _app):
        before = await scrape(client)
        created = await client.post("/api/entries", json={"text": "counted"})
        assert created.status_code == 201
        gtid = created.json()["gtid"]
        client.cookies.clear()
        got = await client.get(created.headers["location"], headers={"cookie": gtid_cookie(gtid)})
        assert got.status_code == 200
        after = await scrape(client)
    assert value(after, "site_ryw_waits_total") - value(before, "site_ryw_waits_total") == 1
    assert value(after, "site_requests_total", route="/api/entries", method="POST", status="201") >= 1
    pools = {dict(k[1])["endpoint"]: v for k, v in samples(after).items() if k[0] == "site_db_pool_in_use"}
    ours = {mariadb_cluster.primary.name, mariadb_cluster.replica.name}  # (other tests' apps share the registry)
    assert ours <= set(pools)
    assert all(pools[name] == 0 for name in ours)  # nothing checked out between requests


def test_several_workers_share_one_view(tmp_path: Path, password_file: Path) -> None:
    """With WEBINFRA_METRICS_DIR and 2 workers, any worker's /metrics counts every worker's requests."""
    config_file = tmp_path / "site.json"
    config_file.write_text(dead_config(password_file).model_dump_json())
    port = free_port()
    metrics_dir = tmp_path / "app-metrics"
    log = (tmp_path / "uvicorn.log").open("wb")
    argv = [sys.executable, "-m", "uvicorn", "webinfra.site.app:create_app", "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--no-access-log"]
    env = {**os.environ, CONFIG_ENV: str(config_file), "WEBINFRA_METRICS_DIR": str(metrics_dir)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "uvicorn.log").read_text()
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 20, "uvicorn with 2 workers")
        n = 40
        for _ in range(n):
            # A new connection each time: the kernel spreads them over both workers.
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        texts = [httpx.get(f"{base}/metrics", timeout=5).text for _ in range(4)]
        totals = {value(t, "site_requests_total", route="/healthz", method="GET", status="200") for t in texts}
        # Every scrape, whichever worker answers it, sees all the requests (the 1 from `up` polling and n).
        assert min(totals) >= n + 1 and len(totals) == 1, totals
        run_dirs = [d for d in metrics_dir.iterdir() if d.is_dir()]
        assert [d.name for d in run_dirs] == [str(proc.pid)]  # one directory per uvicorn run
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
