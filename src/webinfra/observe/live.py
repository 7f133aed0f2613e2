"""A live view of the cluster, one frame per call: what `webinfra status --watch` and the dashboard draw.

A frame is the status snapshot (observe/status.py, the documented contract) plus what only shows over
time:

* per backend: requests/s and the share of 5xx answers, from the serving HAProxy's counters (`show stat`:
  `stot`, `hrsp_5xx`, over the `site` and `site_writes` backends) diffed between two frames;
* from Prometheus, when the topology has a monitoring host: p99 latency per app host and for the whole
  site (the app's histogram over 30 s), and the active alerts;
* the last events (events.jsonl).

Without a monitoring host nobody else watches the cluster, so the sampler also runs the event watcher
(observe/monitor.py) while it runs, recording only if no other watcher does (`recorder_lock`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webinfra.daemons import haproxy
from webinfra.observe import monitor, prom
from webinfra.observe.status import snapshot

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster

P99_WINDOW = "30s"
_BUCKETS = f'rate(site_request_duration_seconds_bucket{{route!="/healthz"}}[{P99_WINDOW}])'
P99_BY_HOST = f"histogram_quantile(0.99, sum by (host, le) ({_BUCKETS}))"
P99_SITE = f"histogram_quantile(0.99, sum by (le) ({_BUCKETS}))"
EVENTS_SHOWN = 20


def lb_counters(cluster: Cluster, lb_host: str) -> dict[str, tuple[int, int]]:
    """{server: (requests, 5xx answers)} over the site's backends of one HAProxy, since it started."""
    text = haproxy.runtime_for(cluster.hosts[lb_host], cluster.plan.host(lb_host)).command("show stat")
    out: dict[str, tuple[int, int]] = {}
    for row in csv.DictReader(io.StringIO(text.lstrip("# "))):
        if row.get("pxname") not in haproxy.SITE_BACKENDS or row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        total, errors = out.get(row["svname"], (0, 0))
        out[row["svname"]] = (total + int(row.get("stot") or 0), errors + int(row.get("hrsp_5xx") or 0))
    return out


def rates(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], seconds: float
) -> dict[str, dict[str, float | None]]:
    """Requests/s and 5xx share per server between two counter readings. Pure. A counter that went down
    (HAProxy restarted) or a server not in both readings gives None."""
    out: dict[str, dict[str, float | None]] = {}
    for name, (total, errors) in after.items():
        if name not in before or seconds <= 0:
            out[name] = {"rps": None, "error_ratio": None}
            continue
        d_total, d_errors = total - before[name][0], errors - before[name][1]
        if d_total < 0 or d_errors < 0:
            out[name] = {"rps": None, "error_ratio": None}
            continue
        out[name] = {"rps": d_total / seconds, "error_ratio": (d_errors / d_total) if d_total else None}
    return out


def tail_events(path: Path, n: int = EVENTS_SHOWN, window: int = 64 * 1024) -> list[dict[str, Any]]:
    """The last `n` events, reading only the end of the file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - window))
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    if size > window:
        lines = lines[1:]  # the first line may be cut
    out = []
    for line in lines[-n:]:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


class LiveSampler:
    """Call `frame()` about once a second; `close()` when done (releases the recorder lock, if held)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._counters: tuple[str, float, dict[str, tuple[int, int]]] | None = None
        self._stack = contextlib.ExitStack()
        self.watcher: monitor.Watcher | None = None
        if cluster.topology.monitoring_host is None:
            may_record = self._stack.enter_context(monitor.recorder_lock(cluster))
            self.watcher = monitor.Watcher(cluster, record=may_record, source="watch")

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> LiveSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _backend_rates(self, lb_host: str | None) -> dict[str, dict[str, float | None]]:
        if lb_host is None:
            return {}
        now = time.monotonic()
        try:
            counters = lb_counters(self.cluster, lb_host)
        except haproxy.RuntimeApiError:
            self._counters = None
            return {}
        previous = self._counters
        self._counters = (lb_host, now, counters)
        if previous is None or previous[0] != lb_host:  # first reading, or another LB serves now
            return {name: {"rps": None, "error_ratio": None} for name in counters}
        return rates(previous[2], counters, now - previous[1])

    def _prometheus(self) -> dict[str, Any]:
        if self.cluster.topology.monitoring_host is None:
            return {"available": False, "p99_by_host": {}, "p99_site": None, "alerts": None, "error": None}
        try:
            by_host = {labels.get("host", ""): value for labels, value in prom.query(self.cluster, P99_BY_HOST)}
            site = prom.query(self.cluster, P99_SITE)
            alerts = [
                {
                    "name": a["labels"].get("alertname", ""),
                    "host": a["labels"].get("host", ""),
                    "state": a.get("state", ""),
                    "severity": a["labels"].get("severity", ""),
                    "summary": a.get("annotations", {}).get("summary", ""),
                    "since": a.get("activeAt", ""),
                }
                for a in prom.alerts(self.cluster)
            ]
        except prom.PrometheusError as exc:
            return {"available": False, "p99_by_host": {}, "p99_site": None, "alerts": None, "error": str(exc)}
        return {
            "available": True,
            "p99_by_host": by_host,
            "p99_site": site[0][1] if site else None,
            "alerts": alerts,
            "error": None,
        }

    def frame(self) -> dict[str, Any]:
        if self.watcher is not None:
            with contextlib.suppress(Exception):  # events are a courtesy here; the frame still draws
                self.watcher.tick()
        snap = snapshot(self.cluster)
        lb_host = snap["lb"]["host"] if snap["lb"]["runtime_api"] else None
        backend_rates = self._backend_rates(lb_host)
        metrics = self._prometheus()
        for b in snap["lb"]["backends"]:
            r = backend_rates.get(b["name"], {})
            b["rps"] = r.get("rps")
            b["error_ratio"] = r.get("error_ratio")
            b["p99_seconds"] = metrics["p99_by_host"].get(b["name"])
        known = [r["rps"] for r in backend_rates.values() if r["rps"] is not None]
        return {
            "taken_at": time.time(),
            "status": snap,
            "site": {"rps": sum(known) if known else None, "p99_seconds": metrics["p99_site"]},
            "prometheus": {"available": metrics["available"], "error": metrics["error"]},
            "p99_by_host": metrics["p99_by_host"],
            "alerts": metrics["alerts"],
            "events": tail_events(self.cluster.layout.events_file),
        }
