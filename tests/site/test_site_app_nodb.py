"""The app's HTTP contract where no database answers: headers, bad input, 503.

Every DB endpoint here is a closed port on 127.0.0.1, so these tests need
neither root nor MariaDB.  Input errors must be rejected before the database
is ever consulted, and an unreachable database must be a 503, never a 500.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from site_testlib import ADMIN, AppClient, free_port, site_config
from starlette.applications import Starlette

from webinfra.site.app import create_app

pytestmark = pytest.mark.anyio

IDENTITY = {"x-served-by": "web-test", "x-app-version": "7"}


def dead_config(password_file: Path, readers: int = 0) -> Any:
    return site_config(
        password_file,
        writer={"name": "db-dead-w", "host": "127.0.0.1", "port": free_port()},
        readers=[{"name": f"db-dead-r{i}", "host": "127.0.0.1", "port": free_port()} for i in range(readers)],
    )


@pytest.fixture
async def client(serve: AppClient, password_file: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(dead_config(password_file)) as (client, _app):
        yield client


def assert_identity(response: httpx.Response) -> None:
    for key, value in IDENTITY.items():
        assert response.headers.get(key) == value, (key, dict(response.headers))


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    assert_identity(response)


async def test_healthz_does_not_touch_the_db(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "host": "web-test", "version": "7"}
    assert_identity(response)
    assert "x-db" not in response.headers
    assert (await client.head("/healthz")).status_code == 200


async def test_unknown_path_and_wrong_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope"), 404)
    response = await client.put("/api/entries", json={"text": "x"})
    assert_error(response, 405)
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}
    assert_error(await client.post("/api/entries/1", json={"text": "x"}), 405)
    assert_error(await client.get("/entries"), 405)


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"text": "hi"}', None, 415),
        (b'{"text": "hi"}', "text/plain", 415),
        (b"text=hi", "application/x-www-form-urlencoded", 415),
        (b"{not json", "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b'{"txt": "hi"}', "application/json", 422),
        (b'{"text": 42}', "application/json", 422),
        (b'{"text": ""}', "application/json", 422),
        (b'{"text": " \\n\\t"}', "application/json", 422),
        (b'{"text": "\\udc00"}', "application/json", 422),
        (json.dumps({"text": "y" * 10_001}).encode(), "application/json", 422),
        (json.dumps({"text": "z" * 70 * 1024}).encode(), "application/json", 413),
    ],
)
async def test_bad_json_posts(client: httpx.AsyncClient, content: bytes, content_type: str | None, status: int) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/api/entries", content=content, headers=headers)
    assert_error(response, status)
    assert "x-db" not in response.headers


async def test_bad_form_posts(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/entries", json={"text": "hi"}), 415)
    assert_error(await client.post("/entries", data={"text": "   "}), 422)
    assert_error(await client.post("/entries", data={"other": "x"}), 422)
    big = {"text": "a" * 70 * 1024}
    assert_error(await client.post("/entries", data=big), 413)


async def test_chunked_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(70):
            yield b" " * 1024

    response = await client.post("/api/entries", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413)


async def raw_post(app: Starlette, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, bytes]:
    """Drive the ASGI app by hand, so headers can lie about the body."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/entries",
        "raw_path": b"/api/entries",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body


async def test_lying_or_huge_content_length(password_file: Path) -> None:
    app = create_app(dead_config(password_file))
    json_type = {"content-type": "application/json"}
    # Declares 20 bytes, sends 70 KiB: counted while reading.
    status, body = await raw_post(app, {**json_type, "content-length": "20"}, [b" " * 1024] * 70)
    assert status == 413 and "error" in json.loads(body)
    # Declares too much: refused before reading.
    status, _ = await raw_post(app, {**json_type, "content-length": str(10**9)}, [b""])
    assert status == 413
    status, _ = await raw_post(app, {**json_type, "content-length": "lots"}, [b""])
    assert status == 400


@pytest.mark.parametrize(
    "path", ["/api/entries/abc", "/api/entries/0", "/api/entries/-3", "/api/entries/1.5", "/api/entries/" + "9" * 25]
)
async def test_impossible_ids_are_404_without_db(client: httpx.AsyncClient, path: str) -> None:
    for response in (await client.get(path), await client.delete(path)):
        assert_error(response, 404)
        assert "x-db" not in response.headers


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=abc", "limit=", "limit=-5"])
async def test_bad_limit_is_400(client: httpx.AsyncClient, query: str) -> None:
    assert_error(await client.get(f"/api/entries?{query}"), 400)


async def test_no_database_is_503(serve: AppClient, password_file: Path) -> None:
    async with serve(dead_config(password_file, readers=2)) as (client, app):
        for response in (
            await client.get("/"),
            await client.get("/api/entries"),
            await client.get("/api/entries/1", headers={"cookie": "wi_gtid=0-1-5"}),
            await client.post("/api/entries", json={"text": "hello"}),
            await client.post("/entries", data={"text": "hello"}),
            await client.delete("/api/entries/1", headers=ADMIN),
        ):
            assert_error(response, 503)
            assert response.headers["retry-after"] == "1"
        stats = app.state.stats
        assert stats.unavailable == 6 and stats.reads == 0 and stats.writes == 0
        assert stats.reader_fallbacks >= 2  # first read: reader 0 -> reader 1 -> writer
        assert set(app.state.db.suspects()) == {"db-dead-w", "db-dead-r0", "db-dead-r1"}
        assert (await client.get("/healthz")).status_code == 200


async def test_crash_is_json_500_with_identity(password_file: Path) -> None:
    app = create_app(dead_config(password_file))

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    app.state.store.latest = boom
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert_error(await client.get("/api/entries"), 500)
