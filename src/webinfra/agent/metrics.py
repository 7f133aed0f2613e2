"""The agent's `/metrics` for Prometheus (Prometheus text format, written by hand: a few gauges from the
same `/status` answer, no extra dependency in the agent).

    agent_role{role}                 1 for the role this agent has now (primary, replica, cloning, unknown)
    agent_is_leader                  1 while this agent holds the leader lease (FailoverHappened watches it)
    agent_lease_ttl_left_seconds     seconds left on the leader lease, as this agent sees it
    agent_replication_lag_seconds    Seconds_Behind_Master of the local MariaDB (replicas)
    agent_gtid_seq                   sequence number of the local MariaDB's current GTID
    agent_semi_sync{state}           1 for on / off / fallback (the leader's semi-sync state)
    agent_mariadb_reachable, agent_dcs_reachable, agent_lease_fresh, agent_fenced    0 or 1
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROLES = ("primary", "replica", "cloning", "unknown")
SEMI_SYNC = ("on", "off", "fallback")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return repr(float(v)) if isinstance(v, float) else str(v)


def exposition(status: dict[str, Any]) -> str:
    """The exposition of one `/status` answer (pure)."""
    host = status.get("host")
    role = status.get("role") or "unknown"
    lines: list[str] = []

    def gauge(name: str, help_text: str, samples: list[tuple[str, Any]]) -> None:
        samples = [(labels, v) for labels, v in samples if v is not None]
        if not samples:
            return
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{labels} {_value(v)}" for labels, v in samples)

    gauge("agent_role", "1 for the role this agent has now", [(f'{{role="{r}"}}', r == role) for r in ROLES])
    gauge(
        "agent_is_leader",
        "1 while this agent holds the leader lease",
        [("", host is not None and status.get("leader") == host)],
    )
    gauge("agent_lease_ttl_left_seconds", "Seconds left on the leader lease", [("", status.get("lease_ttl_left"))])
    gauge(
        "agent_replication_lag_seconds", "Seconds_Behind_Master of the local MariaDB", [("", status.get("lag_seconds"))]
    )
    gauge("agent_gtid_seq", "Sequence number of the local MariaDB's current GTID", [("", status.get("gtid_seq"))])
    semi = status.get("semi_sync")
    if semi is not None:
        gauge(
            "agent_semi_sync",
            "1 for the semi-sync state of this node",
            [(f'{{state="{s}"}}', s == semi) for s in SEMI_SYNC],
        )
    for key in ("mariadb_reachable", "dcs_reachable", "lease_fresh", "fenced"):
        gauge(f"agent_{key}", f"1 when {key.replace('_', ' ')}", [("", status.get(key))])
    return "\n".join(lines) + "\n"


def send(handler: Any, status: dict[str, Any], body: bool) -> None:
    """Answer a GET/HEAD /metrics on the agent's HTTP handler."""
    data = exposition(status).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", CONTENT_TYPE)
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    if body:
        handler.wfile.write(data)
