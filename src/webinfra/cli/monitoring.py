"""`webinfra alerts` and `webinfra dashboard`: what the monitoring host sees (docs/MONITORING.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from webinfra.cli.common import cluster_option, console, handle_errors, open_operable


@click.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print Prometheus's alerts as JSON (with Alertmanager's status of each)."
)
@click.option("--pending", is_flag=True, help="Also show alerts whose condition holds but not for long enough yet.")
@cluster_option
@handle_errors
def alerts(
    as_json: bool, pending: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Show the alerts firing now and the silences (Prometheus and Alertmanager on the monitoring host; see
    docs/MONITORING.md)."""
    from rich.table import Table

    from webinfra.cli.alerting import alert_state, annotate, print_silences
    from webinfra.observe.prom import alerts as active_alerts

    cluster = open_operable(topology_file, cluster_name, state_dir)
    shown = [a for a in active_alerts(cluster) if pending or a.get("state") == "firing"]
    annotate(cluster, shown)
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    if not shown:
        console.print("no alerts firing" + ("" if pending else " (--pending: also those about to fire)"))
    else:
        table = Table("Alert", "State", "Host", "Since", "Summary")
        for a in shown:
            labels = a.get("labels", {})
            table.add_row(
                labels.get("alertname", ""),
                alert_state(a),
                labels.get("host", ""),
                str(a.get("activeAt", ""))[11:19],
                escape(a.get("annotations", {}).get("summary", "")),
            )
        console.print(table)
    print_silences(console, cluster)


@click.command()
@click.option(
    "--bind",
    default=None,
    help="Address to listen on (default: the cluster's gateway, on its bridge; on servers 127.0.0.1).",
)
@click.option("--port", type=int, default=None, help="Port (default: [monitoring] dashboard_port, 8088).")
@click.option("--new-token", is_flag=True, help="Replace the access token (URLs printed before stop working).")
@cluster_option
@handle_errors
def dashboard(
    bind: str | None,
    port: int | None,
    new_token: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Serve a live web page of the cluster (management side only; the URL printed carries its token)."""
    from webinfra.dashboard.serve import default_bind, serve

    cluster = open_operable(topology_file, cluster_name, state_dir)
    serve(
        cluster,
        bind or default_bind(cluster),
        port or cluster.topology.monitoring.dashboard_port,
        say=lambda line: console.print(line, soft_wrap=True, markup=False),
        renew_token=new_token,
    )
