"""The dashboard's history: the step and rate window per range, the events that become markers, the panels'
PromQL accepted by promtool, the /api/history endpoint's input checks, and the Grafana dashboard that ships
the same panels."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from starlette.testclient import TestClient
from topology_cases import GOOD, MON, PLAIN

from testkit import REPO
from webinfra.dashboard import grafana, history
from webinfra.dashboard.app import create_app
from webinfra.model import parse_topology

PROMTOOL = shutil.which("promtool")


@pytest.mark.parametrize(("minutes", "step", "window"), [(5, 2.0, "8s"), (15, 3.75, "8s"), (60, 15.0, "30s")])
def test_about_240_points_and_a_rate_window_over_several_scrapes(minutes: int, step: float, window: str) -> None:
    assert history.window(minutes, 2000) == (step, window)


def test_failovers_vip_moves_and_faults_become_markers() -> None:
    events = [
        {"ts": "2026-12-05T08:00:00.000Z", "kind": "fault_injected", "host": "web-02", "detail": "crash"},
        {"ts": "2026-12-05T08:00:01.000Z", "kind": "backend_down", "host": "web-02"},  # not a marker
        {"ts": "2026-12-05T08:00:05.500Z", "kind": "vip_moved", "host": "lb-02"},
        {"ts": "2026-12-05T08:00:09.000Z", "kind": "primary_changed", "host": "web-02", "detail": "from web-01"},
        {"ts": "2026-12-05T07:00:00.000Z", "kind": "vip_moved", "host": "lb-01"},  # before the range
        {"ts": "garbage", "kind": "vip_moved"},
    ]
    start = 1_796_457_000.0  # 2026-12-05T07:50:00Z
    found = history.markers(events, start, start + 900)
    assert [(m["kind"], m["host"], m["t"] - start) for m in found] == [
        ("fault_injected", "web-02", 600.0),
        ("vip_moved", "lb-02", 605.5),
        ("primary_changed", "web-02", 609.0),
    ]
    assert found[0]["text"] == "fault: web-02 (crash)" and found[2]["text"] == "failover: web-02 (from web-01)"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian: prometheus) not installed")
def test_promtool_accepts_every_panel_query(tmp_path: Path) -> None:
    rules = [{"record": f"webinfra:panel_{p.id}", "expr": p.promql.replace("$window", "30s")} for p in history.PANELS]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    proc = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def client(text: str) -> TestClient:
    cluster = SimpleNamespace(topology=parse_topology(text))
    return TestClient(create_app(cluster, "secret", frames=SimpleNamespace()))  # type: ignore[arg-type]


def test_history_needs_the_token_a_known_range_and_a_monitoring_host() -> None:
    with_mon = client(PLAIN + GOOD + MON)
    assert with_mon.get("/api/history").status_code == 401
    bearer = {"Authorization": "Bearer secret"}
    bad = with_mon.get("/api/history?minutes=7", headers=bearer)
    assert bad.status_code == 400 and "5, 15, 60" in bad.json()["error"]
    none = client(PLAIN + GOOD).get("/api/history?minutes=5", headers=bearer)
    assert none.status_code == 404 and "no monitoring host" in none.json()["error"]


def test_the_grafana_dashboard_ships_the_same_panels() -> None:
    shipped = json.loads((REPO / "examples" / "grafana-dashboard.json").read_text())
    assert shipped == grafana.dashboard(), "regenerate: python -m webinfra.dashboard.grafana > examples/..."
    exprs = [p["targets"][0]["expr"] for p in shipped["panels"]]
    assert exprs == [p.promql.replace("$window", "$__rate_interval") for p in history.PANELS]
    assert {a["name"] for a in shipped["annotations"]["list"]} == {"Failovers", "VIP moves"}
