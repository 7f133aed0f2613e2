"""Exactly-once writes with Idempotency-Key, and the signed read-your-writes cookie, against real MariaDB."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncmy
import httpx
import pytest
from asyncmy.cursors import Cursor
from site_testlib import AppClient, Cluster, gtid_cookie

from webinfra.site.dbconn import IDLE_TRANSACTION_SECONDS

pytestmark = pytest.mark.anyio


def key() -> str:
    return f"test:{uuid.uuid4()}"


def rows_for(cluster: Cluster, text: str) -> int:
    return int(cluster.primary.sql(f"SELECT COUNT(*) FROM site.entries WHERE text = '{text}'"))


async def post(client: httpx.AsyncClient, text: str, idem: str | None) -> httpx.Response:
    headers = {"Idempotency-Key": idem} if idem is not None else {}
    response = await client.post("/api/entries", json={"text": text}, headers=headers)
    client.cookies.clear()
    return response


async def test_a_retry_returns_the_first_result(serve: AppClient, mariadb_cluster: Cluster) -> None:
    text, idem = f"once {uuid.uuid4()}", key()
    async with serve(mariadb_cluster.config()) as (client, app):
        first = await post(client, text, idem)
        assert first.status_code == 201 and "idempotent-replayed" not in first.headers
        again = await post(client, text, idem)
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        body, replay = first.json(), again.json()
        assert {k: v for k, v in replay.items() if k != "gtid"} == {k: v for k, v in body.items() if k != "gtid"}
        assert again.headers["location"] == first.headers["location"]
        # The replay's GTID covers the first write: read-your-writes holds with it.
        got = await client.get(first.headers["location"], headers={"cookie": gtid_cookie(replay["gtid"])})
        assert got.status_code == 200 and got.json()["text"] == text
        # The replay hands out the author cookie too (it answers the same client).
        assert f"wi_own_{body['id']}=" in again.headers["set-cookie"]
        assert app.state.stats.writes == 2
    # Another app server (another process, another pool) answers the same key with the same result.
    other = mariadb_cluster.config().model_copy(update={"host": "web-other"})
    async with serve(other) as (client, _app):
        third = await post(client, text, idem)
        assert third.status_code == 201 and third.headers["idempotent-replayed"] == "true"
        assert third.json()["id"] == body["id"] and third.json()["author_host"] == "web-test"
    assert rows_for(mariadb_cluster, text) == 1
    # The same key with another text is a client bug, not a retry.
    async with serve(mariadb_cluster.config()) as (client, _app):
        conflict = await post(client, text + " changed", idem)
        assert conflict.status_code == 422 and "Idempotency-Key" in conflict.json()["error"]
        assert rows_for(mariadb_cluster, text + " changed") == 0
        # Without a key, the same text is simply a new entry.
        assert (await post(client, text, None)).status_code == 201
    assert rows_for(mariadb_cluster, text) == 2


@pytest.mark.parametrize("bad", ["", "k" * 129, "has space", "ünï".encode(), "a/b"])
async def test_a_malformed_key_is_400(serve: AppClient, mariadb_cluster: Cluster, bad: str | bytes) -> None:
    async with serve(mariadb_cluster.config()) as (client, app):
        response = await client.post("/api/entries", json={"text": "never"}, headers={"Idempotency-Key": bad})
        assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]
        twice = httpx.Headers([("Idempotency-Key", "a"), ("Idempotency-Key", "b")])
        assert (await client.post("/api/entries", json={"text": "never"}, headers=twice)).status_code == 400
        assert app.state.stats.writes == 0


async def test_concurrent_duplicates_insert_once(serve: AppClient, mariadb_cluster: Cluster) -> None:
    text, idem = f"race {uuid.uuid4()}", key()
    other = mariadb_cluster.config(pool_max_size=10).model_copy(update={"host": "web-other"})
    async with (
        serve(mariadb_cluster.config(pool_max_size=10)) as (one, _a),
        serve(other) as (two, _b),
    ):
        responses = await asyncio.gather(*(post(c, text, idem) for c in [one, two] * 8))
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 15
    assert rows_for(mariadb_cluster, text) == 1


async def test_a_duplicate_waiting_for_the_first_transaction_replays_it(
    serve: AppClient, mariadb_cluster: Cluster
) -> None:
    """The race in slow motion: the first request's transaction holds the key while the second arrives."""
    text, idem = f"slow race {uuid.uuid4()}", key()
    conn = await asyncmy.connect(
        host="127.0.0.1",
        port=mariadb_cluster.primary.port,
        user="site",
        password=mariadb_cluster.password,
        database="site",
        autocommit=False,
    )
    try:
        async with conn.cursor() as cur, serve(mariadb_cluster.config()) as (client, app):
            await cur.execute(
                "INSERT INTO entries (text, author_host, created_at) VALUES (%s, 'web-first', UTC_TIMESTAMP(6))",
                (text,),
            )
            first_id = cur.lastrowid
            await cur.execute(
                "INSERT INTO idempotency_keys (idem_key, entry_id, text_sha256, author_host, created_at) "
                "VALUES (%s, %s, UNHEX(SHA2(%s, 256)), 'web-first', UTC_TIMESTAMP(6))",
                (idem, first_id, text),
            )
            second = asyncio.create_task(post(client, text, idem))
            # The second request's key insert is now waiting for our lock.
            deadline = time.monotonic() + 10
            waiting = (
                "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'INSERT INTO idempotency_keys%'"
            )
            while mariadb_cluster.primary.sql(waiting) == "0":
                assert time.monotonic() < deadline and not second.done(), "the second request never waited"
                await asyncio.sleep(0.05)
            await conn.commit()
            response = await second
            assert response.status_code == 201, response.text
            assert response.headers["idempotent-replayed"] == "true" and response.json()["id"] == first_id
            assert response.json()["author_host"] == "web-first"
            assert app.state.stats.writes == 1
    finally:
        await conn.ensure_closed()
    assert rows_for(mariadb_cluster, text) == 1


async def test_a_keyed_write_waits_out_a_read_only_primary(serve: AppClient, mariadb_cluster: Cluster) -> None:
    """The write retry while no primary accepts (a failover) stays exactly-once with a key."""
    text, idem = f"failover {uuid.uuid4()}", key()
    primary = mariadb_cluster.primary
    primary.sql("SET GLOBAL read_only = 1")
    try:
        async with serve(mariadb_cluster.config(write_retry_seconds=10)) as (client, app):
            pending = asyncio.create_task(post(client, text, idem))
            deadline = time.monotonic() + 10
            while app.state.stats.read_only_refusals < 2:
                assert time.monotonic() < deadline and not pending.done()
                await asyncio.sleep(0.05)
            primary.sql("SET GLOBAL read_only = 0")
            response = await pending
            assert response.status_code == 201 and "idempotent-replayed" not in response.headers
            again = await post(client, text, idem)
            assert again.json()["id"] == response.json()["id"]
    finally:
        primary.sql("SET GLOBAL read_only = 0")
    assert rows_for(mariadb_cluster, text) == 1


async def test_the_form_stores_a_double_submit_once(serve: AppClient, mariadb_cluster: Cluster) -> None:
    text = f"form {uuid.uuid4()}"
    async with serve(mariadb_cluster.config()) as (client, _app):
        page = (await client.get("/")).text
        field = page.split('name="idempotency_key" value="', 1)[1].split('"', 1)[0]
        for _ in range(2):
            response = await client.post("/entries", data={"text": text, "idempotency_key": field})
            assert response.status_code == 303
        assert response.headers["idempotent-replayed"] == "true"
        assert field not in (await client.get("/")).text  # a fresh key per page view
    assert rows_for(mariadb_cluster, text) == 1


async def test_read_your_writes_cookie_is_signed_and_clamped(serve: AppClient, mariadb_cluster: Cluster) -> None:
    async with serve(mariadb_cluster.config(ryw_wait_seconds=5)) as (client, app):
        created = await post(client, "signed", None)
        gtid = created.json()["gtid"]
        stats = app.state.stats
        # Unsigned or forged: ignored, no wait, never an error.
        forged = gtid_cookie(gtid).rsplit(".", 1)[0] + "." + "A" * 43
        for value in (f"wi_gtid={gtid}", forged, "wi_gtid=0-1-999999999"):
            response = await client.get("/api/entries?limit=1", headers={"cookie": value})
            assert response.status_code == 200 and response.headers["x-db"] == mariadb_cluster.replica.name
        assert stats.ryw_waits == 0
        # Signed but beyond anything the primary wrote (another incarnation, a write lost in a failover):
        # clamped to the primary's position, so the replica answers at once instead of waiting 5 s.
        domain, server, _ = gtid.split("-")
        started = time.monotonic()
        beyond_cookie = {"cookie": gtid_cookie(f"{domain}-{server}-999999999")}
        beyond = await client.get("/api/entries?limit=1", headers=beyond_cookie)
        assert beyond.status_code == 200 and beyond.headers["x-db"] == mariadb_cluster.replica.name
        assert time.monotonic() - started < 2.5
        # A domain the primary has never written: nothing to wait for.
        other = await client.get("/api/entries?limit=1", headers={"cookie": gtid_cookie("77-1-5")})
        assert other.status_code == 200
        assert stats.ryw_clamps == 2 and stats.ryw_fallbacks == 0
        assert app.state.db.primary_position.refreshes >= 1


async def test_an_abandoned_transaction_cannot_hold_a_key_for_long(serve: AppClient, mariadb_cluster: Cluster) -> None:
    """Every app connection rolls back a transaction idle for IDLE_TRANSACTION_SECONDS: a dead app server's
    half-done keyed write releases its key instead of blocking the retries for hours."""
    async with serve(mariadb_cluster.config(readers=[])) as (_client, app):

        async def setting(cur: Cursor) -> int:
            await cur.execute("SELECT @@session.idle_transaction_timeout")
            row = await cur.fetchone()
            return int(row[0])

        assert (await app.state.db.read(setting)).value == IDLE_TRANSACTION_SECONDS
        assert (await app.state.db.write(setting)).value == IDLE_TRANSACTION_SECONDS
