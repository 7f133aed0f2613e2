"""`webinfra silence add|list|expire`, and what `webinfra alerts` adds from Alertmanager (its silences, and which
alerts are silenced or inhibited). The API calls are in observe/alertmanager.py."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster


def annotate(cluster: Cluster, shown: list[dict[str, Any]]) -> str | None:
    """Add `alertmanager: {state, silencedBy, inhibitedBy}` to each of Prometheus's alerts Alertmanager holds.
    Returns why that was not possible (None when it was)."""
    from webinfra.observe import alertmanager

    try:
        status = alertmanager.status_by_alert(cluster)
    except alertmanager.PrometheusError as exc:
        return str(exc)
    for alert in shown:
        found = status.get(alertmanager.label_key(alert.get("labels", {})))
        if found is not None:
            alert["alertmanager"] = found
    return None


def alert_state(alert: dict[str, Any]) -> str:
    """`firing`, `pending`, or `silenced` / `inhibited` when Alertmanager holds it back."""
    am = alert.get("alertmanager") or {}
    if am.get("silencedBy"):
        return "[blue]silenced[/]"
    if am.get("inhibitedBy"):
        return "[blue]inhibited[/]"
    return "[red]firing[/]" if alert.get("state") == "firing" else "[yellow]pending[/]"


def silence_rows(found: list[dict[str, Any]]) -> Table:
    from webinfra.observe.alertmanager import matcher_text

    table = Table(title="Silences", title_justify="left")
    table.add_column("ID", no_wrap=True, min_width=36)  # copied into `webinfra silence expire`: never wrapped
    for name in ("State", "Matchers", "Ends", "By", "Comment"):
        table.add_column(name)
    for s in found:
        table.add_row(
            s.get("id", ""),
            s.get("status", {}).get("state", ""),
            escape(" ".join(matcher_text(m) for m in s.get("matchers", []))),
            str(s.get("endsAt", ""))[:19].replace("T", " "),
            escape(s.get("createdBy", "")),
            escape(s.get("comment", "")),
        )
    return table


def print_silences(console: Console, cluster: Cluster) -> None:
    """The active and pending silences under `webinfra alerts` (a note when Alertmanager does not answer)."""
    from webinfra.observe import alertmanager

    try:
        found = alertmanager.silences(cluster)
    except alertmanager.PrometheusError as exc:
        console.print(f"[dim]silences unknown: {escape(str(exc))}[/]", soft_wrap=True)
        return
    if found:
        console.print(silence_rows(found))
    else:
        console.print("no silences (webinfra silence add NAME=VALUE... to add one)")


def silence_group(cluster_option: Any, handle_errors: Any, open_operable: Any, console: Console) -> click.Group:
    """The `silence` command group, built with main.py's shared options (passed in: no import cycle)."""

    @click.group()
    def silence() -> None:
        """Silence alerts in Alertmanager (on the monitoring host) for a while; list and expire silences."""

    @silence.command(name="add")
    @click.argument("matchers", nargs=-1, required=True)
    @click.option("--duration", default="2h", show_default=True, help="How long: 30m, 2h, 1d12h (1m to 30d).")
    @click.option("--comment", default="silenced with webinfra", show_default=True, help="Why (shown in lists).")
    @click.option("--author", default=None, help="Who (default: the current user).")
    @click.option("--json", "as_json", is_flag=True, help='Print {"id": ...}.')
    @cluster_option
    @handle_errors
    def add(
        matchers: tuple[str, ...],
        duration: str,
        comment: str,
        author: str | None,
        as_json: bool,
        topology_file: str | None,
        cluster_name: str | None,
        state_dir: Path | None,
    ) -> None:
        """Silence the alerts matching every MATCHER (NAME=VALUE, NAME!=VALUE, NAME=~REGEX, NAME!~REGEX)."""
        from webinfra.observe import alertmanager

        parsed = [alertmanager.parse_matcher(m) for m in matchers]
        length = alertmanager.parse_duration(duration)
        cluster = open_operable(topology_file, cluster_name, state_dir)
        silence_id = alertmanager.add_silence(cluster, parsed, length, comment, author or getpass.getuser())
        if as_json:
            click.echo(json.dumps({"id": silence_id}))
        else:
            console.print(f"silenced {' '.join(matchers)} for {duration}: [bold]{silence_id}[/]")

    @silence.command(name="list")
    @click.option("--all", "include_expired", is_flag=True, help="Also the expired silences.")
    @click.option("--json", "as_json", is_flag=True, help="Alertmanager's silence objects (API v2).")
    @cluster_option
    @handle_errors
    def list_(
        include_expired: bool,
        as_json: bool,
        topology_file: str | None,
        cluster_name: str | None,
        state_dir: Path | None,
    ) -> None:
        """List the silences (active and pending; --all adds the expired)."""
        from webinfra.observe import alertmanager

        cluster = open_operable(topology_file, cluster_name, state_dir)
        found = alertmanager.silences(cluster, include_expired)
        if as_json:
            click.echo(json.dumps(found, indent=2))
        elif found:
            console.print(silence_rows(found))
        else:
            console.print("no silences")

    @silence.command(name="expire")
    @click.argument("silence_id")
    @cluster_option
    @handle_errors
    def expire(silence_id: str, topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> None:
        """End a silence now (its ID is in `webinfra silence list`)."""
        from webinfra.observe import alertmanager

        alertmanager.check_silence_id(silence_id)
        cluster = open_operable(topology_file, cluster_name, state_dir)
        alertmanager.expire_silence(cluster, silence_id)
        console.print(f"expired silence {silence_id}")

    return silence
