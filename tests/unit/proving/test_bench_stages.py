"""bench --failover's stage table: the first event of each stage after the fault, per host."""

from __future__ import annotations

from datetime import UTC, datetime

from webinfra.proving.bench_stages import stages_markdown, stages_of

FAULT = datetime(2026, 12, 5, 16, 0, 0, tzinfo=UTC)


def ev(second: float, host: str, kind: str) -> dict[str, str]:
    ts = datetime.fromtimestamp(FAULT.timestamp() + second, UTC).isoformat(timespec="milliseconds")
    return {"ts": ts.replace("+00:00", "Z"), "host": host, "kind": kind, "detail": ""}


def test_stages_are_the_first_matching_event_of_the_right_host_after_the_fault() -> None:
    events = [
        ev(-5.0, "web-02", "promoted"),  # an earlier failover: not this one
        ev(2.4, "web-02", "stop_receiving"),
        ev(2.5, "web-01", "fenced"),
        ev(3.1, "web-02", "promoted"),
        ev(3.1, "web-02", "semi_sync_fallback"),
        ev(3.9, "web-01", "fenced"),  # a second fence: the first counts
        ev(4.0, "web-01", "promoted"),  # the wrong host for this stage
        {"ts": "garbage", "host": "web-02", "kind": "promoted"},
    ]
    r = stages_of(events, fault="partition", run=1, at=FAULT, old="web-01", new="web-02", first_write=3.6)
    assert r.at == {"old primary let go": 2.5, "IO thread stopped": 2.4, "promoted": 3.1, "async": 3.1}
    text = stages_markdown([r])
    assert "| partition (web-01 → web-02) | 1 | 2.50 | 2.40 | 3.10 | 3.10 | 3.60 |" in text
    crash = stages_of([], fault="crash", run=2, at=FAULT, old="web-01", new="web-02", first_write=1.0)
    assert "| — | — | — | — |" in stages_markdown([crash])
    assert stages_markdown([]) == ""
