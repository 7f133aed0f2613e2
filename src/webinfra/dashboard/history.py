"""The dashboard's history: time-series panels from Prometheus range queries, and markers from the events.

    GET /api/history?minutes=5|15|60   -> {"minutes", "start", "end", "step", "panels": [...], "markers": [...]}

    panel   {"id", "title", "unit", "series": [{"name", "points": [[unix time, value], ...]}]}
    marker  {"t": unix time, "kind", "host", "text"}   failovers, VIP moves, faults (from events.jsonl)

The PromQL of each panel is in PANELS; the Grafana dashboard (examples/grafana-dashboard.json) draws the same
queries. `window()` picks a step that keeps ~240 points a series and a rate window that spans several scrapes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from webinfra.control.events import read as read_events
from webinfra.observe import prom

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster

RANGES_MINUTES = (5, 15, 60)
POINTS = 240
# Events drawn as markers on every panel: what changed the picture.
MARKER_KINDS = {
    "primary_changed": "failover",
    "promoted": "failover",
    "vip_moved": "VIP moved",
    "fault_injected": "fault",
    "fault_recovered": "recovered",
}


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    unit: str
    promql: str  # `$window` is replaced by the rate window
    legend: str  # the label that names a series ("" -> the panel's title)


SITE = 'proxy="site"'
BUCKETS = 'rate(site_request_duration_seconds_bucket{route!="/healthz"}[$window])'
PANELS = (
    Panel(
        "rps",
        "Requests/s per backend",
        "req/s",
        f"sum by (server) (rate(haproxy_server_http_responses_total{{{SITE}}}[$window]))",
        "server",
    ),
    Panel(
        "errors",
        "5xx/s per backend",
        "5xx/s",
        f'sum by (server) (rate(haproxy_server_http_responses_total{{{SITE},code="5xx"}}[$window]))',
        "server",
    ),
    Panel(
        "latency",
        "Latency p50 / p99 (the app)",
        "s",
        f'label_replace(histogram_quantile(0.5, sum by (le) ({BUCKETS})), "q", "p50", "", "")'
        f' or label_replace(histogram_quantile(0.99, sum by (le) ({BUCKETS})), "q", "p99", "", "")',
        "q",
    ),
    Panel("lag", "Replication lag", "s", "max by (host) (mysql_slave_status_seconds_behind_master)", "host"),
)


def window(minutes: int, scrape_interval_ms: int) -> tuple[float, str]:
    """(step in seconds, rate window) for a range of `minutes`."""
    step = max(scrape_interval_ms / 1000, minutes * 60 / POINTS)
    rate_window = max(4 * scrape_interval_ms / 1000, 2 * step)
    return step, f"{int(rate_window)}s"


def _epoch(ts: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def markers(events: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    """The events worth a marker between `start` and `end` (pure)."""
    out = []
    for e in events:
        label = MARKER_KINDS.get(str(e.get("kind", "")))
        t = _epoch(str(e.get("ts", "")))
        if label is None or t is None or not start <= t <= end:
            continue
        host = str(e.get("host", ""))
        text = f"{label}: {host}" if host else label
        if e.get("detail"):
            text += f" ({e['detail']})"
        out.append({"t": t, "kind": e["kind"], "host": host, "text": text})
    return out


def history(cluster: Cluster, minutes: int, now: float | None = None) -> dict[str, Any]:
    """Every panel over the last `minutes`, and the markers. A panel whose query fails carries `error`."""
    end = now if now is not None else dt.datetime.now(dt.UTC).timestamp()
    start = end - minutes * 60
    step, rate_window = window(minutes, cluster.topology.monitoring.scrape_interval_ms)
    panels = []
    for p in PANELS:
        panel: dict[str, Any] = {"id": p.id, "title": p.title, "unit": p.unit, "series": []}
        try:
            matrix = prom.query_range(cluster, p.promql.replace("$window", rate_window), start, end, step)
        except prom.PrometheusError as exc:
            panel["error"] = str(exc)
        else:
            panel["series"] = [
                {"name": labels.get(p.legend, "") or p.title, "points": points}
                for labels, points in sorted(matrix, key=lambda item: item[0].get(p.legend, ""))
            ]
        panels.append(panel)
    events = read_events(cluster.layout.events_file)
    return {
        "minutes": minutes,
        "start": start,
        "end": end,
        "step": step,
        "panels": panels,
        "markers": markers(events, start, end),
    }
