"""Database layer of the site: asyncmy pools, read/write routing, failover, read-your-writes.

* One asyncmy pool per MariaDB endpoint, created lazily on first use.
* Writes go to the writer.  Reads go to the readers in preference order and to
  the writer as a last resort.  An endpoint that fails with a connection-level
  error is *suspect* for ``suspect_seconds`` and is only tried again when no
  healthy endpoint is left; the broken connection is discarded, never pooled.
* Read-your-writes: a read carrying the GTID of the client's last write waits
  (``MASTER_GTID_WAIT``) until a replica has applied it, or else is answered by
  the writer, which has it by definition.  The GTID is first clamped to what the
  primary has written (:mod:`webinfra.site.ryw`), so no read waits for a GTID
  that does not exist.
* Every call reports which endpoint served it (the app's ``X-DB`` header), and
  :class:`DBStats` counts what happened for metrics.
* With ``identify_servers`` (HA mode, where the endpoints are a local DB proxy's
  writer/reader ports and roles move on failover) each new connection asks the
  server it reached for ``@@report_host`` and ``@@read_only`` once.  ``X-DB`` then
  names that server, and a read-your-writes read that landed on a server that is
  not read-only (the primary itself) skips ``MASTER_GTID_WAIT``.  Endpoint names
  still key the pools, the suspect list and the logs.
* A write the server refuses as read-only (error 1290: the writer endpoint reached
  a demoted primary) was not applied: the endpoint turns suspect, its idle pooled
  connections are dropped and the write is retried once on a fresh connection,
  so a failover costs a client at most one 503.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

import asyncmy
from asyncmy.connection import Connection
from asyncmy.cursors import Cursor
from asyncmy.errors import InterfaceError, InternalError, MySQLError, OperationalError

from webinfra.site.config import NAME_PATTERN, DBConfig, DBEndpoint
from webinfra.site.ryw import PrimaryPosition

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A unit of database work: gets a cursor, runs parameterised SQL, returns a value.
Query = Callable[[Cursor], Awaitable[T]]

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


@dataclass(slots=True)
class DBStats:
    """Plain counters the app can expose as metrics."""

    reads: int = 0  # reads answered
    writes: int = 0  # writes committed
    ryw_waits: int = 0  # MASTER_GTID_WAIT calls issued on replicas
    ryw_fallbacks: int = 0  # replica did not catch up in time -> read went to the writer
    ryw_skips: int = 0  # read-your-writes read landed on an identified primary: no wait needed
    reader_fallbacks: int = 0  # an endpoint failed mid-read and the next one was tried
    unavailable: int = 0  # calls that found no usable endpoint (HTTP 503)
    read_only_refusals: int = 0  # write attempts a read-only server refused (error 1290)
    ryw_clamps: int = 0  # read-your-writes GTIDs lowered (or dropped) to what the primary has

    def as_dict(self) -> dict[str, int]:
        """Snapshot of the counters."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    """Result of a database call plus who answered it."""

    value: T
    endpoint: str  # configured endpoint name (logs, suspects)
    gtid: str | None = None  # GTID of a committed write, if it wrote anything
    server: str | None = None  # the server's own name, when identify_servers found one

    @property
    def db_host(self) -> str:
        """What the ``X-DB`` header says: the identified server, else the endpoint's name."""
        return self.server or self.endpoint


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


def _is_server_error(exc: BaseException) -> bool:
    """True for an error the server sent over a working connection."""
    if not isinstance(exc, MySQLError) or isinstance(exc, InterfaceError):
        return False
    errno = exc.args[0] if exc.args else None
    return isinstance(errno, int) and 0 < errno < _CLIENT_ERRNO_MIN


class Database:
    """Routes queries over the writer and readers described by a :class:`DBConfig`."""

    def __init__(self, config: DBConfig, password: str) -> None:
        self._cfg = config
        self._password = password
        self._pools: dict[str, asyncmy.Pool] = {}
        self._ssl = config.ssl_context()  # None: plain TCP; else TLS verified against the CA
        self._suspect_until: dict[str, float] = {}
        self._timeout = config.query_timeout_seconds
        # Identity of each live pooled connection (identify_servers).  Weak keys: the
        # pool drops connections on its own, and a plain id() could be reused.
        self._identities: weakref.WeakKeyDictionary[Connection, ServerIdentity] = weakref.WeakKeyDictionary()
        self.stats = DBStats()
        self.primary_position = PrimaryPosition(self._primary_gtid_position)

    # -- public API -------------------------------------------------------------

    async def read(self, query: Query[T], *, gtid: str | None = None) -> Served[T]:
        """Run a read-only ``query`` on the best endpoint available.

        ``gtid`` is the client's last write (already validated); a replica serves
        the read only once it has applied that GTID, or as much of it as the
        primary has.
        """
        writer = self._cfg.writer
        if gtid is not None and self._cfg.readers:
            bounded = await self.primary_position.bound(gtid)
            if bounded != gtid:
                self.stats.ryw_clamps += 1
                log.info("read-your-writes GTID %s beyond the primary's position: waiting for %s", gtid, bounded)
            gtid = bounded
        queue = self._read_order()
        tried: set[str] = set()
        retried: set[str] = set()
        stale_ok: set[str] = set()
        while queue:
            endpoint = queue.pop(0)
            tried.add(endpoint.name)
            wait_for = gtid if endpoint is not writer and endpoint.name not in stale_ok else None
            try:
                served = await self._read_on(endpoint, query, wait_for)
            except Exception as exc:
                if not is_endpoint_error(exc):
                    raise
                if isinstance(exc, BrokenSession) and endpoint.name not in retried:
                    log.info("retrying read on %s with a fresh connection: %s", endpoint.name, exc)
                    retried.add(endpoint.name)
                    queue.insert(0, endpoint)
                    continue
                self._mark_suspect(endpoint, exc)
                if queue:
                    self.stats.reader_fallbacks += 1
                continue
            if served is None:
                # The replica is behind the client's own write: ask the writer, which
                # has it.  Keep this replica as a stale last resort, because an old
                # page beats an error page when the writer is down too.
                self.stats.ryw_fallbacks += 1
                stale_ok.add(endpoint.name)
                rest = [e for e in queue if e is not writer]
                queue = [writer] if writer.name not in tried else []
                queue += [*rest, endpoint]
                continue
            if endpoint.name in stale_ok:
                log.warning("served a read from lagging %s without read-your-writes", endpoint.name)
            self._suspect_until.pop(endpoint.name, None)
            self.stats.reads += 1
            return served
        self.stats.unavailable += 1
        raise DBUnavailable("no database endpoint could serve the read")

    async def write(self, statement: Query[T]) -> Served[T]:
        """Run ``statement`` in a transaction on the writer and return its GTID.

        A connection that dies *before* COMMIT was sent (typically a pooled
        connection the server closed on restart) is retried once on a fresh one:
        nothing was committed, so that cannot duplicate the write.  So is a write
        a read-only server refused (error 1290, even at COMMIT): refused means not
        applied.  That one also makes the writer suspect and drops its idle pooled
        connections, which may all lead to the same demoted server.
        """
        endpoint = self._cfg.writer
        # During a failover or switchover there is briefly no writable primary: a write that certainly
        # was not applied is retried (with a short backoff) for up to write_retry_seconds, so clients see
        # a pause, not an error.
        deadline = time.monotonic() + self._cfg.write_retry_seconds
        attempt = 0
        while True:
            attempt += 1
            committing = committed = False
            value: Any = None
            gtid: str | None = None
            server: str | None = None
            try:
                async with (
                    asyncio.timeout(self._timeout),
                    self._session(endpoint) as conn,
                    conn.cursor() as cur,
                ):
                    server = self._server_name(conn)
                    await conn.begin()
                    value = await statement(cur)
                    committing = True
                    await conn.commit()
                    committed = True
                    # @@last_gtid is per session: read it on the same connection.
                    await cur.execute("SELECT @@last_gtid")
                    row = await cur.fetchone()
                    gtid = str(row[0]) if row and row[0] else None
            except Exception as exc:
                if not is_endpoint_error(exc):
                    raise
                refused = not committed and is_read_only_refusal(exc)
                if refused:
                    self.stats.read_only_refusals += 1
                if committed:
                    # The write is durable; only its GTID got lost.  The client simply
                    # gets no read-your-writes cookie this time.
                    log.warning("write committed on %s but @@last_gtid failed: %s", endpoint.name, exc)
                elif refused and (attempt == 1 or time.monotonic() < deadline):
                    # The endpoint reached a server that is (no longer) the primary.
                    self._mark_suspect(endpoint, exc)
                    await self._drop_idle(endpoint)
                    log.warning(
                        "write via %s refused by read-only server %s, retrying on a fresh connection",
                        endpoint.name,
                        server or "(unidentified)",
                    )
                    await self._write_backoff(attempt)
                    continue
                elif isinstance(exc, BrokenSession) and not committing and attempt == 1:
                    log.info("retrying write on %s with a fresh connection: %s", endpoint.name, exc)
                    continue
                elif not committing and time.monotonic() < deadline:
                    # Nothing reached COMMIT: safe to try again once a primary is there.
                    log.info("no writer via %s yet (%s); retrying", endpoint.name, exc)
                    await self._write_backoff(attempt)
                    continue
                else:
                    self._mark_suspect(endpoint, exc)
                    self.stats.unavailable += 1
                    raise DBUnavailable(f"writer {endpoint.name} unavailable: {exc}") from exc
            self._suspect_until.pop(endpoint.name, None)
            self.stats.writes += 1
            self.primary_position.saw(gtid)
            return Served(value, endpoint.name, gtid, server)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _write_backoff(attempt: int) -> None:
        if attempt > 1:
            await asyncio.sleep(min(0.05 * 2 ** (attempt - 2), 0.4))

    def suspects(self) -> list[str]:
        """Names of endpoints currently considered suspect."""
        now = time.monotonic()
        return [name for name, until in self._suspect_until.items() if until > now]

    def pool_in_use(self) -> dict[str, int]:
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

    # -- internals --------------------------------------------------------------

    def _read_order(self) -> list[DBEndpoint]:
        """Readers in preference order, then the writer; suspects moved to the back."""
        candidates = [*self._cfg.readers, self._cfg.writer]
        now = time.monotonic()
        healthy = [e for e in candidates if self._suspect_until.get(e.name, 0.0) <= now]
        suspect = [e for e in candidates if self._suspect_until.get(e.name, 0.0) > now]
        return healthy + suspect

    def _mark_suspect(self, endpoint: DBEndpoint, exc: BaseException) -> None:
        seconds = self._cfg.suspect_seconds
        log.warning("database endpoint %s failed, suspect for %ss: %r", endpoint.name, seconds, exc)
        self._suspect_until[endpoint.name] = time.monotonic() + self._cfg.suspect_seconds

    async def _read_on(self, endpoint: DBEndpoint, query: Query[T], wait_for: str | None) -> Served[T] | None:
        """One read attempt on one endpoint; ``None`` if it has not caught up with ``wait_for``."""
        async with asyncio.timeout(self._timeout), self._session(endpoint) as conn, conn.cursor() as cur:
            identity = self._identities.get(conn)
            if wait_for is not None:
                if identity is not None and not identity.read_only:
                    # The proxy routed this read to the primary, which has every
                    # committed write; MASTER_GTID_WAIT there would watch
                    # gtid_slave_pos and time out.
                    self.stats.ryw_skips += 1
                elif not await self._caught_up(cur, wait_for):
                    return None
            return Served(await query(cur), endpoint.name, server=identity.name if identity else None)

    async def _primary_gtid_position(self) -> str | None:
        """``@@gtid_binlog_pos`` of the server behind the writer endpoint (raises if it cannot be read)."""
        async with (
            asyncio.timeout(self._cfg.connect_timeout_seconds + 1.0),
            self._session(self._cfg.writer) as conn,
            conn.cursor() as cur,
        ):
            await cur.execute("SELECT @@gtid_binlog_pos")
            row = await cur.fetchone()
        return str(row[0]) if row and row[0] else None

    def _server_name(self, conn: Connection) -> str | None:
        identity = self._identities.get(conn)
        return identity.name if identity else None

    async def _identify(self, conn: Connection, endpoint: DBEndpoint) -> ServerIdentity:
        """Ask a new connection which server it reached."""
        async with conn.cursor() as cur:
            try:
                await cur.execute(IDENTIFY_SQL)
                row = await cur.fetchone()
            except MySQLError as exc:
                if not _is_server_error(exc):
                    raise
                # The server is up but will not say: keep the endpoint's name and
                # assume read-only (the cautious choice for read-your-writes).
                log.warning("could not identify the server behind %s: %s", endpoint.name, exc)
                row = None
        return parse_identity(row, endpoint.name)

    async def _drop_idle(self, endpoint: DBEndpoint) -> None:
        """Close the endpoint's idle pooled connections, so the next checkout is a fresh connection."""
        pool = self._pools.get(endpoint.name)
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.clear(), timeout=self._cfg.connect_timeout_seconds)
        except Exception as exc:
            # Whatever is left will fail on use and be discarded then.
            log.info("could not drop idle connections of %s: %r", endpoint.name, exc)

    async def _caught_up(self, cur: Cursor, gtid: str) -> bool:
        """Wait up to ``ryw_wait_seconds`` for this replica to apply ``gtid``."""
        self.stats.ryw_waits += 1
        try:
            await cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (gtid, self._cfg.ryw_wait_seconds))
            row = await cur.fetchone()
        except MySQLError as exc:
            if not _is_server_error(exc):
                raise
            # The server refused the GTID (e.g. unknown to its gtid_strict_mode
            # view): the replica cannot vouch for it, the writer can.
            log.info("MASTER_GTID_WAIT(%r) failed: %s", gtid, exc)
            return False
        # 0 = applied, -1 = timed out, NULL = error inside the function.
        return row is not None and row[0] == 0

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
    async def _session(self, endpoint: DBEndpoint) -> AsyncIterator[Connection]:
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
