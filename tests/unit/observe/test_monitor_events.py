"""The watcher's pure part: which events two successive looks at a cluster make (observe/monitor.py), and the
live view's rates (observe/live.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from webinfra.observe.live import rates, tail_events
from webinfra.observe.monitor import View, advance, backend_state, vip_moves

UP = {"web-01": "up", "web-02": "up"}
RUNNING = {"web-01/app": True, "web-02/app": True}


def view(
    backends: dict[str, str] = UP, vip: str | None = None, primary: str | None = "web-01", **services: bool
) -> View:
    return View(backends=backends, vip_holder=vip, primary=primary, services={**RUNNING, **services})


def test_the_first_look_is_the_baseline() -> None:
    found, state = advance(None, view(backends={"web-01": "down", "web-02": "up"}))
    assert found == [] and state.backends["web-01"] == "down"


def test_nothing_changed_nothing_recorded() -> None:
    assert advance(view(), view())[0] == []


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("up", "down", [("backend_down", "web-02", "up -> down")]),
        ("down", "up", [("backend_up", "web-02", "down -> up")]),
        ("up", "maint", [("backend_maint", "web-02", "up -> maint")]),
        ("maint", "up", [("backend_up", "web-02", "maint -> up")]),
        ("up", "drain", [("backend_drain", "web-02", "up -> drain")]),
    ],
)
def test_backend_state_changes(before: str, after: str, expected: list[tuple[str, str, str]]) -> None:
    found, _ = advance(view({**UP, "web-02": before}), view({**UP, "web-02": after}))
    assert found == expected


def test_an_unknown_state_keeps_the_last_known_one() -> None:
    """No LB answered for a while: no event then, and a change is reported once when it is seen again."""
    found, state = advance(view(), view({"web-01": "unknown", "web-02": "unknown"}))
    assert found == [] and state.backends == UP
    found, state = advance(state, view({**UP, "web-02": "down"}))
    assert found == [("backend_down", "web-02", "up -> down")]
    found, _ = advance(state, view({"web-01": "unknown", "web-02": "down"}))
    assert found == []


def test_the_vip_moving() -> None:
    found, state = advance(view(vip="lb-01"), view(vip="lb-02"))
    assert found == [("vip_moved", "lb-02", "lb-01 -> lb-02")]
    assert vip_moves(found[0])
    found, state = advance(state, view(vip=None))
    assert found == [("vip_moved", "lb-02", "lb-02 -> nobody")] and not vip_moves(found[0])
    found, _ = advance(state, view(vip="lb-01"))
    assert found == [("vip_moved", "lb-01", "nobody -> lb-01")] and vip_moves(found[0])


def test_a_new_primary_but_not_the_gap_between_two() -> None:
    found, state = advance(view(primary="web-01"), view(primary=None))
    assert found == [] and state.primary == "web-01"  # a failover in progress: no primary for a moment
    found, state = advance(state, view(primary="web-02"))
    assert found == [("primary_changed", "web-02", "web-01 -> web-02")]
    assert advance(state, view(primary="web-02"))[0] == []


def test_services_stopping_and_starting() -> None:
    found, state = advance(view(), view(**{"web-02/app": False}))
    assert found == [("service_stopped", "web-02", "app")]
    found, _ = advance(state, view())
    assert found == [("service_started", "web-02", "app")]


def test_several_changes_in_one_look() -> None:
    after = View(
        backends={"web-01": "up", "web-02": "down"},
        vip_holder="lb-02",
        primary="web-02",
        services={"web-01/app": True, "web-02/app": False},
    )
    found, _ = advance(view(vip="lb-01"), after)
    assert [kind for kind, _, _ in found] == ["backend_down", "vip_moved", "primary_changed", "service_stopped"]


@pytest.mark.parametrize(
    ("status", "state"),
    [("UP", "up"), ("UP 1/2", "up"), ("DOWN", "down"), ("DOWN 1/2", "down"), ("MAINT", "maint"), ("NOLB", "drain")],
)
def test_haproxy_status_words(status: str, state: str) -> None:
    assert backend_state(status) == state


# ---- the live view ----


def test_rates_between_two_readings() -> None:
    before = {"web-01": (100, 0), "web-02": (50, 1)}
    after = {"web-01": (300, 0), "web-02": (150, 11), "web-03": (5, 0)}
    r = rates(before, after, 2.0)
    assert r["web-01"] == {"rps": 100.0, "error_ratio": 0.0}
    assert r["web-02"] == {"rps": 50.0, "error_ratio": 0.1}
    assert r["web-03"] == {"rps": None, "error_ratio": None}  # not in the first reading


def test_a_restarted_haproxy_gives_no_rate() -> None:
    r = rates({"web-01": (1000, 5)}, {"web-01": (10, 0)}, 1.0)
    assert r["web-01"] == {"rps": None, "error_ratio": None}


def test_no_requests_no_error_ratio() -> None:
    assert rates({"web-01": (10, 0)}, {"web-01": (10, 0)}, 1.0)["web-01"] == {"rps": 0.0, "error_ratio": None}


def test_tail_events_reads_only_the_end(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    assert tail_events(path) == []
    lines = [json.dumps({"kind": "k", "detail": str(i) * 50}) for i in range(2000)]
    path.write_text("\n".join(lines) + "\n" + '{"kind": "half-writ')
    events = tail_events(path, n=5, window=4096)
    # The last 5 lines, of which the one being written is skipped.
    assert [e["detail"] for e in events] == [str(i) * 50 for i in range(1996, 2000)]


def test_certificate_expiry_dates_for_the_alert(tmp_path: Path) -> None:
    """With TLS, the watcher exports when each certificate webinfra made expires (CertificateExpiringSoon)."""
    import time
    from types import SimpleNamespace

    from topology_cases import GOOD

    from webinfra.model import parse_topology
    from webinfra.observe.monitor import cert_expiries
    from webinfra.services import pki
    from webinfra.state import Layout

    topo = parse_topology(GOOD)  # TLS on by default
    layout = Layout.for_cluster(topo.name, tmp_path)
    assert cert_expiries(SimpleNamespace(layout=layout, topology=topo)) == {}  # nothing issued yet
    pki.ensure_pki(topo, layout)
    found = cert_expiries(SimpleNamespace(layout=layout, topology=topo))
    assert set(found) == {"ca", "site", "web-01", "web-02"}
    days = {name: (at - time.time()) / 86400 for name, at in found.items()}
    assert 3600 < days["ca"] < 3651 and 800 < days["site"] < 826


def test_only_one_in_process_watcher_records(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from webinfra.observe.monitor import recorder_lock
    from webinfra.state import Layout

    cluster = SimpleNamespace(layout=Layout(tmp_path))
    with recorder_lock(cluster) as first, recorder_lock(cluster) as second:
        assert (first, second) == (True, False)
    with recorder_lock(cluster) as again:
        assert again  # released
    with recorder_lock(SimpleNamespace(layout=Layout(tmp_path / "gone"))) as none:
        assert not none


def test_status_watch_draws_a_frame() -> None:
    from rich.console import Console

    from webinfra.cli.watch import render_frame

    backend = {"name": "web-01", "state": "up", "weight": 1, "check": "L7OK", "rps": 12.5, "error_ratio": 0.02}
    node = {"name": "web-01", "role": "primary", "reachable": True, "io_running": None, "sql_running": None}
    frame = {
        "taken_at": 1_800_000_000.0,
        "status": {
            "cluster": "t",
            "site_url": "http://198.18.0.10/",
            "faults": {"web-02": "host down"},
            "hosts": [
                {"name": "lb-01", "address": "198.18.0.10", "roles": ["lb"], "services": []},
                {"name": "web-02", "address": "198.18.0.12", "roles": ["web"], "services": []},
            ],
            "lb": {"host": "lb-01", "vip": "198.18.0.100", "vip_holder": "lb-01", "backends": [backend]},
            "db": {"nodes": [{**node, "lag_seconds": None, "gtid": "0-11-5", "error": None}]},
        },
        "site": {"rps": 12.5, "p99_seconds": 0.0123},
        "prometheus": {"available": True, "error": None},
        "alerts": [{"name": "BackendDown", "state": "firing", "host": "lb-01", "summary": "web-02 is down"}],
        "events": [{"ts": "2026-11-30T01:54:18.647+00:00", "host": "web-02", "kind": "backend_down", "detail": "x"}],
    }
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(render_frame(frame))
    text = console.export_text()
    for expected in ("12.5 req/s", "p99 12 ms", "VIP 198.18.0.100 on lb-01", "lb-01 (VIP)", "2.0%", "fault:"):
        assert expected in text, expected
    assert "BackendDown" in text and "backend_down" in text and "01:54:18" in text
