"""Rich tables for `webinfra status`, in the spirit of `patronictl list`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

STATE_STYLE = {
    "running": "green",
    "up": "green",
    "starting": "yellow",
    "stopped": "red",
    "down": "red",
    "maint": "yellow",
    "drain": "yellow",
    "unknown": "dim",
}


def _styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def render_status(console: Console, snap: dict[str, Any]) -> None:
    console.print(f"[bold]{snap['cluster']}[/]  site [bold]{snap['site_name']}[/]  {snap['site_url']}")
    hosts = Table("Host", "Address", "Roles", "Services", title="Hosts", title_justify="left")
    for h in snap["hosts"]:
        services = "  ".join(f"{s['name']} {_styled(s['state'])}" for s in h["services"])
        hosts.add_row(h["name"], h["address"], ",".join(h["roles"]), services)
    console.print(hosts)

    lb = snap["lb"]
    backends = Table(
        "Backend",
        "Address",
        "Weight",
        "State",
        "Backup",
        "Requests",
        "Check",
        title=f"Load balancer {lb['host']} (writes to: {lb['route_writes_to']})",
        title_justify="left",
    )
    for b in lb["backends"]:
        w = (
            str(b["weight"])
            if b["weight"] == b["configured_weight"]
            else f"{b['weight']} (file: {b['configured_weight']})"
        )
        backends.add_row(
            b["name"],
            b["address"],
            w,
            _styled(b["state"]),
            "yes" if b["backup"] else "",
            "" if b["sessions_total"] is None else str(b["sessions_total"]),
            b["check"],
        )
    console.print(backends)

    db = Table(
        "Member",
        "Address",
        "Role",
        "State",
        "Read-only",
        "GTID",
        "Lag (s)",
        "Error",
        title="Database",
        title_justify="left",
    )
    for n in snap["db"]["nodes"]:
        state = "running" if n["reachable"] else "stopped"
        if n["role"] == "replica" and n["reachable"]:
            state = "streaming" if n["io_running"] == "Yes" and n["sql_running"] == "Yes" else "broken"
        lag = "" if n["lag_seconds"] is None else f"{n['lag_seconds']:g}"
        db.add_row(
            n["name"],
            n["address"],
            n["role"],
            _styled("up" if state in ("running", "streaming") else "down") + f" {state}",
            "yes" if n["read_only"] else ("no" if n["read_only"] is False else ""),
            n["gtid"] or "",
            lag,
            n["error"] or "",
        )
    console.print(db)
