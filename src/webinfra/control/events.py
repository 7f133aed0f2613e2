"""Events: every state change webinfra causes or sees, one JSON object per line in <cluster>/events.jsonl
(`{"ts", "source", "host", "kind", "detail"}`). Agents append to the same file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from webinfra.state import Layout


def record(layout: Layout, kind: str, host: str = "", detail: str = "", source: str = "webinfra") -> dict[str, Any]:
    event = {
        # The same form as the agents' events (UTC, "Z"), so they sort and read alike.
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "source": source,
        "host": host,
        "kind": kind,
        "detail": detail,
    }
    path = layout.events_file
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write() per line in append mode: lines from several writers never interleave.
    with open(path, "a") as f:
        f.write(json.dumps(event) + "\n")
    return event


def read(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return out


def follow(path: Path, poll: float = 0.2) -> Iterator[dict[str, Any]]:
    """Yield events as they are appended (like `tail -f`), starting at the end of the file."""
    offset = path.stat().st_size if path.exists() else 0
    buffer = ""
    while True:
        if path.exists():
            with open(path) as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
            buffer += chunk
            while "\n" in buffer:
                line, buffer = buffer.split("\n", 1)
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
        time.sleep(poll)
