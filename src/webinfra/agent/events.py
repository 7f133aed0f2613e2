"""The cluster's event log: JSON lines appended to `events_file` (shared by every host's agent).

One `os.write` of one line on an O_APPEND descriptor, so lines from agents writing at once never
interleave. Writing an event never fails the agent: the log is for people, not for decisions.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("webinfra.agent")

KINDS = frozenset(
    {
        "promoted",
        "demoted",
        "fenced",
        "released",
        "following",
        "reclone_started",
        "reclone_done",
        "reclone_failed",
        "errant_transactions",
        "semi_sync_fallback",
        "semi_sync_restored",
        "switchover",
        "mariadb_restarted",
    }
)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventLog:
    def __init__(self, path: Path, host: str) -> None:
        self.path = path
        self.host = host

    def append(self, kind: str, detail: str) -> None:
        assert kind in KINDS, kind
        line = json.dumps({"ts": utc_now(), "source": "agent", "host": self.host, "kind": kind, "detail": detail})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot append event to %s: %s", self.path, exc)
