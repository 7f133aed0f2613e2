"""Events: every state change webinfra causes or sees, one JSON object per line in <cluster>/events.jsonl
(`{"ts", "source", "host", "kind", "detail"}`). Agents append to the same file. On servers each server keeps
its own (the agents' failovers on the DB servers, the watcher's on the monitoring server, under
/var/lib/webinfra): `gather` merges them with this machine's (the commands') in time order."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webinfra.errors import WebinfraError
from webinfra.parallel import map_ordered
from webinfra.state import Layout, ServerLayout

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster


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
        return parse(path.read_text())
    except FileNotFoundError:
        return []


def parse(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return out


def gather(cluster: Cluster) -> list[dict[str, Any]]:
    """This machine's events and, on servers, each server's own (read over SSH, all at once), in time order
    (the timestamps are UTC ISO 8601 with milliseconds, so they sort as text). A server that cannot be read
    adds nothing: the log shows what can be seen, `status` says what is unreachable."""
    local = read(cluster.layout.events_file)
    if not cluster.servers:
        return local
    path = ServerLayout().events_file

    def remote(name: str) -> list[dict[str, Any]]:
        try:
            text = cluster.hosts[name].read_file(path)
        except (OSError, WebinfraError):  # unreachable, or a failed `cat`
            return []
        return parse(text or "")

    merged = local + [e for found in map_ordered(remote, [h.name for h in cluster.topology.hosts]) for e in found]
    return sorted(merged, key=lambda e: str(e.get("ts", "")))


def follow_gathered(cluster: Cluster, poll: float = 2.0) -> Iterator[dict[str, Any]]:
    """`gather`'s events as they come (servers: every server asked again each `poll` seconds)."""
    seen = {json.dumps(e, sort_keys=True) for e in gather(cluster)}
    while True:
        time.sleep(poll)
        for event in gather(cluster):
            key = json.dumps(event, sort_keys=True)
            if key not in seen:
                seen.add(key)
                yield event


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
