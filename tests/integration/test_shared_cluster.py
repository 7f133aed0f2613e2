"""Checks on one running seed-design cluster (shared; tests that change it restore it)."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest
from clusterkit import backend_states, cli, direct, site

from webinfra.control.cluster import Cluster
from webinfra.proving.loadgen import BackgroundLoad
from webinfra.services import mariadb, supervisor


def test_status_json_contract(shared_cluster: Cluster) -> None:
    snap = json.loads(cli(shared_cluster, "status", "--json", check=False).stdout)
    assert snap["site_url"] == "http://198.18.10.10/"
    hosts = {h["name"]: h for h in snap["hosts"]}
    assert set(hosts) == {"lb-01", "web-01", "web-02"}
    assert hosts["web-01"]["address"] == "198.18.10.11"
    assert hosts["web-02"]["roles"] == ["web", "app", "db"]
    for h in hosts.values():
        assert all(s["state"] == "running" for s in h["services"]), h
    assert {s["name"] for s in hosts["web-01"]["services"]} == {"mariadb", "app", "nginx"}
    backends = {b["name"]: b for b in snap["lb"]["backends"]}
    assert {b["state"] for b in backends.values()} == {"up"}
    assert backends["web-01"]["weight"] == 1 and backends["web-01"]["backup"] is False
    assert snap["db"]["primary"] == "web-01"
    (replica,) = snap["db"]["replicas"]
    assert replica["name"] == "web-02" and replica["lag_seconds"] is not None and replica["gtid"]
    table = cli(shared_cluster, "status", check=False).stdout
    assert "web-02" in table and "replica" in table


def test_weights_split_traffic_3_to_1(shared_cluster: Cluster) -> None:
    shared_cluster.set_weight("web-01", 3)
    try:
        with site(shared_cluster) as client:
            served = Counter(client.get("/healthz").headers["x-served-by"] for _ in range(2000))
    finally:
        shared_cluster.set_weight("web-01", 1)
    share = served["web-01"] / 2000
    assert abs(share - 0.75) <= 0.03, served


def test_weight_changes_live_without_reload_or_errors(shared_cluster: Cluster) -> None:
    haproxy_pid = _haproxy_pid(shared_cluster)
    try:
        with BackgroundLoad(shared_cluster.topology.site_url, duration=20, concurrency=4, read_path="/healthz") as load:
            for weight in (5, 0, 2, 1):
                cli(shared_cluster, "weight", "web-02", str(weight))
                snap = json.loads(cli(shared_cluster, "status", "--json", check=False).stdout)
                assert {b["name"]: b["weight"] for b in snap["lb"]["backends"]}["web-02"] == weight
    finally:
        shared_cluster.set_weight("web-02", 1)
    result = load.result
    assert len(result.samples) > 100
    assert not result.failed, result.failed[:5]
    assert _haproxy_pid(shared_cluster) == haproxy_pid


def test_weight_zero_takes_a_server_out(shared_cluster: Cluster) -> None:
    shared_cluster.set_weight("web-02", 0)
    try:
        with site(shared_cluster) as client:
            served = Counter(client.get("/healthz").headers["x-served-by"] for _ in range(200))
    finally:
        shared_cluster.set_weight("web-02", 1)
    assert served == {"web-01": 200}


def test_writes_go_to_the_primary_server_reads_to_all(shared_cluster: Cluster) -> None:
    with site(shared_cluster) as client:
        writes = [client.post("/api/entries", json={"text": f"route {i}"}) for i in range(20)]
        reads = [client.get("/api/entries") for _ in range(20)]
    assert all(r.status_code == 201 for r in writes)
    assert {r.headers["x-served-by"] for r in writes} == {"web-01"}
    assert {r.headers["x-db"] for r in writes} == {"web-01"}
    assert {r.headers["x-served-by"] for r in reads} == {"web-01", "web-02"}
    # Reads go to the replica (the design: the replica node handles reads).
    assert {r.headers["x-db"] for r in reads} == {"web-02"}


def test_replication_and_read_only_replica(shared_cluster: Cluster) -> None:
    with site(shared_cluster) as client:
        created = client.post("/api/entries", json={"text": "replicated ✓"}).json()
    primary_gtid = created["gtid"]
    web02 = shared_cluster.plan.host("web-02")
    mariadb.wait_caught_up(shared_cluster.hosts["web-02"], web02, primary_gtid, timeout=10)
    out = cli(shared_cluster, "sql", "web-02", "-e", f"SELECT text FROM site.entries WHERE id = {created['id']}").stdout
    assert "replicated ✓" in out
    assert "text" in out.splitlines()[0]  # header line, like `mariadb -e` into a pipe
    assert mariadb.facts(shared_cluster.hosts["web-02"], web02).read_only
    # The site user cannot write to the replica.
    password = shared_cluster.layout.secret("db-site").read_text().strip()
    proc = shared_cluster.hosts["web-01"].run(
        [
            "mariadb",
            "-h",
            "198.18.10.12",
            "-u",
            "site",
            f"-p{password}",
            "site",
            "-e",
            "INSERT INTO entries (text, author_host) VALUES ('sneaky', 'test')",
        ],
        check=False,
    )
    assert proc.returncode != 0 and "read-only" in proc.stderr.lower()


def test_read_your_writes_with_a_lagging_replica(shared_cluster: Cluster) -> None:
    web02 = shared_cluster.plan.host("web-02")
    host = shared_cluster.hosts["web-02"]
    mariadb.admin_sql(host, web02, "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE;")
    try:
        with site(shared_cluster) as writer:
            created = writer.post("/api/entries", json={"text": "see me at once"})
            assert created.status_code == 201
            entry_id = created.json()["id"]
            cookie = writer.cookies.get("wi_gtid")
        assert cookie
        # The same client reads from the lagging replica's server: it sees its write.
        with direct(shared_cluster, "web-02", cookies={"wi_gtid": cookie}) as reader:
            got = reader.get(f"/api/entries/{entry_id}")
            assert got.status_code == 200 and got.json()["text"] == "see me at once"
            listing = reader.get("/api/entries")
            assert entry_id in [e["id"] for e in listing.json()["entries"]]
        # Another client, without the cookie, is served by the replica, which has not applied it yet.
        with direct(shared_cluster, "web-02") as stranger:
            assert stranger.get(f"/api/entries/{entry_id}").status_code == 404
    finally:
        mariadb.admin_sql(host, web02, "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE;")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "expected"),
    [
        ("POST", "/api/entries", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ("POST", "/api/entries", {"json": {}}, 422),
        ("POST", "/api/entries", {"json": {"text": "   "}}, 422),
        ("POST", "/api/entries", {"json": {"text": 42}}, 422),
        ("POST", "/api/entries", {"json": ["text"]}, 422),
        ("POST", "/api/entries", {"json": {"text": "x" * 70_000}}, 413),
        ("POST", "/api/entries", {"content": b"x" * (2 << 20), "headers": {"content-type": "application/json"}}, 413),
        ("GET", "/api/entries/999999999", {}, 404),
        ("GET", "/api/entries/abc", {}, 404),
        ("GET", "/api/entries?limit=-5", {}, 400),
        ("DELETE", "/api/entries/999999999", {}, 401),
        ("DELETE", "/api/entries/999999999", {"headers": {"authorization": "Bearer not-the-token"}}, 403),
        ("POST", "/api/entries", {"json": {"text": "x"}, "headers": {"idempotency-key": "has space"}}, 400),
        ("GET", "/no/such/page", {}, 404),
    ],
)
def test_bad_input_is_a_4xx_never_a_5xx(
    shared_cluster: Cluster, method: str, path: str, kwargs: dict, expected: int
) -> None:
    with site(shared_cluster) as client:
        resp = client.request(method, path, **kwargs)
    assert resp.status_code == expected, resp.text[:200]
    assert resp.headers["content-type"].startswith("application/json")


def test_delete_needs_the_author_or_the_admin(shared_cluster: Cluster) -> None:
    admin = shared_cluster.layout.secret("site-admin").read_text().strip()
    with site(shared_cluster) as author, site(shared_cluster) as stranger:
        mine = author.post("/api/entries", json={"text": "mine to delete"}).json()["id"]
        theirs = author.post("/api/entries", json={"text": "the admin deletes it"}).json()["id"]
        assert stranger.delete(f"/api/entries/{mine}").status_code == 401
        # The author cookie of one entry does not open another (and the jar only sends it for its own entry).
        own_cookie = author.cookies.get(f"wi_own_{mine}")
        assert own_cookie
        forged = {"cookie": f"wi_own_{theirs}={own_cookie}"}
        assert stranger.delete(f"/api/entries/{theirs}", headers=forged).status_code == 403
        assert author.delete(f"/api/entries/{mine}").status_code == 204
        bearer = {"authorization": f"Bearer {admin}"}
        assert stranger.delete(f"/api/entries/{theirs}", headers=bearer).status_code == 204
        assert author.get(f"/api/entries/{theirs}").status_code == 404


def test_a_forged_read_your_writes_cookie_is_ignored(shared_cluster: Cluster) -> None:
    # Unsigned: it would otherwise hold a replica connection until the wait times out, on every read.
    with direct(shared_cluster, "web-02", cookies={"wi_gtid": "0-1-999999999"}) as client:
        started = time.monotonic()
        reads = [client.get("/api/entries?limit=1") for _ in range(10)]
    assert {r.status_code for r in reads} == {200} and {r.headers["x-db"] for r in reads} == {"web-02"}
    assert time.monotonic() - started < 5.0  # 10 waits of ryw_wait_seconds would be more


def test_malformed_http_is_4xx(shared_cluster: Cluster) -> None:
    import socket

    with socket.create_connection(("198.18.10.10", 80), timeout=5) as sock:
        sock.sendall(b"GARBAGE /\x00 HTTP/9\r\n\r\n")
        reply = sock.recv(200)
    assert reply.startswith(b"HTTP/1.") and reply.split()[1].startswith(b"4"), reply


def test_second_up_changes_nothing(shared_cluster: Cluster) -> None:
    pids = _all_pids(shared_cluster)
    actions: list[str] = []
    shared_cluster.up(lambda host, what, action: actions.append(action))
    assert "started" not in actions and "restarted" not in actions and "reloaded" not in actions
    assert _all_pids(shared_cluster) == pids


def test_exec_and_logs(shared_cluster: Cluster) -> None:
    out = cli(shared_cluster, "exec", "lb-01", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert "198.18.10.10/24" in out
    assert "nginx-access.log" in cli(shared_cluster, "logs", "web-01", "nginx").stdout
    assert "mariadb" in cli(shared_cluster, "logs", "web-02", "mariadb").stdout


def test_runtime_api_is_not_on_the_network(shared_cluster: Cluster) -> None:
    listening = shared_cluster.hosts["lb-01"].run(["ss", "-Htln"]).stdout
    ports = {line.split()[3].rsplit(":", 1)[1] for line in listening.splitlines()}
    assert ports == {"80"}, listening
    sock = shared_cluster.plan.host("lb-01").dirs.sockets / "haproxy.sock"
    assert sock.is_socket() and (sock.stat().st_mode & 0o777) == 0o600


def test_unknown_names_exit_2(shared_cluster: Cluster) -> None:
    for args in (
        ("stop", "nosuch"),
        ("weight", "lb-01", "3"),
        ("weight", "web-01", "999"),
        ("start", "web-01", "nope"),
    ):
        proc = cli(shared_cluster, *args, check=False)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_all_backends_up(shared_cluster: Cluster) -> None:
    assert backend_states(shared_cluster) == {"web-01": "up", "web-02": "up"}
    assert httpx.get(shared_cluster.topology.site_url, timeout=5).status_code == 200


def _haproxy_pid(cluster: Cluster) -> int | None:
    lb = cluster.lb_plan()
    return supervisor.pid_of(cluster.hosts[lb.name], lb.service("haproxy"))


def _all_pids(cluster: Cluster) -> dict[tuple[str, str], int | None]:
    return {
        (hp.name, s.name): supervisor.pid_of(cluster.hosts[hp.name], s)
        for hp in cluster.plan.hosts
        for s in hp.services
    }
