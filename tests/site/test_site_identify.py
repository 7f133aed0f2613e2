"""``identify_servers`` (HA mode behind a DB proxy) and writes refused by a read-only server.

The pure helpers are tested without a database; the rest runs against the
throwaway primary + replica, whose ``--report-host`` is their harness name
("db-primary" / "db-replica"), with endpoints named after roles instead.
"""

from __future__ import annotations

import gc
import time
import weakref
from typing import Any

import anyio
import httpx
import pytest
from asyncmy.connection import Connection
from asyncmy.errors import OperationalError
from site_testlib import ADMIN, AppClient, Cluster, MariaDB, TCPProxy, gtid_cookie

from webinfra.site.db import Served
from webinfra.site.dbconn import BrokenSession, ServerIdentity, is_read_only_refusal, parse_identity, server_errno

pytestmark = pytest.mark.anyio

READ_ONLY_ERROR = OperationalError(
    1290, "The MariaDB server is running with the --read-only option so it cannot execute this statement"
)

# -- pure helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (("db-a", 0), ServerIdentity("db-a", read_only=False)),
        (("db-b", 1), ServerIdentity("db-b", read_only=True)),
        ((b"db-c.example", "OFF"), ServerIdentity("db-c.example", read_only=False)),
        (("db-d", "ON"), ServerIdentity("db-d", read_only=True)),
        (("db-d", "NO_LOCK"), ServerIdentity("db-d", read_only=True)),
        (("db-e", "0"), ServerIdentity("db-e", read_only=False)),
        # Unset or unusable report_host: the endpoint's name.
        ((None, 0), ServerIdentity("endpoint", read_only=False)),
        (("", 1), ServerIdentity("endpoint", read_only=True)),
        (("two words", 0), ServerIdentity("endpoint", read_only=False)),
        (("db\r\nX-Evil: 1", 0), ServerIdentity("endpoint", read_only=False)),
        (("db\n", 0), ServerIdentity("endpoint", read_only=False)),
        (("-db", 0), ServerIdentity("endpoint", read_only=False)),
        (("d" * 64, 0), ServerIdentity("endpoint", read_only=False)),
        ((42, 0), ServerIdentity("endpoint", read_only=False)),
        # Unknown read_only: assume a replica (the cautious side for read-your-writes).
        (("db-f", None), ServerIdentity("db-f", read_only=True)),
        (("db-f",), ServerIdentity("db-f", read_only=True)),
        (None, ServerIdentity("endpoint", read_only=True)),
        ((), ServerIdentity("endpoint", read_only=True)),
    ],
)
def test_parse_identity(row: Any, expected: ServerIdentity) -> None:
    assert parse_identity(row, "endpoint") == expected


def test_read_only_refusal_is_recognised_through_a_broken_session() -> None:
    assert is_read_only_refusal(READ_ONLY_ERROR) and server_errno(READ_ONLY_ERROR) == 1290
    try:
        raise BrokenSession("writer: refused") from READ_ONLY_ERROR
    except BrokenSession as wrapped:
        assert is_read_only_refusal(wrapped)
    try:
        raise BrokenSession("writer: lost") from OperationalError(2013, "Lost connection to server during query")
    except BrokenSession as wrapped:
        assert not is_read_only_refusal(wrapped) and server_errno(wrapped) == 2013
    for other in (BrokenSession("no cause"), ValueError(1290), TimeoutError(), OperationalError("no errno")):
        assert not is_read_only_refusal(other)
        assert server_errno(other) is None


def test_served_reports_the_server_when_known() -> None:
    assert Served(1, "reader").db_host == "reader"
    assert Served(1, "reader", server="db-b").db_host == "db-b"


async def test_asyncmy_connections_can_key_a_weak_dict() -> None:
    # db.Database keeps identities in a WeakKeyDictionary keyed by connection
    # (async only because Connection() wants an event loop; it does not connect).
    conn = Connection(host="127.0.0.1", port=1)
    identities: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()
    identities[conn] = "db-a"
    assert identities.get(conn) == "db-a"
    assert conn == conn and conn != Connection(host="127.0.0.1", port=1)
    del conn
    gc.collect()
    assert len(identities) == 0


# -- against MariaDB -------------------------------------------------------------


def role(name: str, db: MariaDB) -> dict[str, Any]:
    """An endpoint named after a role, as behind the dbproxy."""
    return {"name": name, "host": "127.0.0.1", "port": db.port}


def cookie(gtid: str) -> dict[str, str]:
    return {"cookie": gtid_cookie(gtid)}


async def create(client: httpx.AsyncClient, text: str) -> httpx.Response:
    response = await client.post("/api/entries", json={"text": text})
    assert response.status_code == 201, response.text
    client.cookies.clear()
    return response


async def concurrent_gets(client: httpx.AsyncClient, n: int) -> list[httpx.Response]:
    """``n`` reads at once, so the pool ends up holding several idle connections."""
    responses: list[httpx.Response] = []

    async def get() -> None:
        responses.append(await client.get("/api/entries?limit=1"))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(get)
    return responses


def site_sessions(db: MariaDB) -> int:
    return int(db.sql("SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'site'"))


def count_text(db: MariaDB, text: str) -> int:
    return int(db.sql(f"SELECT COUNT(*) FROM site.entries WHERE text = '{text}'"))


async def test_x_db_names_the_identified_server(serve: AppClient, mariadb_cluster: Cluster) -> None:
    primary, replica = mariadb_cluster.primary, mariadb_cluster.replica
    endpoints = {"writer": role("writer", primary), "readers": [role("reader", replica)]}
    async with serve(mariadb_cluster.config(**endpoints, identify_servers=True, ryw_wait_seconds=5)) as (client, app):
        created = await create(client, "who answered?")
        assert created.headers["x-db"] == primary.name
        entry = created.json()

        got = await client.get(f"/api/entries/{entry['id']}", headers=cookie(entry["gtid"]))
        assert got.status_code == 200 and got.headers["x-db"] == replica.name
        page = await client.get("/", headers=cookie(entry["gtid"]))
        assert page.headers["x-db"] == replica.name and f"db {replica.name}</footer>" in page.text
        deleted = await client.delete(f"/api/entries/{entry['id']}", headers=ADMIN)
        assert deleted.status_code == 204 and deleted.headers["x-db"] == primary.name

        stats = app.state.stats
        # The replica still waits for the client's write: it is read-only.
        assert (stats.ryw_waits, stats.ryw_skips, stats.ryw_fallbacks) == (2, 0, 0)
        assert app.state.db.suspects() == []

    # Off (the default), X-DB is the endpoint's configured name.
    async with serve(mariadb_cluster.config(**endpoints)) as (client, _app):
        assert (await client.post("/api/entries", json={"text": "plain"})).headers["x-db"] == "writer"
        assert (await client.get("/api/entries?limit=1")).headers["x-db"] == "reader"


async def test_read_your_writes_on_a_reader_routed_to_the_primary(serve: AppClient, mariadb_cluster: Cluster) -> None:
    # No healthy replica: the dbproxy's reader port leads to the primary as well.
    primary = mariadb_cluster.primary
    endpoints = {"writer": role("writer", primary), "readers": [role("reader", primary)]}
    async with serve(mariadb_cluster.config(**endpoints, identify_servers=True, ryw_wait_seconds=3)) as (client, app):
        entry = (await create(client, "read me back")).json()
        started = time.monotonic()
        got = await client.get(f"/api/entries/{entry['id']}", headers=cookie(entry["gtid"]))
        elapsed = time.monotonic() - started
        assert got.status_code == 200 and got.json()["text"] == "read me back"
        assert got.headers["x-db"] == primary.name
        assert elapsed < 1.0, elapsed
        stats = app.state.stats
        assert (stats.ryw_waits, stats.ryw_skips, stats.ryw_fallbacks, stats.reader_fallbacks) == (0, 1, 0, 0)

    # Why it matters: unidentified, the same read waits on the primary's
    # gtid_slave_pos until the bound and only then falls back to the writer.
    async with serve(mariadb_cluster.config(**endpoints, ryw_wait_seconds=0.3)) as (client, app):
        got = await client.get(f"/api/entries/{entry['id']}", headers=cookie(entry["gtid"]))
        assert got.status_code == 200 and got.headers["x-db"] == "writer"
        assert (app.state.stats.ryw_waits, app.state.stats.ryw_fallbacks) == (1, 1)


@pytest.mark.parametrize("identify", [True, False])
async def test_writer_on_a_read_only_server_is_503(serve: AppClient, mariadb_cluster: Cluster, identify: bool) -> None:
    primary, replica = mariadb_cluster.primary, mariadb_cluster.replica
    marker = f"refused-{identify}-{time.monotonic_ns()}"
    config = mariadb_cluster.config(
        writer=role("writer", replica), readers=[], identify_servers=identify, suspect_seconds=30
    )
    async with serve(config) as (client, app):
        for response in await concurrent_gets(client, 4):
            assert response.status_code == 200
            assert response.headers["x-db"] == (replica.name if identify else "writer")
        assert site_sessions(replica) >= 2  # idle pooled connections to the read-only server

        response = await client.post("/api/entries", json={"text": marker})
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {"error": "database unavailable"}
        assert "set-cookie" not in response.headers

        stats = app.state.stats
        assert (stats.read_only_refusals, stats.unavailable, stats.writes) == (2, 1, 0)
        assert app.state.db.suspects() == ["writer"]
        # The refused attempts discarded their connections and the idle ones were dropped.
        # (Polled without blocking the loop: closing a transport completes on the loop.)
        with anyio.fail_after(10):
            while site_sessions(replica):
                await anyio.sleep(0.05)
    mariadb_cluster.wait_replica_caught_up()
    assert count_text(replica, marker) == 0 and count_text(primary, marker) == 0


async def test_failover_behind_the_proxy_costs_no_error(serve: AppClient, mariadb_cluster: Cluster) -> None:
    primary, replica = mariadb_cluster.primary, mariadb_cluster.replica
    async with TCPProxy(replica.port) as proxy:
        writer = {"name": "writer", "host": "127.0.0.1", "port": proxy.port}
        async with serve(mariadb_cluster.config(writer=writer, readers=[], identify_servers=True)) as (client, app):
            for response in await concurrent_gets(client, 4):
                assert response.status_code == 200 and response.headers["x-db"] == replica.name

            # The writer port now leads to the new primary, but the pool still holds
            # sessions to the demoted server: the first attempt is refused (1290), the
            # retry must get a fresh connection rather than another stale one.
            proxy.target_port = primary.port
            created = await client.post("/api/entries", json={"text": "after failover"})
            assert created.status_code == 201, created.text
            assert created.headers["x-db"] == primary.name
            entry = created.json()
            client.cookies.clear()
            assert primary.sql(f"SELECT text FROM site.entries WHERE id = {int(entry['id'])}") == "after failover"
            stats = app.state.stats
            assert (stats.read_only_refusals, stats.writes, stats.unavailable) == (1, 1, 0)
            assert app.state.db.suspects() == []  # cleared by the successful retry

            got = await client.get(f"/api/entries/{entry['id']}", headers=cookie(entry["gtid"]))
            assert got.status_code == 200 and got.headers["x-db"] == primary.name
