"""The site against real MariaDB (primary + GTID replica): CRUD, routing, read-your-writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import anyio
import asyncmy
import httpx
import pytest
from site_testlib import ADMIN, AppClient, Cluster, gtid_cookie, set_cookies

pytestmark = pytest.mark.anyio

GTID_RE = re.compile(r"^\d+-\d+-\d+$")


def cookie(gtid: str) -> dict[str, str]:
    return {"cookie": gtid_cookie(gtid)}


async def create(client: httpx.AsyncClient, text: str) -> httpx.Response:
    response = await client.post("/api/entries", json={"text": text})
    assert response.status_code == 201, response.text
    # Tests pass the RYW cookie explicitly; keep httpx's jar from doing it for them.
    client.cookies.clear()
    return response


async def test_create_read_list_delete(serve: AppClient, mariadb_cluster: Cluster) -> None:
    primary, replica = mariadb_cluster.primary.name, mariadb_cluster.replica.name
    async with serve(mariadb_cluster.config(ryw_wait_seconds=5)) as (client, app):
        before = datetime.now(UTC)
        response = await create(client, "hello world")
        body = response.json()
        assert set(body) == {"id", "text", "author_host", "created_at", "gtid"}
        assert body["text"] == "hello world" and body["author_host"] == "web-test"
        assert before - timedelta(seconds=1) <= datetime.fromisoformat(body["created_at"]) <= datetime.now(UTC)
        assert GTID_RE.match(body["gtid"])
        assert response.headers["location"] == f"/api/entries/{body['id']}"
        cookies = set_cookies(response)
        assert cookies["wi_gtid"] == f"{gtid_cookie(body['gtid'])}; Path=/; HttpOnly; SameSite=Lax"
        author = cookies[f"wi_own_{body['id']}"]
        assert author.endswith(f"; Path=/api/entries/{body['id']}; Max-Age=7776000; HttpOnly; SameSite=Strict")
        assert response.headers["x-db"] == primary
        assert response.headers["x-served-by"] == "web-test" and response.headers["x-app-version"] == "7"

        # With the cookie the replica waits for the write, then serves it.
        got = await client.get(f"/api/entries/{body['id']}", headers=cookie(body["gtid"]))
        assert got.status_code == 200 and got.headers["x-db"] == replica
        assert got.json() == {k: v for k, v in body.items() if k != "gtid"}

        second = (await create(client, "second")).json()
        listing = await client.get("/api/entries?limit=2", headers=cookie(second["gtid"]))
        assert listing.status_code == 200 and listing.headers["x-db"] == replica
        assert [e["id"] for e in listing.json()["entries"]] == [second["id"], body["id"]]
        default = (await client.get("/api/entries", headers=cookie(second["gtid"]))).json()["entries"]
        assert 2 <= len(default) <= 50 and default[0]["id"] == second["id"]
        ids = [e["id"] for e in default]
        assert ids == sorted(ids, reverse=True)

        # Deleting needs the author's cookie (or the admin token): none is 401, someone else's is 403.
        path, own = f"/api/entries/{body['id']}", {"cookie": author.split(";")[0]}
        refused = await client.delete(path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert (await client.delete(path, headers={"cookie": f"wi_own_{body['id']}=x"})).status_code == 403
        assert (await client.delete(path, headers={"authorization": "Bearer nope"})).status_code == 403
        assert (await client.get(path)).status_code == 200  # still there
        deleted = await client.delete(path, headers=own)
        assert deleted.status_code == 204 and deleted.headers["x-db"] == primary
        gtid = set_cookies(deleted)["wi_gtid"].split(";")[0].removeprefix("wi_gtid=").rsplit(".", 1)[0]
        assert GTID_RE.match(gtid) and gtid != second["gtid"]
        client.cookies.clear()
        gone = await client.get(path, headers=cookie(gtid))
        assert gone.status_code == 404 and gone.headers["x-db"] == replica and "error" in gone.json()
        again = await client.delete(path, headers=ADMIN)
        assert again.status_code == 404 and "set-cookie" not in again.headers and "x-db" in again.headers

        stats = app.state.stats.as_dict()
        assert stats["writes"] == 4 and stats["reads"] == 5
        assert stats["ryw_waits"] == 4 and stats["ryw_fallbacks"] == 0 and stats["reader_fallbacks"] == 0
        assert stats["ryw_clamps"] == 0


async def test_unknown_ids_are_404_from_the_db(serve: AppClient, mariadb_cluster: Cluster) -> None:
    async with serve(mariadb_cluster.config()) as (client, _app):
        for path in ("/api/entries/987654321", f"/api/entries/{2**64 - 1}"):
            response = await client.get(path)
            assert response.status_code == 404 and response.json() == {"error": "entry not found"}
            assert response.headers["x-db"] == mariadb_cluster.replica.name
            assert (await client.delete(path, headers=ADMIN)).status_code == 404


@pytest.mark.parametrize(
    "text",
    [
        "Grüße aus Köln, naïve café",
        "emoji 😀🎉👩‍👩‍👧 and CJK 漢字かな",
        "RTL \u202e עברית العربية",
        "tabs\tand\nnewlines\r\n  and trailing spaces  ",
        "NUL \x00 and quotes ' \" ` \\ ; -- %s %(x)s",
        "x" * 10_000,
        "😀" * 10_000,
    ],
)
async def test_text_round_trips(serve: AppClient, mariadb_cluster: Cluster, text: str) -> None:
    async with serve(mariadb_cluster.config(readers=[])) as (client, _app):
        body = (await create(client, text)).json()
        assert body["text"] == text
        got = await client.get(f"/api/entries/{body['id']}")
        assert got.status_code == 200 and got.json()["text"] == text


async def test_html_page_and_form(serve: AppClient, mariadb_cluster: Cluster) -> None:
    evil = "<script>alert('x')</script> & <b>bold</b>"
    async with serve(mariadb_cluster.config(ryw_wait_seconds=5)) as (client, _app):
        response = await client.post("/entries", data={"text": evil})
        assert response.status_code == 303 and response.headers["location"] == "/"
        assert response.headers["x-db"] == mariadb_cluster.primary.name
        set_cookie = set_cookies(response)["wi_gtid"]
        assert re.fullmatch(r"wi_gtid=\d+-\d+-\d+\.[\w-]{43}; Path=/; HttpOnly; SameSite=Lax", set_cookie)
        client.cookies.clear()

        page = await client.get("/", headers={"cookie": set_cookie.split(";")[0]})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["x-db"] == mariadb_cluster.replica.name
        html = page.text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
        assert "<script>" not in html
        assert 'action="/entries"' in html and "www.foobar.test" in html
        assert html.count('<li id="entry-') <= 50


async def test_replica_is_read_only_for_the_site_user(mariadb_cluster: Cluster) -> None:
    kwargs = {"host": "127.0.0.1", "user": "site", "password": mariadb_cluster.password, "database": "site"}
    conn = await asyncmy.connect(port=mariadb_cluster.replica.port, autocommit=True, **kwargs)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT COUNT(*) FROM entries")
            with pytest.raises(asyncmy.errors.OperationalError) as info:
                await cur.execute("INSERT INTO entries (text, author_host) VALUES (%s, %s)", ("sneaky", "replica"))
            assert info.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT (--read-only)
    finally:
        await conn.ensure_closed()
    # And on the primary the site user has no DDL rights.
    conn = await asyncmy.connect(port=mariadb_cluster.primary.port, autocommit=True, **kwargs)
    try:
        async with conn.cursor() as cur:
            with pytest.raises(asyncmy.errors.OperationalError):
                await cur.execute("CREATE TABLE site.nope (id INT)")
            with pytest.raises(asyncmy.errors.OperationalError):
                await cur.execute("UPDATE entries SET text = 'x' WHERE id = 0")
    finally:
        await conn.ensure_closed()


async def test_concurrent_requests_share_small_pools(serve: AppClient, mariadb_cluster: Cluster) -> None:
    async with serve(mariadb_cluster.config(pool_max_size=3)) as (client, app):
        results: list[int] = []

        async def get() -> None:
            results.append((await client.get("/api/entries?limit=5")).status_code)

        async def post(i: int) -> None:
            results.append((await client.post("/api/entries", json={"text": f"burst {i}"})).status_code)

        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(get)
                if i % 6 == 0:
                    tg.start_soon(post, i)
        assert sorted(set(results)) == [200, 201] and len(results) == 70
        assert app.state.stats.writes == 10 and app.state.stats.reads == 60
