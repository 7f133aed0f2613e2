"""The message board's data: the ``entries`` table and the SQL that touches it.

Routing, failover and read-your-writes are :mod:`webinfra.site.db`'s business;
this module only knows the queries (all parameterised) and the row type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncmy.cursors import Cursor

from webinfra.site.db import Database, Served

_SELECT = "SELECT id, text, author_host, created_at FROM entries"


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

    async def create(self, text: str) -> Served[Entry]:
        """Store a new entry written through this host."""
        # The timestamp is taken here, in UTC, rather than from the column default:
        # DATETIME has no zone, and a session time_zone would make it ambiguous.
        created_at = datetime.now(UTC)

        async def statement(cur: Cursor) -> Entry:
            await cur.execute(
                "INSERT INTO entries (text, author_host, created_at) VALUES (%s, %s, %s)",
                (text, self.host, created_at.replace(tzinfo=None)),
            )
            return Entry(int(cur.lastrowid), text, self.host, created_at)

        return await self.db.write(statement)

    async def delete(self, entry_id: int) -> Served[bool]:
        """Delete an entry; the value says whether it existed."""

        async def statement(cur: Cursor) -> bool:
            await cur.execute("DELETE FROM entries WHERE id = %s", (entry_id,))
            return bool(cur.rowcount)

        return await self.db.write(statement)
