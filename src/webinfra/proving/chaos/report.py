"""What a chaos run measured, computed from the load's record (pure), and shown as a table, JSON or Markdown.

Times are seconds since the load began. `Marks` says when the fault was injected (`fault_at`), when it was
undone (`undone_at`) and when the run ended. Definitions (also in docs/RESILIENCE.md):

- availability: successful requests / all requests of the run, in percent (the load is paced, so requests
  are spread evenly over time and a fast-failing outage does not count more than a slow one);
  `availability_during`: the same over requests started while the fault was in force.
- recovery_seconds: from the injection until the site served again: the outage is the run of failed requests
  from the injection on in which each failure started less than 2 s (QUIET_GAP) after the previous one (or
  the injection); L is the start of its last failure (the injection itself if nothing failed). Recovery is
  the moment the first successful read and the first successful write started at or after L had both
  completed, minus the injection time. None when that did not happen before the fault was undone (the
  design did not recover by itself). Failures after the outage still count in the failed requests and the
  availability. For `full-restart` the fault is "down, then up", so the window runs to the end.
- restored_seconds: the same, from the moment the fault was undone, for runs that did not recover by
  themselves.
- latency: p50 / p99 of successful requests started before the fault, while in force, and after it was undone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table

from webinfra.proving.loadgen import Sample


@dataclass(frozen=True)
class Marks:
    fault_at: float
    undone_at: float
    end: float
    recovery_window_end: float | None = None  # default: undone_at (a fault the design should survive)


@dataclass
class ChaosResult:
    scenario: str
    design: str  # e.g. "hardened" or "seed", or the topology file
    cluster: str
    runs_on: str = "emulated"  # where the cluster runs: "emulated" (network namespaces) or "servers" (over SSH)
    applicable: bool = True
    reason: str = ""  # why not applicable
    target: str = ""  # what was broken, in words
    fault: str = ""  # what `fail` reported
    requests_ok: int = 0
    requests_failed: int = 0
    reads_failed: int = 0
    writes_ok: int = 0
    writes_failed: int = 0
    keyed_writes: int = 0  # POSTs sent with an Idempotency-Key (a share of the writes)
    keyed_writes_failed: int = 0  # of those, how many got no 201 (HAProxy may retry them; counted in writes too)
    availability: float | None = None  # percent
    availability_during: float | None = None
    recovery_seconds: float | None = None
    restored_seconds: float | None = None
    last_failure_seconds: float | None = None
    fault_seconds: float = 0.0
    latency_ms: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    acked_writes: int = 0
    acked_writes_lost: int | None = None
    lost_ids: list[int] = field(default_factory=list)
    split_brain_windows: int = 0
    split_brain_polls: int = 0
    primary_before: str | None = None
    primary_after: str | None = None
    vip_before: str | None = None
    vip_after: str | None = None
    marks: dict[str, float] = field(default_factory=dict)
    png: str | None = None
    error: str = ""  # the run itself failed (e.g. the cluster did not become healthy again)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def percentile_ms(latencies: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of latencies in seconds, in ms (None when empty)."""
    if not latencies:
        return None
    ordered = sorted(latencies)
    value = ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]
    return round(value * 1000, 1)


def _first_ok_after(samples: Sequence[Sample], method: str, t: float) -> float | None:
    ends = [s.started + s.latency for s in samples if s.ok and s.method == method and s.started >= t]
    return min(ends) if ends else None


QUIET_GAP = 2.0  # seconds without a failure that end an outage


def outage_end(failures: Sequence[float], start: float, gap: float = QUIET_GAP) -> float:
    """Start time of the last failure of the outage that begins at `start`: failures (start times) belong to it
    while each follows the previous one (or `start`) by less than `gap` seconds."""
    last = start
    for t in sorted(failures):
        if t - last >= gap:
            break
        last = max(last, t)
    return last


def served_again(samples: Sequence[Sample], start: float, end: float, gap: float = QUIET_GAP) -> float | None:
    """Seconds after `start` at which the site served again within [start, end) (see module doc)."""
    window = [s for s in samples if start <= s.started < end]
    last_failure = outage_end([s.started for s in window if not s.ok], start, gap)
    read = _first_ok_after(window, "GET", last_failure)
    write = _first_ok_after(window, "POST", last_failure)
    if read is None or write is None:
        return None
    done = max(read, write)
    return round(done - start, 3) if done <= end else None


def summarize(result: ChaosResult, samples: Sequence[Sample], marks: Marks) -> ChaosResult:
    """Fill in the request counts, availability, recovery and latency figures of `result`."""
    ok = [s for s in samples if s.ok]
    failed = [s for s in samples if not s.ok]
    result.requests_ok, result.requests_failed = len(ok), len(failed)
    result.reads_failed = sum(1 for s in failed if s.method == "GET")
    result.writes_failed = sum(1 for s in failed if s.method == "POST")
    result.writes_ok = sum(1 for s in ok if s.method == "POST")
    result.keyed_writes = sum(1 for s in samples if s.keyed)
    result.keyed_writes_failed = sum(1 for s in failed if s.keyed)
    result.availability = _pct(len(ok), len(samples))
    during = [s for s in samples if marks.fault_at <= s.started < marks.undone_at]
    result.availability_during = _pct(sum(1 for s in during if s.ok), len(during))
    window_end = marks.recovery_window_end if marks.recovery_window_end is not None else marks.undone_at
    result.recovery_seconds = served_again(samples, marks.fault_at, window_end)
    if result.recovery_seconds is None and window_end < marks.end:
        result.restored_seconds = served_again(samples, marks.undone_at, marks.end)
    late = [s.started for s in failed if s.started >= marks.fault_at]
    result.last_failure_seconds = round(max(late) - marks.fault_at, 3) if late else None
    result.fault_seconds = round(marks.undone_at - marks.fault_at, 3)
    windows = {
        "before": (0.0, marks.fault_at),
        "during": (marks.fault_at, marks.undone_at),
        "after": (marks.undone_at, math.inf),
    }
    for name, (lo, hi) in windows.items():
        lat = [s.latency for s in ok if lo <= s.started < hi]
        result.latency_ms[name] = {"p50": percentile_ms(lat, 50), "p99": percentile_ms(lat, 99), "n": len(lat)}
    result.marks = {"fault_at": round(marks.fault_at, 3), "undone_at": round(marks.undone_at, 3), "end": marks.end}
    return result


# ---- presentation ----
def _num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def _lat(result: ChaosResult, window: str) -> str:
    w = result.latency_ms.get(window) or {}
    p50, p99 = w.get("p50"), w.get("p99")
    return "—" if p50 is None else f"{p50:.0f} / {p99:.0f}"


def recovery_text(r: ChaosResult) -> str:
    if r.recovery_seconds is not None:
        return f"{r.recovery_seconds:.2f} s"
    if r.restored_seconds is not None:
        return f"no (held {r.fault_seconds:.0f} s; {r.restored_seconds:.1f} s after undo)"
    return f"no (held {r.fault_seconds:.0f} s)"


def row(r: ChaosResult) -> list[str]:
    """One row of the summary table (the same columns in the terminal and in Markdown)."""
    if not r.applicable:
        return [r.scenario, f"not applicable: {r.reason}", *["—"] * 10]
    if r.error:
        return [r.scenario, r.target, *["—"] * 9, f"error: {r.error}"]
    return [
        r.scenario,
        r.target,
        str(r.requests_ok),
        f"{r.requests_failed} ({r.reads_failed} r / {r.writes_failed} w"
        + (f", {r.keyed_writes_failed} of {r.keyed_writes} keyed w)" if r.keyed_writes else ")"),
        _num(r.availability, 1, " %"),
        _num(r.availability_during, 1, " %"),
        recovery_text(r),
        _lat(r, "before"),
        _lat(r, "during"),
        _lat(r, "after"),
        "—" if r.acked_writes_lost is None else f"{r.acked_writes_lost} of {r.acked_writes}",
        str(r.split_brain_windows),
    ]


HEADERS = [
    "scenario",
    "fault",
    "ok",
    "failed (reads / writes)",
    "availability",
    "during fault",
    "recovered",
    "p50/p99 ms before",
    "during",
    "after",
    "acked writes lost",
    "2 primaries",
]


def rich_table(results: Sequence[ChaosResult], title: str = "") -> Any:
    table = Table(*HEADERS, title=title or None)
    for r in results:
        cells = row(r)
        if r.applicable and not r.error and (r.acked_writes_lost or r.split_brain_windows):
            cells = [f"[red]{c}[/]" for c in cells]
        table.add_row(*cells)
    return table


def markdown_table(results: Sequence[ChaosResult]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * 2 + "---:|" * (len(HEADERS) - 2)]
    for r in results:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row(r)) + " |")
    return "\n".join(lines) + "\n"


def to_json(results: Sequence[ChaosResult] | ChaosResult) -> str:
    if isinstance(results, ChaosResult):
        return json.dumps(results.to_json(), indent=2)
    return json.dumps([r.to_json() for r in results], indent=2)
