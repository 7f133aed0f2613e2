"""A Grafana dashboard with the same panels as the dashboard's history (history.PANELS), for users who run
Grafana against webinfra's Prometheus. Optional: webinfra needs no Grafana.

    python -m webinfra.dashboard.grafana > examples/grafana-dashboard.json

The committed file is this module's output (a unit test keeps them equal). Failovers and VIP moves are
annotations from the watcher's counters; faults injected by webinfra live only in events.jsonl, which Grafana
does not read.
"""

from __future__ import annotations

import json
from typing import Any

from webinfra.dashboard.history import PANELS

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
ANNOTATIONS = (
    ("Failovers", "changes(webinfra_primary_changes_total[1m]) > 0", "purple"),
    ("VIP moves", "changes(webinfra_vip_moves_total[1m]) > 0", "orange"),
)
UNITS = {"req/s": "reqps", "5xx/s": "reqps", "s": "s"}


def _panel(index: int) -> dict[str, Any]:
    p = PANELS[index]
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": p.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": UNITS.get(p.unit, "short"), "min": 0}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "expr": p.promql.replace("$window", "$__rate_interval"),
                "legendFormat": f"{{{{{p.legend}}}}}",
            }
        ],
    }


def dashboard() -> dict[str, Any]:
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "webinfra's Prometheus (webinfra status --json: monitoring.prometheus_url)",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "title": "webinfra",
        "uid": "webinfra",
        "tags": ["webinfra"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-15m", "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m"]},
        "annotations": {
            "list": [
                {
                    "name": name,
                    "datasource": DATASOURCE,
                    "enable": True,
                    "expr": expr,
                    "iconColor": color,
                    "step": "10s",
                    "titleFormat": name,
                }
                for name, expr, color in ANNOTATIONS
            ]
        },
        "panels": [_panel(i) for i in range(len(PANELS))],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    print(render(), end="")
