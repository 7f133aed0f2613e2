"""Alertmanager (on the monitoring host) over its API v2: silences and the alerts as it sees them.

Requests run inside the monitoring host, like the Prometheus queries of observe/prom.py: they need no route
from the machine to the cluster and work whatever firewall the cluster has.

    silences(cluster)                 every silence, active first
    add_silence(cluster, matchers, seconds, comment, author) -> id
    expire_silence(cluster, id)
    alerts(cluster)                   Alertmanager's alerts, with `status.silencedBy` / `status.inhibitedBy`

`parse_matcher` and `parse_duration` turn the command line into API values; bad input raises UsageError
(one line, exit 2) before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

import httpx

from webinfra.control.cluster import UsageError
from webinfra.observe.prom import PrometheusError, on_monitoring_host
from webinfra.plan import alertmanager as plan

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster

MATCHER = re.compile(r"^([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)(.*)$")
DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
SILENCE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_SILENCE = dt.timedelta(days=30)


class AlertmanagerError(PrometheusError):
    """Alertmanager is absent or refused; the message is for the user."""


def parse_matcher(text: str) -> dict[str, Any]:
    """`alertname=InstanceDown`, `host!=web-01`, `job=~"site|nginx"` -> an API v2 matcher."""
    found = MATCHER.match(text)
    if found is None:
        raise UsageError(f"matcher {text!r}: write NAME=VALUE (also !=, =~, !~), e.g. alertname=InstanceDown")
    name, op, value = found.groups()
    value = value.strip('"')
    if not value and op in ("=", "=~"):
        raise UsageError(f"matcher {text!r}: an empty value would match every alert without that label")
    if "~" in op:
        try:
            re.compile(value)
        except re.error as exc:
            raise UsageError(f"matcher {text!r}: bad regular expression ({exc})") from None
    return {"name": name, "value": value, "isRegex": "~" in op, "isEqual": not op.startswith("!")}


def parse_duration(text: str) -> dt.timedelta:
    """`90m`, `2h`, `1d12h` -> a timedelta between 1 minute and 30 days."""
    found = DURATION.match(text.strip())
    if not text.strip() or found is None:
        raise UsageError(f"duration {text!r}: write e.g. 30m, 2h, 1d12h")
    days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
    length = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not dt.timedelta(minutes=1) <= length <= MAX_SILENCE:
        raise UsageError(f"duration {text!r}: a silence lasts between 1m and 30d")
    return length


def _request(cluster: Cluster, method: str, path: str, body: Any = None, timeout: float = 3.0) -> Any:
    base = plan.url(cluster.topology)
    if base is None:
        raise AlertmanagerError(f"cluster {cluster.topology.name} has no monitoring host (give a host the role)")

    def send(client: httpx.Client) -> Any:
        try:
            response = client.request(method, f"{base}api/v2/{path}", json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            raise AlertmanagerError(f"Alertmanager at {base} did not answer: {exc}") from None
        if response.status_code >= 400:
            detail = response.text.strip().splitlines()[0] if response.text.strip() else ""
            raise AlertmanagerError(f"Alertmanager refused {method} {path}: {response.status_code} {detail}".strip())
        return response.json() if response.content else None

    return on_monitoring_host(cluster, send)


def _ends_at(silence: dict[str, Any]) -> str:
    return str(silence.get("endsAt", ""))


def silences(cluster: Cluster, include_expired: bool = False) -> list[dict[str, Any]]:
    """Silences, active then pending (by end), expired last; expired only with `include_expired`."""
    found: list[dict[str, Any]] = _request(cluster, "GET", "silences") or []
    order = {"active": 0, "pending": 1, "expired": 2}
    shown = [s for s in found if include_expired or s.get("status", {}).get("state") != "expired"]
    return sorted(shown, key=lambda s: (order.get(s.get("status", {}).get("state", ""), 3), _ends_at(s)))


def add_silence(
    cluster: Cluster, matchers: list[dict[str, Any]], length: dt.timedelta, comment: str, author: str
) -> str:
    if not matchers:
        raise UsageError("a silence needs at least one matcher, e.g. alertname=InstanceDown host=web-02")
    now = dt.datetime.now(dt.UTC)
    body = {
        "matchers": matchers,
        "startsAt": now.isoformat(),
        "endsAt": (now + length).isoformat(),
        "createdBy": author,
        "comment": comment,
    }
    answer = _request(cluster, "POST", "silences", body)
    return str(answer["silenceID"])


def check_silence_id(silence_id: str) -> str:
    if not SILENCE_ID.match(silence_id):
        raise UsageError(f"silence id {silence_id!r}: expected an id as `webinfra silence list` shows it")
    return silence_id


def expire_silence(cluster: Cluster, silence_id: str) -> None:
    _request(cluster, "DELETE", f"silence/{check_silence_id(silence_id)}")


def alerts(cluster: Cluster) -> list[dict[str, Any]]:
    """The alerts Alertmanager holds (active, silenced and inhibited alike)."""
    found: list[dict[str, Any]] = _request(cluster, "GET", "alerts") or []
    return found


def matcher_text(matcher: dict[str, Any]) -> str:
    op = (
        ("=" if matcher.get("isEqual", True) else "!=")
        if not matcher.get("isRegex")
        else ("=~" if matcher.get("isEqual", True) else "!~")
    )
    return f"{matcher['name']}{op}{matcher['value']}"


def status_by_alert(cluster: Cluster) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    """Alertmanager's status of each alert, keyed by its labels without `cluster` (the external label
    Prometheus adds when it sends them), so that Prometheus's own alert objects can be looked up."""
    out: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for alert in alerts(cluster):
        labels = {k: v for k, v in alert.get("labels", {}).items() if k != "cluster"}
        out[tuple(sorted(labels.items()))] = alert.get("status", {})
    return out


def label_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "cluster"))
