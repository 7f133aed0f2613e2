"""`webinfra status --watch`: the live frame (observe/live.py) as rich tables, redrawn every second."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from webinfra.cli.tables import STATE_STYLE


def _styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if value is None else fmt.format(value)


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f} ms"


def _pct(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"[red]{ratio:.1%}[/]" if ratio > 0 else "0%"


def render_frame(frame: dict[str, Any]) -> Group:
    snap = frame["status"]
    lb = snap["lb"]
    site = frame["site"]
    header = Text.from_markup(
        f"[bold]{snap['cluster']}[/]  {snap['site_url']}  "
        f"[bold]{_num(site['rps'])}[/] req/s  p99 {_ms(site['p99_seconds'])}"
        + (f"  VIP {lb['vip']} on [bold]{lb['vip_holder'] or 'nobody'}[/]" if lb.get("vip") else "")
        + f"  [dim]{datetime.fromtimestamp(frame['taken_at']).strftime('%H:%M:%S')}[/]"
    )

    faults = snap.get("faults") or {}
    hosts = Table("Host", "Address", "Roles", "Services", title="Hosts", title_justify="left", expand=False)
    for h in snap["hosts"]:
        services = "  ".join(f"{s['name']} {_styled(s['state'])}" for s in h["services"])
        if h["name"] in faults:
            services += f"  [bold red]fault:[/] {faults[h['name']]}"
        name = h["name"] + (" [bold magenta](VIP)[/]" if h["name"] in (lb.get("vip_holder") or "").split(",") else "")
        hosts.add_row(name, h["address"], ",".join(h["roles"]), services)

    backends = Table(
        "Backend",
        "State",
        "Weight",
        "Req/s",
        "5xx",
        "p99 (app)",
        "Check",
        title=f"Load balancer {lb['host']}",
        title_justify="left",
    )
    for b in lb["backends"]:
        backends.add_row(
            b["name"],
            _styled(b["state"]),
            str(b["weight"]),
            _num(b.get("rps")),
            _pct(b.get("error_ratio")),
            _ms(b.get("p99_seconds")),
            b["check"],
        )

    db = Table("Member", "Role", "State", "Lag (s)", "GTID", "Error", title="Database", title_justify="left")
    for n in snap["db"]["nodes"]:
        state = "up" if n["reachable"] else "down"
        if n["role"] == "replica" and n["reachable"]:
            state = "up" if n["io_running"] == "Yes" and n["sql_running"] == "Yes" else "down"
        db.add_row(
            n["name"],
            n["role"] or "",
            _styled(state),
            "" if n["lag_seconds"] is None else f"{n['lag_seconds']:g}",
            n["gtid"] or "",
            n["error"] or "",
        )

    parts: list[Any] = [header, hosts, backends, db]
    alerts = frame.get("alerts")
    if alerts == []:
        parts.append(Text.from_markup("[green]No alerts[/] [dim](Prometheus)[/]"))
    elif alerts is not None:
        firing = [a for a in alerts if a["state"] == "firing"]
        table = Table("Alert", "State", "Host", "Summary", title=f"Alerts ({len(firing)} firing)", title_justify="left")
        for a in alerts:
            table.add_row(
                a["name"], "[red]firing[/]" if a["state"] == "firing" else "[yellow]pending[/]", a["host"], a["summary"]
            )
        parts.append(table)
    elif frame["prometheus"].get("error"):
        parts.append(Text(f"Prometheus: {frame['prometheus']['error']}", style="yellow"))
    recent = frame.get("events") or []
    if recent:
        events = Table("Time", "Host", "Event", "Detail", title="Last events", title_justify="left")
        for e in recent[-8:]:
            events.add_row(str(e.get("ts", ""))[11:19], e.get("host") or "-", e.get("kind", ""), e.get("detail", ""))
        parts.append(events)
    return Group(*parts)


def watch(console: Console, cluster: Any, interval: float = 1.0, frames: int | None = None) -> None:
    """Redraw until interrupted (or `frames` frames have been drawn)."""
    from webinfra.observe.live import LiveSampler

    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(LiveSampler(cluster))
        # On a terminal the frame is redrawn in place; into a pipe or a file, frames follow each other.
        live = stack.enter_context(Live(console=console, auto_refresh=False)) if console.is_terminal else None
        drawn = 0
        while frames is None or drawn < frames:
            started = time.monotonic()
            rendered = render_frame(sampler.frame())
            if live is not None:
                live.update(rendered, refresh=True)
            else:
                console.print(rendered)
            drawn += 1
            if frames is not None and drawn >= frames:
                break
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
