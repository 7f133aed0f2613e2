"""Read-your-writes bounds: a client's GTID never asks for more than the primary has.

``MASTER_GTID_WAIT`` on a replica compares sequence numbers per replication domain.  A GTID beyond what the
primary has written (a write lost in a failover, a cookie from another incarnation of the cluster) would make
every read carrying it hold a replica connection for the whole wait and then go to the writer.  So before a
read waits, its GTID is clamped to the primary's position: per domain, the sequence number at most the
primary's; a domain the primary does not have is dropped.

:class:`PrimaryPosition` keeps the latest position seen (this server's own writes, and the primary's
``@@gtid_binlog_pos`` when asked) and asks the primary again only when a GTID goes beyond it; concurrent
asks share one query.  "Latest", not "highest": after a failover the new primary may be behind a write the
old one lost, and the last thing seen is the best guess of the current primary's position.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from webinfra.site.validation import parse_gtid

log = logging.getLogger(__name__)

#: domain -> (server id, sequence number)
Position = dict[int, tuple[int, int]]


def parse_position(gtid_list: str | None) -> Position:
    """A GTID list (``0-1-100,1-2-5``) as a position; empty for ``None``, ``""`` or anything malformed."""
    valid = parse_gtid(gtid_list) if gtid_list else None
    if valid is None:
        return {}
    position: Position = {}
    for gtid in valid.split(","):
        domain, server, seqno = (int(part) for part in gtid.split("-"))
        position[domain] = (server, seqno)
    return position


def format_position(position: Position) -> str | None:
    if not position:
        return None
    return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(position.items()))


def covers(known: Position, wanted: Position) -> bool:
    """True if ``known`` is at or past ``wanted`` in every domain ``wanted`` names."""
    return all(d in known and known[d][1] >= n for d, (_, n) in wanted.items())


def clamp(wanted: Position, primary: Position) -> Position:
    """``wanted`` limited to ``primary``: no domain the primary lacks, no sequence number beyond its own."""
    return {d: (s, min(n, primary[d][1])) for d, (s, n) in wanted.items() if d in primary}


class PrimaryPosition:
    """What the primary is known to have written, refreshed on demand.

    ``fetch`` asks the writer for ``@@gtid_binlog_pos`` (raising if it cannot).  When the primary cannot be
    asked, a GTID beyond the known position is left as it is: it is signed, so this server issued it, and
    a wait bounded by ``ryw_wait_seconds`` is better than a read that misses the client's own write.
    """

    def __init__(self, fetch: Callable[[], Awaitable[str | None]]) -> None:
        self._fetch = fetch
        self._known: Position = {}
        self._asking: asyncio.Future[None] | None = None
        self._asked_at = 0.0
        self._unreachable = False  # the last ask failed
        self.refreshes = 0  # asks that reached the primary (metrics, tests)

    def saw(self, gtid: str | None) -> None:
        """Record a GTID the primary has just written (one of this server's committed writes)."""
        self._known = {**self._known, **parse_position(gtid)}

    async def bound(self, gtid: str) -> str | None:
        """``gtid`` clamped to the primary's position (``None``: nothing of it is worth waiting for)."""
        wanted = parse_position(gtid)
        if not wanted:
            return None
        arrived = time.monotonic()
        while not covers(self._known, wanted):
            # One query serves every read that arrives while it runs; but an answer to a query that started
            # before this read arrived may predate the client's write, so only a later one is final.
            if self._asking is None or self._asking.done():
                self._asking, self._asked_at = asyncio.ensure_future(self._ask()), time.monotonic()
            asked_at = self._asked_at
            await asyncio.shield(self._asking)
            if asked_at >= arrived:
                break
        if self._unreachable and not covers(self._known, wanted):
            return gtid
        return format_position(clamp(wanted, self._known))

    async def _ask(self) -> None:
        try:
            answer = await self._fetch()
        except Exception as exc:  # an outage of the writer
            log.info("could not read the primary's GTID position: %r", exc)
            self._unreachable = True
            return
        self._unreachable = False
        self.refreshes += 1
        self._known = parse_position(answer)
