"""The site's connections to MariaDB: one asyncmy pool per endpoint, the sessions checked out of them, which
server each connection reached, and what an error says about the endpoint. site/db.py routes reads and
writes over these.

* A pool is created lazily on first use (minsize 0: a dead endpoint costs nothing until needed).
* A connection that failed mid-conversation (or was cancelled) is discarded, never pooled; an endpoint
  error on a connection checked out fine is a ``BrokenSession`` (worth one retry on a fresh one).
* With ``identify_servers`` each new connection asks once for ``@@report_host`` and ``@@read_only``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncmy
from asyncmy.connection import Connection
from asyncmy.errors import InterfaceError, InternalError, MySQLError, OperationalError

from webinfra.site.config import NAME_PATTERN, DBConfig, DBEndpoint

log = logging.getLogger(__name__)

# MySQL client-side error numbers (CR_*) start at 2000; below that the server
# itself answered, so the connection is known to be alive.
_CLIENT_ERRNO_MIN = 2000
#: ER_OPTION_PREVENTS_STATEMENT: "... running with the --read-only option so it cannot execute this statement".
ER_OPTION_PREVENTS_STATEMENT = 1290
#: Asked once per new connection when ``identify_servers`` is on.
IDENTIFY_SQL = "SELECT @@report_host, @@read_only"
#: A write transaction left open by an app server that died or was cut off mid-way is rolled back by the
#: server after this long, releasing its locks - above all its Idempotency-Key, whose retries would
#: otherwise wait for it (MariaDB keeps an idle session for wait_timeout, 8 hours by default).
IDLE_TRANSACTION_SECONDS = 10
#: Run by every new connection.
SESSION_SETUP_SQL = f"SET SESSION idle_transaction_timeout = {IDLE_TRANSACTION_SECONDS}"
_NAME_RE = re.compile(NAME_PATTERN)


class DBUnavailable(Exception):
    """No database endpoint could serve the request (an outage, not bad input)."""


class BrokenSession(Exception):
    """An endpoint error on a connection that was checked out fine.

    Distinguished from a failure to connect because the cause may just be a pooled
    connection the server dropped (restart, ``wait_timeout``, KILL): one retry on
    a fresh connection is worth it before calling the endpoint suspect.
    """


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """Which MariaDB server a connection reached, as that server describes itself."""

    name: str  # @@report_host, or the endpoint's name if that is unset or unusable
    read_only: bool  # @@read_only; a server that is not read-only is the primary


def parse_identity(row: tuple[Any, ...] | None, fallback: str) -> ServerIdentity:
    """Turn a row of :data:`IDENTIFY_SQL` into a :class:`ServerIdentity`.

    ``@@report_host`` is NULL unless configured; it also goes into an HTTP header, so
    anything but a plain host-name token is replaced by ``fallback`` (the endpoint's
    name).  An unknown ``@@read_only`` counts as read-only: wrongly taking a replica
    for the primary would break read-your-writes, while the opposite mistake only
    costs a ``MASTER_GTID_WAIT``.
    """
    if not row:
        return ServerIdentity(fallback, read_only=True)
    name, read_only = (row[0], row[1]) if len(row) >= 2 else (row[0], None)
    if isinstance(name, bytes | bytearray):
        name = bytes(name).decode("utf-8", "replace")
    if not isinstance(name, str) or not name:
        name = fallback
    elif not _NAME_RE.fullmatch(name):
        log.warning("ignoring unusable @@report_host %r, using %s", name, fallback)
        name = fallback
    return ServerIdentity(name, _read_only_flag(read_only))


def _read_only_flag(value: Any) -> bool:
    # A 0/1 integer on MariaDB <= 11.x; newer servers may spell it OFF/ON/NO_LOCK/...
    if value is None:
        return True
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("ascii", "replace")
    if isinstance(value, str):
        return value.strip().upper() not in ("0", "OFF", "FALSE")
    return bool(value)


def server_errno(exc: BaseException) -> int | None:
    """The MySQL error number behind ``exc`` (also through a :class:`BrokenSession`), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MySQLError) and current.args and isinstance(current.args[0], int):
            return current.args[0]
        current = current.__cause__
    return None


def is_read_only_refusal(exc: BaseException) -> bool:
    """True if the server refused a statement because it runs read-only (not applied, safe to retry)."""
    return server_errno(exc) == ER_OPTION_PREVENTS_STATEMENT


def is_endpoint_error(exc: BaseException) -> bool:
    """True if ``exc`` means "this endpoint is unusable right now" rather than a bug."""
    # TimeoutError (a subclass of OSError) covers both connect timeouts and our own
    # per-attempt deadline.  Programming/data/integrity errors are bugs, not outages.
    return isinstance(exc, (BrokenSession, OSError, OperationalError, InterfaceError, InternalError))


def is_server_error(exc: BaseException) -> bool:
    """True for an error the server sent over a working connection."""
    if not isinstance(exc, MySQLError) or isinstance(exc, InterfaceError):
        return False
    errno = exc.args[0] if exc.args else None
    return isinstance(errno, int) and 0 < errno < _CLIENT_ERRNO_MIN


class Pools:
    """One asyncmy pool per endpoint of a :class:`DBConfig`, and the identity of each pooled connection."""

    def __init__(self, config: DBConfig, password: str) -> None:
        self._cfg = config
        self._password = password
        self._pools: dict[str, asyncmy.Pool] = {}
        self._ssl = config.ssl_context()  # None: plain TCP; else TLS verified against the CA
        # Identity of each live pooled connection (identify_servers).  Weak keys: the
        # pool drops connections on its own, and a plain id() could be reused.
        self._identities: weakref.WeakKeyDictionary[Connection, ServerIdentity] = weakref.WeakKeyDictionary()

    def identity(self, conn: Connection) -> ServerIdentity | None:
        """Which server `conn` reached (identify_servers), else None."""
        return self._identities.get(conn)

    def server_name(self, conn: Connection) -> str | None:
        identity = self._identities.get(conn)
        return identity.name if identity else None

    def in_use(self) -> dict[str, int]:
        """Connections checked out of each endpoint's pool right now (0 where no pool exists yet): metrics."""
        in_use = {e.name: 0 for e in (self._cfg.writer, *self._cfg.readers)}
        for name, pool in self._pools.items():
            in_use[name] = pool.size - pool.freesize
        return in_use

    async def close(self) -> None:
        """Close every pool; connections still in use are cut after a short grace period."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()
            try:
                await asyncio.wait_for(pool.wait_closed(), timeout=5.0)
            except TimeoutError:
                pool.terminate()

    async def _identify(self, conn: Connection, endpoint: DBEndpoint) -> ServerIdentity:
        """Ask a new connection which server it reached."""
        async with conn.cursor() as cur:
            try:
                await cur.execute(IDENTIFY_SQL)
                row = await cur.fetchone()
            except MySQLError as exc:
                if not is_server_error(exc):
                    raise
                # The server is up but will not say: keep the endpoint's name and
                # assume read-only (the cautious choice for read-your-writes).
                log.warning("could not identify the server behind %s: %s", endpoint.name, exc)
                row = None
        return parse_identity(row, endpoint.name)

    async def drop_idle(self, endpoint: DBEndpoint) -> None:
        """Close the endpoint's idle pooled connections, so the next checkout is a fresh connection."""
        pool = self._pools.get(endpoint.name)
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.clear(), timeout=self._cfg.connect_timeout_seconds)
        except Exception as exc:
            # Whatever is left will fail on use and be discarded then.
            log.info("could not drop idle connections of %s: %r", endpoint.name, exc)

    async def _pool(self, endpoint: DBEndpoint) -> asyncmy.Pool:
        pool = self._pools.get(endpoint.name)
        if pool is None:
            # minsize=0: creating the pool opens no connection, so a dead endpoint
            # costs nothing until it is actually needed.
            pool = await asyncmy.create_pool(
                minsize=0,
                maxsize=self._cfg.pool_max_size,
                host=endpoint.host,
                port=endpoint.port,
                user=self._cfg.user,
                password=self._password,
                database=self._cfg.database,
                charset="utf8mb4",
                autocommit=True,  # reads must not hold a snapshot across pooled uses
                connect_timeout=self._cfg.connect_timeout_seconds,
                ssl=self._ssl,
                init_command=SESSION_SETUP_SQL,
            )
            # Another task may have raced us here while create_pool yielded.
            existing = self._pools.setdefault(endpoint.name, pool)
            if existing is not pool:
                pool.close()
                pool = existing
        return pool

    @asynccontextmanager
    async def session(self, endpoint: DBEndpoint) -> AsyncIterator[Connection]:
        """Check a connection out of the endpoint's pool; discard it if anything goes wrong."""
        pool = await self._pool(endpoint)
        try:
            conn = await pool.acquire()
        except RuntimeError as exc:
            # asyncmy raises a bare RuntimeError ("Transport does not expose socket instance") when the
            # peer closes during the handshake: a DB proxy with no server up does exactly that.
            raise ConnectionError(f"{endpoint.name}: connection closed during handshake ({exc})") from exc
        try:
            if self._cfg.identify_servers and conn not in self._identities:
                # Once per connection: the proxy picks the server at connect time and
                # cuts the session if that server goes down, so the answer holds.
                self._identities[conn] = await self._identify(conn, endpoint)
            yield conn
        except BaseException as exc:
            # After an error or a cancellation mid-conversation the protocol state
            # is unknown: closing first makes release() drop it instead of pooling it.
            conn.close()
            if isinstance(exc, Exception) and is_endpoint_error(exc) and not isinstance(exc, TimeoutError):
                raise BrokenSession(f"{endpoint.name}: {exc!r}") from exc
            raise
        finally:
            pool.release(conn)
