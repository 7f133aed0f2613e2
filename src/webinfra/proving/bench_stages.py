"""Stages of a DB failover from the events log, for `webinfra bench --failover`: seconds after the fault
at which the old primary let go (released, fenced or demoted), the replica stopped receiving, it was
promoted, and it acknowledged alone (semi-sync fallback), next to the first successful write the bench saw.
The rest of the first write (after the promotion) is routing (dbproxy's and the LB's checks) and the
app's retry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Stage name -> (event kinds, whose host: the old or the new primary).
STAGES: tuple[tuple[str, frozenset[str], str], ...] = (
    ("old primary let go", frozenset({"released", "fenced", "demoted"}), "old"),
    ("IO thread stopped", frozenset({"stop_receiving"}), "new"),
    ("promoted", frozenset({"promoted"}), "new"),
    ("async", frozenset({"semi_sync_fallback"}), "new"),
)


@dataclass(frozen=True)
class DbStages:
    fault: str  # "crash" or "partition"
    run: int
    old: str
    new: str
    at: dict[str, float | None]  # stage -> seconds after the fault (None: no such event)
    first_write: float


def _ts(event: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(event.get("ts", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def stages_of(
    events: Iterable[dict[str, Any]],
    *,
    fault: str,
    run: int,
    at: datetime,
    old: str,
    new: str,
    first_write: float,
    window: float = 30.0,
) -> DbStages:
    """The first event of each stage within `window` seconds after the fault at `at` (aware UTC)."""
    found: dict[str, float | None] = {name: None for name, _, _ in STAGES}
    for event in events:
        when = _ts(event)
        if when is None:
            continue
        offset = (when - at).total_seconds()
        if not 0 <= offset <= window:
            continue
        for name, kinds, whose in STAGES:
            host = old if whose == "old" else new
            if event.get("kind") in kinds and event.get("host") == host and found[name] is None:
                found[name] = offset
    return DbStages(fault, run, old, new, found, first_write)


def stages_markdown(rows: list[DbStages]) -> str:
    if not rows:
        return ""
    names = [name for name, _, _ in STAGES]
    lines = [
        "Stages (seconds after the fault, from the events log; first write as the bench saw it):",
        "",
        "| fault | run | " + " | ".join(names) + " | first write |",
        "|---|---:|" + "---:|" * (len(names) + 1),
    ]
    for r in rows:
        cells = ["—" if r.at[n] is None else f"{r.at[n]:.2f}" for n in names]
        lines.append(f"| {r.fault} ({r.old} → {r.new}) | {r.run} | " + " | ".join(cells) + f" | {r.first_write:.2f} |")
    return "\n".join(lines) + "\n"
