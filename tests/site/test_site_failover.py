"""Failure handling against real MariaDB: lagging replica, dead reader, restarts, killed connections."""

from __future__ import annotations

import time

import anyio
import pytest
from site_testlib import AppClient, Cluster, free_port, gtid_cookie

pytestmark = pytest.mark.anyio


async def test_read_your_writes_with_a_lagging_replica(serve: AppClient, mariadb_cluster: Cluster) -> None:
    primary, replica = mariadb_cluster.primary, mariadb_cluster.replica
    replica.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=3; START SLAVE;")
    try:
        async with serve(mariadb_cluster.config(ryw_wait_seconds=0.5)) as (client, app):
            written_at = time.monotonic()
            created = await client.post("/api/entries", json={"text": "lagging"})
            assert created.status_code == 201
            entry, gtid = created.json(), created.json()["gtid"]
            client.cookies.clear()

            # With the cookie: the replica waits 0.5 s, times out, the writer answers.
            with_cookie = await client.get(f"/api/entries/{entry['id']}", headers={"cookie": gtid_cookie(gtid)})
            assert with_cookie.status_code == 200 and with_cookie.headers["x-db"] == primary.name
            assert with_cookie.json()["text"] == "lagging"
            stats = app.state.stats
            assert (stats.ryw_waits, stats.ryw_fallbacks) == (1, 1)

            # Without it the lagging replica answers, and does not have the entry yet.
            without = await client.get(f"/api/entries/{entry['id']}")
            assert without.headers["x-db"] == replica.name
            if time.monotonic() - written_at < 2.5:
                assert without.status_code == 404

            # A malformed cookie is ignored rather than rejected (and causes no wait).
            for junk in ("0-1", "0-1-2,", "x", "0-1-1%2C0-1-2", "0-1-99999999999999999999"):
                response = await client.get("/api/entries?limit=1", headers={"cookie": f"wi_gtid={junk}"})
                assert response.status_code == 200 and response.headers["x-db"] == replica.name
            assert stats.ryw_waits == 1

        # Writer down too: a stale answer from the lagging replica beats a 503.
        ghost_writer = {"name": "db-ghost-w", "host": "127.0.0.1", "port": free_port()}
        async with serve(mariadb_cluster.config(writer=ghost_writer, ryw_wait_seconds=0.2)) as (client, app):
            stale = await client.get(f"/api/entries/{entry['id']}", headers={"cookie": gtid_cookie(gtid)})
            assert stale.headers["x-db"] == replica.name and stale.status_code in (200, 404)
            assert (app.state.stats.ryw_fallbacks, app.state.stats.reads) == (1, 1)
    finally:
        replica.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE;")
        mariadb_cluster.wait_replica_caught_up()


async def test_unreachable_reader_falls_back(serve: AppClient, mariadb_cluster: Cluster) -> None:
    ghost = {"name": "db-ghost", "host": "127.0.0.1", "port": free_port()}
    async with serve(mariadb_cluster.config(readers=[ghost], suspect_seconds=30)) as (client, app):
        for _ in range(3):
            response = await client.get("/api/entries?limit=1")
            assert response.status_code == 200 and response.headers["x-db"] == mariadb_cluster.primary.name
        # Tried (and failed) once, then skipped while suspect.
        assert app.state.stats.reader_fallbacks == 1
        assert app.state.db.suspects() == ["db-ghost"]

    # Preference order: a dead first reader hands over to the next reader, not the writer.
    readers = [ghost, mariadb_cluster.endpoint(mariadb_cluster.replica)]
    async with serve(mariadb_cluster.config(readers=readers)) as (client, _app):
        response = await client.get("/api/entries?limit=1")
        assert response.status_code == 200 and response.headers["x-db"] == mariadb_cluster.replica.name


async def test_replica_stop_and_restart(serve: AppClient, mariadb_cluster: Cluster) -> None:
    replica = mariadb_cluster.replica
    try:
        async with serve(mariadb_cluster.config(suspect_seconds=0.2)) as (client, app):
            # Leave a pooled connection to the replica behind.
            response = await client.get("/api/entries?limit=1")
            assert response.headers["x-db"] == replica.name

            replica.stop()
            for _ in range(5):
                response = await client.get("/api/entries?limit=1")
                assert response.status_code == 200 and response.headers["x-db"] == mariadb_cluster.primary.name
            assert app.state.stats.reader_fallbacks >= 1

            replica.start()
            replica.wait_ready()
            mariadb_cluster.wait_replica_caught_up()
            # Once the suspect period is over the replica serves again, and no GET fails
            # on the way, although the pool's old connection to it is dead.
            with anyio.fail_after(10):
                while True:
                    response = await client.get("/api/entries?limit=1")
                    assert response.status_code == 200
                    if response.headers["x-db"] == replica.name:
                        break
                    await anyio.sleep(0.05)
    finally:
        if replica.proc is None:
            replica.start()
            replica.wait_ready()


def kill_site_connections(cluster: Cluster) -> int:
    ids = cluster.primary.sql("SELECT id FROM information_schema.processlist WHERE user = 'site'").split()
    for conn_id in ids:
        cluster.primary.sql(f"KILL CONNECTION {conn_id}")
    return len(ids)


async def test_killed_pooled_connections_are_replaced(serve: AppClient, mariadb_cluster: Cluster) -> None:
    # Only the writer: nothing to fail over to, so a stale pooled connection must be
    # retried on a fresh one rather than turned into a 503.
    async with serve(mariadb_cluster.config(readers=[])) as (client, app):
        assert (await client.get("/api/entries?limit=1")).status_code == 200
        assert kill_site_connections(mariadb_cluster) >= 1
        assert (await client.get("/api/entries?limit=1")).status_code == 200

        assert (await client.post("/api/entries", json={"text": "before kill"})).status_code == 201
        assert kill_site_connections(mariadb_cluster) >= 1
        response = await client.post("/api/entries", json={"text": "after kill"})
        assert response.status_code == 201 and response.json()["gtid"]
        assert app.state.stats.unavailable == 0
