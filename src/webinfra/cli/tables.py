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
    faults = snap.get("faults") or {}
    for h in snap["hosts"]:
        services = "  ".join(f"{s['name']} {_styled(s['state'])}" for s in h["services"])
        if h.get("code_version"):
            services += f"  [dim]code {h['code_version']}[/]"
        if h["name"] in faults:
            services += f"\n[bold red]fault:[/] {faults[h['name']]}"
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
        title=(
            f"Load balancer {lb['host']} (writes to: {lb['route_writes_to']})"
            + (f"  VIP {lb['vip']} on [bold]{lb['vip_holder'] or 'nobody'}[/]" if lb.get("vip") else "")
        ),
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
        "Role",
        "State",
        "Read-only",
        "GTID",
        "Lag (s)",
        "Lease",
        "Error",
        title="Database" + (" (HA: leader lease in etcd)" if snap["db"].get("ha") else ""),
        title_justify="left",
    )
    for n in snap["db"]["nodes"]:
        state = "running" if n["reachable"] else "stopped"
        if n["role"] == "replica" and n["reachable"]:
            state = "streaming" if n["io_running"] == "Yes" and n["sql_running"] == "Yes" else "broken"
        lag = "" if n["lag_seconds"] is None else f"{n['lag_seconds']:g}"
        lease = n.get("lease") or {}
        lease_text = ""
        if lease.get("holder"):
            left = lease.get("seconds_left")
            lease_text = lease["holder"] + ("" if left is None else f" ({left:g}s)")
        db.add_row(
            n["name"],
            n["role"],
            _styled("up" if state in ("running", "streaming") else "down") + f" {state}",
            "yes" if n["read_only"] else ("no" if n["read_only"] is False else ""),
            n["gtid"] or "",
            lag,
            lease_text,
            n["error"] or "",
        )
    console.print(db)
