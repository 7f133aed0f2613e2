"""Database layer of the site: read/write routing, failover, read-your-writes.

* One asyncmy pool per MariaDB endpoint, created lazily on first use (site/dbconn.py: the pools, the
  sessions, which server a connection reached, what an error says about the endpoint).
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
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from asyncmy.cursors import Cursor
from asyncmy.errors import MySQLError

from webinfra.site.config import DBConfig, DBEndpoint
from webinfra.site.dbconn import (
    BrokenSession,
    DBUnavailable,
    Pools,
    is_endpoint_error,
    is_read_only_refusal,
    is_server_error,
)
from webinfra.site.ryw import PrimaryPosition

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A unit of database work: gets a cursor, runs parameterised SQL, returns a value.
Query = Callable[[Cursor], Awaitable[T]]


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


class Database:
    """Routes queries over the writer and readers described by a :class:`DBConfig`."""

    def __init__(self, config: DBConfig, password: str) -> None:
        self._cfg = config
        self._conns = Pools(config, password)
        self._suspect_until: dict[str, float] = {}
        self._timeout = config.query_timeout_seconds
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
                    self._conns.session(endpoint) as conn,
                    conn.cursor() as cur,
                ):
                    server = self._conns.server_name(conn)
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
                    await self._conns.drop_idle(endpoint)
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

    def pool_in_use(self) -> dict[str, int]:
        """Connections checked out of each endpoint's pool right now (0 where no pool exists yet): metrics."""
        return self._conns.in_use()

    async def close(self) -> None:
        """Close every pool; connections still in use are cut after a short grace period."""
        await self._conns.close()

    def suspects(self) -> list[str]:
        """Names of endpoints currently considered suspect."""
        now = time.monotonic()
        return [name for name, until in self._suspect_until.items() if until > now]

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
        async with asyncio.timeout(self._timeout), self._conns.session(endpoint) as conn, conn.cursor() as cur:
            identity = self._conns.identity(conn)
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
            self._conns.session(self._cfg.writer) as conn,
            conn.cursor() as cur,
        ):
            await cur.execute("SELECT @@gtid_binlog_pos")
            row = await cur.fetchone()
        return str(row[0]) if row and row[0] else None

    async def _caught_up(self, cur: Cursor, gtid: str) -> bool:
        """Wait up to ``ryw_wait_seconds`` for this replica to apply ``gtid``."""
        self.stats.ryw_waits += 1
        try:
            await cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (gtid, self._cfg.ryw_wait_seconds))
            row = await cur.fetchone()
        except MySQLError as exc:
            if not is_server_error(exc):
                raise
            # The server refused the GTID (e.g. unknown to its gtid_strict_mode
            # view): the replica cannot vouch for it, the writer can.
            log.info("MASTER_GTID_WAIT(%r) failed: %s", gtid, exc)
            return False
        # 0 = applied, -1 = timed out, NULL = error inside the function.
        return row is not None and row[0] == 0
