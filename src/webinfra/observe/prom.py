"""Reading Prometheus (on the monitoring host) over its HTTP API: instant and range queries, alerts, targets,
and the `monitoring` part of `webinfra status --json`.

Requests are made from the monitoring host (`runtime.client_on`), like a probe: they reach Prometheus over the host's
own address whatever firewall the cluster has, and need no route from the machine to the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from webinfra.errors import ClusterError
from webinfra.plan.daemons.alertmanager import url as alertmanager_url
from webinfra.runtime.emulated import running_pid

if TYPE_CHECKING:
    import httpx

    from webinfra.control.cluster import Cluster

# httpx is imported where a request is made, not at start-up: `status` imports this module for
# `monitoring_status` and makes no request to Prometheus.


T = TypeVar("T")


class PrometheusError(ClusterError):
    """Prometheus is absent or did not answer; the message is for the user."""


def prometheus_url(cluster: Cluster) -> str | None:
    host = cluster.topology.monitoring_host
    if host is None:
        return None
    return f"http://{cluster.topology.address_of(host.name)}:{cluster.topology.monitoring.prometheus_port}/"


def on_monitoring_host(cluster: Cluster, fetch: Callable[[httpx.Client], T]) -> T:
    """Run `fetch` with an HTTP client whose requests are made from the monitoring host; a PrometheusError
    it raises passes through."""
    host = cluster.topology.monitoring_host
    if host is None:
        raise PrometheusError(f"cluster {cluster.topology.name} has no monitoring host (give a host the role)")
    from webinfra.runtime.client import client_on

    try:
        with client_on(cluster.hosts[host.name]) as client:
            return fetch(client)
    except PrometheusError:
        raise
    except Exception as exc:  # the host's namespace is gone
        raise PrometheusError(f"cannot reach {host.name}: {exc}") from None


def api(cluster: Cluster, path: str, params: dict[str, str] | None = None, timeout: float = 2.0) -> Any:
    """GET /api/v1/<path> from inside the monitoring host; returns `data`, or raises PrometheusError."""
    url = prometheus_url(cluster)
    if url is None:
        raise PrometheusError(f"cluster {cluster.topology.name} has no monitoring host (give a host the role)")

    import httpx

    def fetch(client: httpx.Client) -> Any:
        try:
            response = client.get(f"{url}api/v1/{path}", params=params, timeout=timeout)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {url} did not answer: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {url} answered {response.status_code}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus: {body.get('error') or response.status_code}")
        return body["data"]

    return on_monitoring_host(cluster, fetch)


def query(cluster: Cluster, promql: str) -> list[tuple[dict[str, str], float]]:
    """An instant query's vector as (labels, value) pairs (NaN values dropped)."""
    data = api(cluster, "query", {"query": promql})
    out = []
    for item in data.get("result", []):
        value = float(item["value"][1])
        if value == value:  # not NaN
            out.append((item["metric"], value))
    return out


def query_range(
    cluster: Cluster, promql: str, start: float, end: float, step: float
) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """A range query's matrix as (labels, [(unix time, value)]) pairs (NaN points dropped)."""
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    data = api(cluster, "query_range", params, timeout=5.0)
    out = []
    for item in data.get("result", []):
        points = [(float(t), float(v)) for t, v in item.get("values", []) if float(v) == float(v)]
        out.append((item["metric"], points))
    return out


def alerts(cluster: Cluster) -> list[dict[str, Any]]:
    """Active alerts (firing and pending), firing first, then by name and host."""
    found: list[dict[str, Any]] = api(cluster, "alerts").get("alerts", [])
    return sorted(
        found,
        key=lambda a: (a.get("state") != "firing", a["labels"].get("alertname", ""), a["labels"].get("host", "")),
    )


def targets(cluster: Cluster) -> list[dict[str, Any]]:
    active: list[dict[str, Any]] = api(cluster, "targets", {"state": "active"}).get("activeTargets", [])
    return active


# ---- the dashboard's address, for `status --json` ----


def dashboard_url(cluster: Cluster) -> str | None:
    """The URL of the running `webinfra dashboard` (without its token), or None."""
    pidfile, info = cluster.layout.dashboard_pidfile, cluster.layout.dashboard_info
    if running_pid(pidfile) is None:
        return None
    try:
        url = json.loads(info.read_text()).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def monitoring_status(cluster: Cluster) -> dict[str, str | None]:
    """`monitoring` of the status snapshot (docs/STATUS.md)."""
    return {
        "prometheus_url": prometheus_url(cluster),
        "alertmanager_url": alertmanager_url(cluster.topology),
        "dashboard_url": dashboard_url(cluster),
    }
