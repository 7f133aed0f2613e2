"""`webinfra logs`, `events`, `exec`, `sql`, `ca`, `firewall`: looking inside a cluster."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from webinfra.cli.common import (
    cluster_option,
    complete_service,
    console,
    err_console,
    handle_errors,
    host_argument,
    json_option,
    open_cluster,
    open_operable,
    print_json,
    service_argument,
)
from webinfra.errors import UsageError


@click.command()
@host_argument(required=False)
@service_argument
@click.option(
    "-s",
    "--service",
    "service_filter",
    multiple=True,
    shell_complete=complete_service,
    help="Only this service (repeatable); with no HOST, on every host that runs it.",
)
@click.option(
    "-n", "--lines", type=int, default=None, help="Lines from the end of each log (default 50; all with --since)."
)
@click.option("--since", default=None, help="Only lines written since: 30s, 10m, 2h, 1d, or an ISO 8601 time.")
@click.option("-F", "--follow", is_flag=True, help="Keep printing lines as they are written (Ctrl-C stops).")
@json_option
@cluster_option
@handle_errors
def logs(
    host: str | None,
    service: str | None,
    service_filter: tuple[str, ...],
    lines: int | None,
    since: str | None,
    follow: bool,
    as_json: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Show the end of the services' logs: of HOST (default: every host), of SERVICE (default: all).

    With --json: one object per file, {host, service, file, lines}; with --follow --json, one JSON object
    per line, {host, service, file, line}."""
    from webinfra.observe import logs as logmod

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    since_time = logmod.parse_since(since) if since else None
    files = logmod.log_files(cluster, [host] if host else [], [*([service] if service else []), *service_filter])
    stream = None  # started before the tails are read: no line written in between is lost
    if follow:
        stream = logmod.follow_journals(cluster, files) if cluster.servers else logmod.follow(files)
    shown = logmod.tails(cluster, files, lines if lines is not None else (None if since_time else 50), since_time)
    if as_json and not follow:
        print_json([{"host": f.host, "service": f.service, "file": str(f.path), "lines": text} for f, text in shown])
        return

    def line_out(f: logmod.LogFile, line: str) -> None:
        if as_json:  # one object per line: a stream a script reads as it comes
            click.echo(json.dumps({"host": f.host, "service": f.service, "file": str(f.path), "line": line}))
        else:
            click.echo(f"{f.host} {f.path.name}: {line}")

    for f, text in shown:
        if as_json:
            for line in text:
                line_out(f, line)
        else:
            console.rule(f"{f.host} {f.path.name}")
            if text:
                click.echo("\n".join(text))
    if stream is not None:
        err_console.print(f"following {len(files)} log files (Ctrl-C stops)")
        for f, line in stream:
            line_out(f, line)


@click.command(name="events")
@click.option("--follow", "-F", is_flag=True, help="Keep printing events as they happen.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many past events to show.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, as stored.")
@cluster_option
@handle_errors
def events_(
    follow: bool, lines: int, as_json: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Show what changed: faults, failovers, weights, VIP moves."""
    from webinfra.control import events

    cluster = open_cluster(topology_file, cluster_name, state_dir)

    def show(event: dict[str, object]) -> None:
        if as_json:
            click.echo(json.dumps(event))
        else:
            click.echo(
                f"{event.get('ts')}  {event.get('host') or '-':<8} {event.get('kind'):<20} {event.get('detail')}"
            )

    for event in events.gather(cluster)[-lines:]:
        show(event)
    if follow:
        found = events.follow_gathered(cluster) if cluster.servers else events.follow(cluster.layout.events_file)
        for event in found:
            show(event)


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@host_argument()
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@cluster_option
@handle_errors
def exec_(
    host: str,
    command: tuple[str, ...],
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Run a command inside a host: webinfra exec web-01 -- ss -tlnp"""
    cluster = open_operable(topology_file, cluster_name, state_dir)
    cluster.host_plan(host)
    argv = cluster.hosts[host].local_argv(command)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@click.command()
@host_argument()
@click.option("-e", "--execute", "query", required=True, help="SQL to run as the host's local admin.")
@cluster_option
@handle_errors
def sql(host: str, query: str, topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> None:
    """Run admin SQL on a host's MariaDB (output like `mariadb -e`)."""
    from webinfra.daemons import mariadb

    cluster = open_operable(topology_file, cluster_name, state_dir)
    hp = cluster.host_plan(host)
    cluster.service_plan(host, "mariadb")
    mode = "table" if sys.stdout.isatty() else "tsv"
    out = mariadb.admin_sql(cluster.hosts[host], hp, query, mode=mode)
    click.echo(out, nl=False)


@click.command()
@cluster_option
@handle_errors
def ca(topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> None:
    """Print the path of the CA certificate that clients must trust to verify the site."""
    from webinfra.services.pki import ca_path

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    if not cluster.topology.tls.enabled:
        raise UsageError(f"cluster {cluster.topology.name} has no TLS ([tls] enabled = false)")
    path = ca_path(cluster.topology, cluster.layout)
    if not path.exists():
        raise UsageError(f"{path} does not exist yet: run `webinfra up` first")
    click.echo(str(path))


@click.command(name="firewall")
@host_argument()
@click.option("--live", is_flag=True, help="Show what the kernel has loaded in the host, not the rendered ruleset.")
@cluster_option
@handle_errors
def firewall_(
    host: str, live: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Print a host's firewall (nftables ruleset derived from the topology's flows)."""
    from webinfra.daemons import firewall

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    hp = cluster.host_plan(host)
    if live:
        cluster.require_local()
        click.echo(firewall.live(cluster.hosts[host]) or f"# {host}: no webinfra firewall loaded\n", nl=False)
        return
    spec = firewall.rules_of(hp)
    if spec is None:
        raise UsageError(f"cluster {cluster.topology.name} has no firewall (firewall = false)")
    click.echo(spec.content, nl=False)
