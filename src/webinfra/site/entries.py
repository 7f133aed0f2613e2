"""The message board's data: the ``entries`` table and the SQL that touches it.

Routing, failover and read-your-writes are :mod:`webinfra.site.db`'s business;
this module only knows the queries (all parameterised) and the row type.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncmy.cursors import Cursor
from asyncmy.errors import IntegrityError

from webinfra.site.db import Database, Served
from webinfra.site.dbconn import server_errno
from webinfra.site.validation import InputError

_SELECT = "SELECT id, text, author_host, created_at FROM entries"
#: ER_DUP_ENTRY: another request with the same idempotency key committed first.
ER_DUP_ENTRY = 1062
# The stored result of a keyed write, and the primary's position (which includes that write).
_STORED = (
    "SELECT entry_id, text_sha256, author_host, created_at, @@gtid_binlog_pos FROM idempotency_keys WHERE idem_key = %s"
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One message on the board."""

    id: int
    text: str
    author_host: str
    created_at: datetime  # UTC, timezone-aware

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Entry:
        """Build an entry from a ``_SELECT`` row (DATETIME comes back naive, in UTC)."""
        entry_id, text, author_host, created_at = row
        return cls(int(entry_id), str(text), str(author_host), created_at.replace(tzinfo=UTC))

    def to_json(self) -> dict[str, Any]:
        """The entry as the JSON API shows it."""
        return {
            "id": self.id,
            "text": self.text,
            "author_host": self.author_host,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Created:
    """What a POST made: the entry, and whether it is the stored result of an earlier request with its key."""

    entry: Entry
    replayed: bool = False


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


async def _stored_result(cur: Cursor, key: str, text: str) -> tuple[Created, str | None] | None:
    """The first result for ``key`` (and the primary's GTID position), or None if the key is new.

    The same key with another text is a client bug, not a retry: 422.
    """
    await cur.execute(_STORED, (key,))
    row = await cur.fetchone()
    if row is None:
        return None
    entry_id, text_sha256, author_host, created_at, position = row
    if bytes(text_sha256) != _digest(text):
        raise InputError(422, "this Idempotency-Key was already used for a different text")
    entry = Entry(int(entry_id), text, str(author_host), created_at.replace(tzinfo=UTC))
    return Created(entry, replayed=True), (str(position) if position else None)


class EntryStore:
    """Entries CRUD on top of a :class:`Database`, stamped with this app server's host."""

    def __init__(self, db: Database, host: str) -> None:
        self.db = db
        self.host = host

    async def latest(self, limit: int, *, gtid: str | None = None) -> Served[list[Entry]]:
        """The ``limit`` newest entries, newest first."""

        async def query(cur: Cursor) -> list[Entry]:
            await cur.execute(f"{_SELECT} ORDER BY id DESC LIMIT %s", (limit,))
            return [Entry.from_row(row) for row in await cur.fetchall()]

        return await self.db.read(query, gtid=gtid)

    async def get(self, entry_id: int, *, gtid: str | None = None) -> Served[Entry | None]:
        """The entry with ``entry_id``, or ``None``."""

        async def query(cur: Cursor) -> Entry | None:
            await cur.execute(f"{_SELECT} WHERE id = %s", (entry_id,))
            row = await cur.fetchone()
            return Entry.from_row(row) if row else None

        return await self.db.read(query, gtid=gtid)

    async def create(self, text: str, key: str | None = None) -> Served[Created]:
        """Store a new entry written through this host, exactly once per idempotency ``key``.

        With a key, the key and the entry's id are stored in the entry's transaction; a request whose key is
        already stored inserts nothing and gets the first result back (``replayed``), with a GTID position
        that includes the first write for read-your-writes.  Two requests with one key at once: the second
        one's key insert waits for the first's transaction and then fails as a duplicate, so it rolls back
        its own entry and answers with the first one's result.
        """
        # The timestamp is taken here, in UTC, rather than from the column default:
        # DATETIME has no zone, and a session time_zone would make it ambiguous.
        created_at = datetime.now(UTC)
        replay_position: list[str | None] = []

        def replay(found: tuple[Created, str | None]) -> Created:
            replay_position.append(found[1])
            return found[0]

        async def statement(cur: Cursor) -> Created:
            replay_position.clear()  # Database.write may run this more than once
            if key is not None and (found := await _stored_result(cur, key, text)) is not None:
                return replay(found)
            await cur.execute(
                "INSERT INTO entries (text, author_host, created_at) VALUES (%s, %s, %s)",
                (text, self.host, created_at.replace(tzinfo=None)),
            )
            entry = Entry(int(cur.lastrowid), text, self.host, created_at)
            if key is None:
                return Created(entry)
            try:
                await cur.execute(
                    "INSERT INTO idempotency_keys (idem_key, entry_id, text_sha256, author_host, created_at)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (key, entry.id, _digest(text), self.host, created_at.replace(tzinfo=None)),
                )
            except IntegrityError as exc:
                if server_errno(exc) != ER_DUP_ENTRY:
                    raise
                # Undo our entry; outside the transaction the other request's committed key is visible.
                await cur.execute("ROLLBACK")
                found = await _stored_result(cur, key, text)
                if found is None:  # pragma: no cover - a duplicate key error means the row is there
                    raise
                return replay(found)
            return Created(entry)

        served = await self.db.write(statement)
        if served.value.replayed:
            # Nothing was written: @@last_gtid is some older write of that pooled session.
            served = dataclasses.replace(served, gtid=replay_position[-1] if replay_position else None)
        return served

    async def delete(self, entry_id: int) -> Served[bool]:
        """Delete an entry; the value says whether it existed."""

        async def statement(cur: Cursor) -> bool:
            await cur.execute("DELETE FROM entries WHERE id = %s", (entry_id,))
            return bool(cur.rowcount)

        return await self.db.write(statement)
