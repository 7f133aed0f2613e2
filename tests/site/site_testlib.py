"""Test harness for the site: throwaway MariaDB instances and an in-process app client.

Lives in its own uniquely named module (not conftest.py) so test modules can import
it without clashing with other packages' ``conftest`` modules.

:class:`MariaDB` is one private mariadbd on 127.0.0.1 with a free port in a temp
dir; :class:`Cluster` is a primary plus a GTID replica of it.  Readiness is always
polled against a deadline, and only processes started here are ever stopped.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from testkit import (  # noqa: F401 (CLIENT, INSTALL_DB, MARIADBD: re-exported for conftest.py)
    CLIENT,
    INSTALL_DB,
    MARIADBD,
    MariaDBFiles,
    OnMariaDBFiles,
    free_port,
    install,
    mariadbd_argv,
    run_sql,
    wait_for,
)
from webinfra.site import SiteConfig, schema_sql
from webinfra.site.app import create_app
from webinfra.site.auth import Signer

READY_TIMEOUT = 30.0
REPL_PASSWORD = "repl-" + secrets.token_hex(8)


@dataclass
class MariaDB(OnMariaDBFiles):
    """One private mariadbd (testkit launches it): its files, port and the one process we started."""

    name: str
    base: Path
    server_id: int
    read_only: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def install(self) -> subprocess.Popen[bytes]:
        return install(self.files)

    def start(self) -> None:
        assert self.proc is None
        argv = mariadbd_argv(
            self.files, port=self.port, server_id=self.server_id, read_only=self.read_only, report_host=self.name
        )
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                log_file = self.files.log_error
                log = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
                raise RuntimeError(f"mariadbd {self.name} exited with {self.proc.returncode}:\n{log}")
            return self.socket.exists() and run_sql(self.socket, "SELECT 1").returncode == 0

        wait_for(ready, READY_TIMEOUT, f"mariadbd {self.name} to accept connections")

    def stop(self) -> None:
        """Stop the mariadbd we started (SIGTERM, SIGKILL if it dawdles)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def sql(self, sql: str) -> str:
        """Run ``sql`` as root over the unix socket; return the tab-separated output."""
        result = run_sql(self.socket, sql)
        if result.returncode != 0:
            raise RuntimeError(f"SQL on {self.name} failed: {result.stderr.strip()}\n{sql}")
        return result.stdout.strip()


@dataclass
class Cluster:
    """A primary and a GTID replica, plus the site user's credentials."""

    primary: MariaDB
    replica: MariaDB
    password_file: Path
    password: str

    def wait_replica_caught_up(self, timeout: float = 20.0) -> None:
        pos = self.primary.sql("SELECT @@gtid_binlog_pos")
        result = self.replica.sql(f"SELECT MASTER_GTID_WAIT('{pos}', {timeout})")
        if result != "0":
            status = self.replica.sql("SHOW SLAVE STATUS\\G")
            raise RuntimeError(f"replica did not reach {pos} (result {result}):\n{status}")

    def endpoint(self, db: MariaDB) -> dict[str, Any]:
        return {"name": db.name, "host": "127.0.0.1", "port": db.port}

    def config(
        self,
        *,
        writer: dict[str, Any] | None = None,
        readers: list[dict[str, Any]] | None = None,
        **db: Any,
    ) -> SiteConfig:
        """A SiteConfig for this cluster: primary as writer, replica as the one reader by default."""
        return site_config(
            self.password_file,
            writer=self.endpoint(self.primary) if writer is None else writer,
            readers=[self.endpoint(self.replica)] if readers is None else readers,
            **db,
        )


#: The admin token of every test config (``Authorization: Bearer ...``).
ADMIN_TOKEN = "admin-" + secrets.token_urlsafe(18)
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
SIGNING_KEY = secrets.token_urlsafe(24)


def gtid_cookie(gtid: str) -> str:
    """A ``Cookie`` header carrying ``gtid`` the way the site signs it."""
    return f"wi_gtid={Signer(SIGNING_KEY.encode()).gtid_cookie(gtid)}"


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Cookie name -> the whole Set-Cookie line, for every cookie the response sets."""
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


def secret_files(directory: Path) -> dict[str, str]:
    """The signing key and admin token files next to the password file, as the plan names them in site.json."""
    files = {
        "signing_key_file": directory / "site-signing.password",
        "admin_token_file": directory / "site-admin.password",
    }
    for path, value in zip(files.values(), (SIGNING_KEY, ADMIN_TOKEN), strict=True):
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(value + "\n")
    return {key: str(path) for key, path in files.items()}


def site_config(password_file: Path, *, writer: dict[str, Any], readers: list[dict[str, Any]], **db: Any) -> SiteConfig:
    """A test SiteConfig; ``db`` overrides the DB settings."""
    return SiteConfig.model_validate(
        {
            "host": "web-test",
            "site_name": "www.foobar.test",
            "version": "7",
            **secret_files(password_file.parent),
            "db": {
                "database": "site",
                "user": "site",
                "password_file": str(password_file),
                "writer": writer,
                "readers": readers,
                "ryw_wait_seconds": 0.5,
                "connect_timeout_seconds": 1.0,
                "pool_max_size": 5,
                "suspect_seconds": 0.3,
                **db,
            },
        }
    )


def setup_sql(password: str) -> str:
    return f"""
        CREATE USER 'repl'@'%' IDENTIFIED BY '{REPL_PASSWORD}';
        GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
        CREATE DATABASE site CHARACTER SET utf8mb4;
        USE site;
        {schema_sql()}
        CREATE USER 'site'@'%' IDENTIFIED BY '{password}';
        GRANT SELECT, INSERT, DELETE ON site.* TO 'site'@'%';
    """


AppClient = Callable[[SiteConfig], AbstractAsyncContextManager[tuple[httpx.AsyncClient, Starlette]]]


@asynccontextmanager
async def serve_app(config: SiteConfig) -> AsyncIterator[tuple[httpx.AsyncClient, Starlette]]:
    app = create_app(config)
    # Drive the lifespan ourselves: ASGITransport does not, and it closes the pools.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app


class TCPProxy:
    """A tiny switchable TCP forwarder on 127.0.0.1, standing in for the HA dbproxy.

    ``target_port`` applies to new connections only; sessions already forwarded stay
    on their old server (HAProxy's window before it cuts them).  Runs on the test's
    event loop, next to the in-process app.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TCPProxy:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, server_w}
        await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
