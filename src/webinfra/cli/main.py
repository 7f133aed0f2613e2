"""The `webinfra` command: thin click commands over `webinfra.control`.

Exit codes: 0 success; 1 an operation failed (a daemon did not start, a host command failed);
2 bad input (topology file, unknown host/service, value out of range, not root) with nothing changed.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from webinfra.control.cluster import Cluster, ClusterError, UsageError, require_root
from webinfra.hosts.base import CommandError
from webinfra.hosts.hostd import HostdError
from webinfra.model import TopologyError
from webinfra.plan.layout import STATE_ROOT_ENV
from webinfra.services.haproxy import RuntimeApiError
from webinfra.services.supervisor import ServiceError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """One line per failure, never a traceback: 2 for bad input, 1 for a failed operation."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TopologyError, UsageError) as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(2)
        except (ClusterError, ServiceError, CommandError, HostdError, RuntimeApiError, OSError) as exc:
            err_console.print(f"[bold red]failed:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def state_dir_option(fn: F) -> F:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=STATE_ROOT_ENV,
        default=None,
        help=f"Where clusters keep their state (default /var/lib/webinfra; env {STATE_ROOT_ENV}).",
    )(fn)


def cluster_option(fn: F) -> F:
    fn = click.option(
        "-c",
        "--cluster",
        "cluster_name",
        default=None,
        help="Cluster name (default: the only cluster there is).",
    )(fn)
    fn = click.option(
        "-f",
        "--file",
        "topology_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Topology file naming the cluster.",
    )(fn)
    return state_dir_option(fn)


def open_cluster(topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> Cluster:
    if topology_file:
        return Cluster.from_file(topology_file, state_dir)
    return Cluster.existing(cluster_name, state_dir)


def progress_printer() -> Callable[[str, str, str], None]:
    started = time.monotonic()

    def report(host: str, what: str, action: str) -> None:
        mark = "[green]✓[/]" if action not in ("stopped", "killed", "removed", "purged") else "[yellow]■[/]"
        console.print(f"  {mark} {time.monotonic() - started:5.1f}s  [bold]{host:<10}[/] {what:<8} {action}")

    return report


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="webinfra")
def cli() -> None:
    """webinfra: one topology file becomes a running web infrastructure."""


@cli.command()
@click.option(
    "-f",
    "--file",
    "topology_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Topology file (TOML). Default: the built-in topology.",
)
@state_dir_option
@handle_errors
def up(topology_file: str | None, state_dir: Path | None) -> None:
    """Create the hosts and start every service (idempotent)."""
    from webinfra.services.pki import check_tls_files

    cluster = Cluster.from_file(topology_file, state_dir)
    check_tls_files(cluster.topology, topology_file or "<built-in default>")
    require_root()
    started = time.monotonic()
    console.print(
        f"[bold]webinfra up[/] cluster [cyan]{cluster.topology.name}[/] "
        f"({len(cluster.topology.hosts)} hosts, {cluster.topology.network.subnet})"
    )
    cluster.up(progress_printer())
    console.print(
        f"[bold green]up[/] in {time.monotonic() - started:.1f}s — site [bold]{cluster.topology.site.name}[/] at"
    )
    console.print(cluster.topology.site_url)


@cli.command()
@click.option("--purge", is_flag=True, help="Also delete the cluster's data (databases, secrets, logs).")
@cluster_option
@handle_errors
def down(purge: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> None:
    """Stop every service and remove namespaces, veths and the bridge. Data is kept unless --purge."""
    require_root()
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    cluster.down(purge=purge, progress=progress_printer())
    console.print(f"[bold]down[/] cluster {cluster.topology.name}" + (" (data purged)" if purge else " (data kept)"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (see docs/STATUS.md).")
@click.option("--watch", is_flag=True, help="Redraw every second, with requests/s, 5xx, p99, lag and alerts.")
@cluster_option
@handle_errors
def status(
    as_json: bool, watch: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Show hosts, services, load-balancer backends and database replication."""
    from webinfra.cli.tables import render_status
    from webinfra.control.status import snapshot

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    if watch:
        if as_json:
            raise UsageError("--watch draws tables; it does not go with --json")
        from webinfra.cli.live import watch as watch_live

        watch_live(console, cluster)
        return
    snap = snapshot(cluster)
    if as_json:
        click.echo(json.dumps(snap, indent=2))
    else:
        # Into a pipe or file, rich would wrap at 80 columns; a table that is read later wants full rows.
        render_status(console if console.is_terminal else Console(highlight=False, width=160), snap)


@cli.command()
@click.argument("server")
@click.argument("weight", type=int)
@cluster_option
@handle_errors
def weight(
    server: str, weight: int, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Change a backend's load-balancer weight live (runtime API; no reload)."""
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    cluster.set_weight(server, weight)
    console.print(f"weight of {server} is now {weight}")


@cli.command()
@click.argument("host")
@click.argument("service", required=False)
@click.option("--kill", is_flag=True, help="SIGKILL instead of a clean stop (emulates a crash).")
@cluster_option
@handle_errors
def stop(
    host: str,
    service: str | None,
    kill: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Stop one service of a host, or all of them."""
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    cluster.stop(host, service, kill=kill, progress=progress_printer())


@cli.command()
@click.argument("host")
@click.argument("service", required=False)
@cluster_option
@handle_errors
def start(
    host: str,
    service: str | None,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Start one service of a host, or all of them."""
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    cluster.start(host, service, progress=progress_printer())


@cli.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("host")
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
    require_root()
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    cluster.host_plan(host)
    argv = [*cluster.hosts[host].prefix, *command]
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@cli.command()
@click.argument("host")
@click.option("-e", "--execute", "query", required=True, help="SQL to run as the host's local admin.")
@cluster_option
@handle_errors
def sql(host: str, query: str, topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> None:
    """Run admin SQL on a host's MariaDB (output like `mariadb -e`)."""
    from webinfra.services import mariadb

    require_root()
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    hp = cluster.host_plan(host)
    cluster.service_plan(host, "mariadb")
    mode = "table" if sys.stdout.isatty() else "tsv"
    out = mariadb.admin_sql(cluster.hosts[host], hp, query, mode=mode)
    click.echo(out, nl=False)


@cli.command()
@click.argument("host")
@click.argument("service", required=False)
@click.option("-n", "--lines", default=50, show_default=True, help="Lines from the end of each log.")
@cluster_option
@handle_errors
def logs(
    host: str,
    service: str | None,
    lines: int,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Show the end of a host's service logs."""
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    services = cluster.services_of(host, service)
    log_dir = cluster.layout.host(host).log
    for svc in services:
        prefix = svc.name
        for path in sorted(log_dir.glob(f"{prefix}*")):
            console.rule(f"{host} {path.name}")
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            click.echo("\n".join(tail))


@cli.command()
@click.argument("host")
@click.option("--service", default=None, help="Only this service (default: the whole host).")
@click.option(
    "--mode",
    type=click.Choice(["crash", "stop", "partition"]),
    default="crash",
    show_default=True,
    help="crash = SIGKILL (a whole host: link down too); stop = clean stop; partition = traffic dropped.",
)
@cluster_option
@handle_errors
def fail(
    host: str,
    service: str | None,
    mode: str,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Inject a fault into a host (see also: recover)."""
    from webinfra.control.faults import fail as inject

    require_root()
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    what = inject(cluster, host, service, mode)  # type: ignore[arg-type]
    console.print(f"{host}: {what}")


@cli.command()
@click.argument("host")
@cluster_option
@handle_errors
def recover(host: str, topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> None:
    """Undo any fault on a host and start its services again."""
    from webinfra.control.faults import recover as undo

    require_root()
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    undo(cluster, host)
    console.print(f"{host}: recovered")


@cli.command()
@click.option("--to", "target", default=None, help="The replica to promote (default: the most advanced).")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the new primary.")
@cluster_option
@handle_errors
def switchover(
    target: str | None, timeout: float, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Planned change of the primary database, without losing a write (writes pause briefly)."""
    from webinfra.control.ha import switchover as do_switchover

    require_root()
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    old, new, seconds = do_switchover(cluster, target, timeout)
    console.print(f"primary: {old} -> {new} in {seconds:.1f}s")


@cli.command(name="events")
@click.option("--follow", is_flag=True, help="Keep printing events as they happen.")
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

    for event in events.read(cluster.layout.events_file)[-lines:]:
        show(event)
    if follow:
        for event in events.follow(cluster.layout.events_file):
            show(event)


@cli.command()
@click.option("-f", "--file", "topology_file", type=click.Path(dir_okay=False), default=None)
@handle_errors
def validate(topology_file: str | None) -> None:
    """Check a topology file without starting anything."""
    from webinfra.model import load_topology
    from webinfra.services.pki import check_tls_files

    topo = load_topology(topology_file)
    check_tls_files(topo, topology_file or "<built-in default>")
    console.print(f"ok: cluster {topo.name}, {len(topo.hosts)} hosts, site {topo.site_url}")


@cli.command()
@click.option("-f", "--file", "topology_file", type=click.Path(dir_okay=False), default=None)
@state_dir_option
@handle_errors
def plan(topology_file: str | None, state_dir: Path | None) -> None:
    """Print what `up` would write and start, without doing it."""
    cluster = Cluster.from_file(topology_file, state_dir)
    for hp in cluster.plan.hosts:
        console.rule(f"{hp.name} {hp.address} ({', '.join(hp.roles)})")
        for f in hp.files:
            console.print(f"[bold]# {f.path}[/]")
            click.echo(f.content)
    console.rule("start order")
    for hp, svc in cluster.plan.start_order():
        console.print(f"{hp.name:<10} {svc.name:<8} {' '.join(svc.argv)}", soft_wrap=True)


@cli.command()
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


@cli.command(name="firewall")
@click.argument("host")
@click.option("--live", is_flag=True, help="Show what the kernel has loaded in the host, not the rendered ruleset.")
@cluster_option
@handle_errors
def firewall_(
    host: str, live: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Print a host's firewall (nftables ruleset derived from the topology's flows)."""
    from webinfra.services import firewall

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    hp = cluster.host_plan(host)
    if live:
        require_root()
        click.echo(firewall.live(cluster.hosts[host]) or f"# {host}: no webinfra firewall loaded\n", nl=False)
        return
    spec = firewall.rules_of(hp)
    if spec is None:
        raise UsageError(f"cluster {cluster.topology.name} has no firewall (firewall = false)")
    click.echo(spec.content, nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print Prometheus's alerts as JSON.")
@click.option("--pending", is_flag=True, help="Also show alerts whose condition holds but not for long enough yet.")
@cluster_option
@handle_errors
def alerts(
    as_json: bool, pending: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Show the alerts firing now (Prometheus on the monitoring host; see docs/MONITORING.md)."""
    from rich.table import Table

    from webinfra.control.prom import alerts as active_alerts

    require_root()
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    shown = [a for a in active_alerts(cluster) if pending or a.get("state") == "firing"]
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    if not shown:
        console.print("no alerts firing" + ("" if pending else " (--pending: also those about to fire)"))
        return
    table = Table("Alert", "State", "Host", "Since", "Summary")
    for a in shown:
        labels = a.get("labels", {})
        table.add_row(
            labels.get("alertname", ""),
            "[red]firing[/]" if a.get("state") == "firing" else "[yellow]pending[/]",
            labels.get("host", ""),
            str(a.get("activeAt", ""))[11:19],
            escape(a.get("annotations", {}).get("summary", "")),
        )
    console.print(table)


@cli.command()
@click.option("--bind", default=None, help="Address to listen on (default: the cluster's gateway, on its bridge).")
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

    require_root()
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    serve(
        cluster,
        bind or default_bind(cluster),
        port or cluster.topology.monitoring.dashboard_port,
        say=lambda line: console.print(line, soft_wrap=True, markup=False),
        renew_token=new_token,
    )


@cli.command()
@click.option("--duration", default=5, show_default=True, help="Seconds per wrk run.")
@click.option("--connections", default=16, show_default=True, help="Concurrent connections per wrk run.")
@click.option("--rounds", default=3, show_default=True, help="Interleaved rounds; figures are medians.")
@click.option("--keep", is_flag=True, help="Leave the bench cluster running afterwards.")
@click.option(
    "--tls",
    "tls_mode",
    is_flag=True,
    help="Instead: HTTP vs HTTPS (re-encrypted to nginx, and not) through the LB, three clusters side by side.",
)
@click.option(
    "--monitoring",
    "monitoring_mode",
    is_flag=True,
    help="Instead: site throughput with the collectors and Prometheus running vs stopped (seed + mon-01).",
)
@click.option(
    "--markdown",
    "md_out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the results as Markdown to this file.",
)
@handle_errors
def bench(
    duration: int,
    connections: int,
    rounds: int,
    keep: bool,
    tls_mode: bool,
    monitoring_mode: bool,
    md_out: str | None,
) -> None:
    """Measure cold up time, and LB vs direct throughput and latency, in one run (own cluster)."""
    from webinfra.control.bench import markdown, run_bench, run_tls_bench, tls_markdown

    require_root()
    if monitoring_mode:
        from webinfra.control.bench_monitoring import monitoring_markdown, run_monitoring_bench

        mon_report = run_monitoring_bench(
            duration=duration,
            connections=connections,
            rounds=rounds,
            keep=keep,
            say=lambda line: console.print(line, soft_wrap=True),
        )
        command = f"webinfra bench --monitoring --duration {duration} --connections {connections} --rounds {rounds}"
        text = monitoring_markdown(mon_report, command)
        console.print(text, markup=False)
        if md_out:
            Path(md_out).write_text(text)
        return
    if tls_mode:
        tls_report = run_tls_bench(
            duration=duration,
            connections=connections,
            rounds=rounds,
            keep=keep,
            say=lambda line: console.print(line, soft_wrap=True),
        )
        command = f"webinfra bench --tls --duration {duration} --connections {connections} --rounds {rounds}"
        text = tls_markdown(tls_report, command)
        console.print(text, markup=False)
        if md_out:
            Path(md_out).write_text(text)
        return
    report = run_bench(
        duration=duration,
        connections=connections,
        rounds=rounds,
        keep=keep,
        say=lambda line: console.print(line, soft_wrap=True),
    )
    command = " ".join(
        ["webinfra bench", f"--duration {duration}", f"--connections {connections}", f"--rounds {rounds}"]
    )
    text = markdown(report, command)
    console.print(text)
    if md_out:
        Path(md_out).write_text(text)


def main() -> None:
    cli(prog_name="webinfra")


if __name__ == "__main__":
    main()
