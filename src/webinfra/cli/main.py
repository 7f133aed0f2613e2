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
    if cluster.topology.tls.enabled:
        from webinfra.services.pki import ca_path

        console.print(
            f"[dim]HTTPS with webinfra's local CA: curl --cacert {ca_path(cluster.topology, cluster.layout)} "
            f"{cluster.topology.site_url}api/entries[/]",
            soft_wrap=True,
        )


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
    type=click.Choice(["crash", "stop", "partition", "slow"]),
    default="crash",
    show_default=True,
    help="crash = SIGKILL (a whole host: link down too); stop = clean stop; partition = traffic dropped; "
    "slow = 200 ms delay on what the host sends (tc netem; a CPU quota where the kernel has no netem).",
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
    "--mixes",
    "mixes_mode",
    is_flag=True,
    help="Instead: read-only, 90/10 and 50/50 mixes via the VIP vs one app server direct, HTTPS vs HTTP, and "
    "replication lag under write load (two hardened clusters side by side).",
)
@click.option(
    "--failover",
    "failover_mode",
    is_flag=True,
    help="Instead: VIP takeover, DB failover, acknowledged writes lost, failed requests during an app-server "
    "crash (hardened cluster; --runs each, medians).",
)
@click.option("--runs", default=3, show_default=True, help="--failover: runs of each fault.")
@click.option(
    "--scale",
    "scale_mode",
    is_flag=True,
    help="Instead: cold and second up, status, memory and Prometheus of generated clusters, one size after another.",
)
@click.option("--sizes", default="7,10,20,40", show_default=True, help="--scale: host counts.")
@click.option("--subnet-octet", default=None, type=int, help="--scale: its scratch subnet 198.18.N.0/24 (default 200).")
@click.option("--name", "scale_name", default="scale", show_default=True, help="--scale: its scratch cluster's name.")
@click.option("--json", "as_json", is_flag=True, help="--scale: print the results as JSON.")
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
    mixes_mode: bool,
    failover_mode: bool,
    runs: int,
    scale_mode: bool,
    sizes: str,
    subnet_octet: int | None,
    scale_name: str,
    as_json: bool,
    md_out: str | None,
) -> None:
    """Measure cold up time, and LB vs direct throughput and latency, in one run (own cluster)."""
    from webinfra.control.bench import markdown, run_bench, run_tls_bench, tls_markdown

    require_root()
    if scale_mode:
        from webinfra.control.bench_scale import run_from_cli

        click.echo(run_from_cli(sizes, subnet_octet, scale_name, keep=keep, as_json=as_json, md_out=md_out))
        return
    if mixes_mode or failover_mode:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from webinfra.control import bench_ha

        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        )
        if mixes_mode:
            task = progress.add_task("bench --mixes", total=bench_ha.mixes_steps(rounds))
        else:
            task = progress.add_task("bench --failover", total=bench_ha.failover_steps(runs))

        def say(line: str) -> None:
            progress.update(task, description=escape(line[:90]))
            progress.console.print(f"  {escape(line)}", soft_wrap=True)

        def tick() -> None:
            progress.advance(task)

        with progress:
            if mixes_mode:
                mix_report = bench_ha.run_mixes(
                    duration=duration, connections=connections, rounds=rounds, keep=keep, say=say, tick=tick
                )
                command = f"webinfra bench --mixes --duration {duration} --connections {connections} --rounds {rounds}"
                text = bench_ha.mixes_markdown(mix_report, command)
            else:
                fo_report = bench_ha.run_failover(runs=runs, keep=keep, say=say, tick=tick)
                text = bench_ha.failover_markdown(fo_report, f"webinfra bench --failover --runs {runs}")
        click.echo(text)
        if md_out:
            Path(md_out).write_text(text)
        return
    flags = f"--duration {duration} --connections {connections} --rounds {rounds}"
    params = {"duration": duration, "connections": connections, "rounds": rounds, "keep": keep}

    def say(line: str) -> None:
        console.print(line, soft_wrap=True)

    if monitoring_mode:
        from webinfra.control.bench_monitoring import monitoring_markdown, run_monitoring_bench

        text = monitoring_markdown(run_monitoring_bench(**params, say=say), f"webinfra bench --monitoring {flags}")
    elif tls_mode:
        text = tls_markdown(run_tls_bench(**params, say=say), f"webinfra bench --tls {flags}")
    else:
        text = markdown(run_bench(**params, say=say), f"webinfra bench {flags}")
    console.print(text, markup=False)
    if md_out:
        Path(md_out).write_text(text)


@cli.command()
@click.argument("scenario", metavar="SCENARIO")
@click.option(
    "-f",
    "--file",
    "topology_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Topology to bring up for the run (default: examples/hardened.toml), under its own name and subnet.",
)
@click.option("-c", "--cluster", "cluster_name", default=None, help="Run on this running cluster instead.")
@state_dir_option
@click.option("--duration", default=20.0, show_default=True, help="Seconds: D/4 before the fault, D/2 held, D/4 after.")
@click.option(
    "--short", is_flag=True, help="The CI form: 1.5 s before, 1.5 s held (longer until recovered), 1.5 s after."
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), default=None, help="Write the timeline PNG here.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="all: the report directory (default chaos-report/); compare: the docs directory (default docs/).",
)
@click.option("--keep", is_flag=True, help="Leave the cluster it brought up running afterwards.")
@handle_errors
def chaos(
    scenario: str,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
    duration: float,
    short: bool,
    as_json: bool,
    png_path: str | None,
    out_dir: str | None,
    keep: bool,
) -> None:
    """Break one thing under load and report what the site saw (see docs/RESILIENCE.md).

    SCENARIO is one of: app-crash, app-partition, lb-crash, lb-host-down, primary-crash, primary-partition,
    replica-down, replica-slow, etcd-member-down, full-restart; or `all` (every one: report.md + PNGs), or
    `compare` (all of them on examples/seed.toml and examples/hardened.toml: docs/RESILIENCE.md).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from webinfra.control.chaos import report, suite
    from webinfra.control.chaos.run import Timing, example_file, run_all
    from webinfra.control.chaos.scenarios import NAMES

    if scenario not in (*NAMES, "all", "compare"):
        raise UsageError(f"unknown scenario {scenario!r} (scenarios: {', '.join(NAMES)}; or all, compare)")
    if scenario == "compare" and (topology_file or cluster_name):
        raise UsageError("compare brings up examples/seed.toml and examples/hardened.toml itself; no -f or -c")
    if png_path and scenario in ("all", "compare"):
        raise UsageError("--png is for one scenario; all and compare write their PNGs under --out")
    if duration < 4:
        raise UsageError(f"--duration {duration:g}: at least 4 seconds")
    require_root()
    timing = Timing.short() if short else Timing.for_duration(duration)
    names = list(NAMES) if scenario in ("all", "compare") else [scenario]
    flags = "--short" if short else f"--duration {duration:g}"
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    task = progress.add_task("starting", total=len(names) * (2 if scenario == "compare" else 1))

    def say(line: str) -> None:
        progress.update(task, description=escape(line[:100]))

    def done(result: report.ChaosResult) -> None:
        progress.advance(task)
        progress.console.print(f"  {escape(' | '.join(report.row(result)[:7]))}", soft_wrap=True)

    with progress:
        if scenario == "compare":
            docs = Path(out_dir or "docs")
            out, seed, hardened = suite.compare(
                docs,
                timing=timing,
                root=state_dir,
                command=f"webinfra chaos compare {flags} --out {docs}/",
                say=say,
                done=done,
            )
            results = seed + hardened
        else:
            png_dir = Path(out_dir or "chaos-report") if scenario == "all" else None
            if png_path:
                import tempfile

                png_dir = Path(tempfile.mkdtemp(prefix="webinfra-chaos-"))
            if cluster_name:
                cluster = Cluster.existing(cluster_name, state_dir)
                design = cluster.topology.name
                results = run_all(cluster, names, timing=timing, design=design, png_dir=png_dir, say=say, done=done)
            else:
                path = Path(topology_file) if topology_file else example_file("hardened.toml")
                design = path.stem
                results = suite.run_design(
                    path.read_text(),
                    design,
                    names=names,
                    timing=timing,
                    png_dir=png_dir,
                    root=state_dir,
                    keep=keep,
                    say=say,
                    done=done,
                )
            if png_path and results and results[0].png:
                import shutil

                Path(png_path).parent.mkdir(parents=True, exist_ok=True)
                results[0].png = str(shutil.move(results[0].png, png_path))
    if scenario == "compare":
        console.print(f"wrote {out} and {len(list((docs / 'resilience').glob('*.png')))} PNGs under {docs}/resilience/")
    elif scenario == "all":
        assert png_dir is not None
        source = f" -f {topology_file}" if topology_file else f" -c {cluster_name}" if cluster_name else ""
        where = suite.write_report(results, timing, f"webinfra chaos all{source} {flags} --out {png_dir}", png_dir)
        console.print(f"wrote {where}")
    if as_json:
        click.echo(report.to_json(results[0] if len(results) == 1 else results))
    else:
        out_console = console if console.is_terminal else Console(highlight=False, width=240)
        out_console.print(report.rich_table(results, title=f"chaos: {results[0].design if results else ''}"))
    bad = [r for r in results if r.applicable and (r.error or r.acked_writes_lost or r.split_brain_windows)]
    if bad:
        sys.exit(1)


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--version", "version", default=None, help="Version label (default: a short hash of PATH's content).")
@click.option(
    "--health-timeout",
    default=30.0,
    show_default=True,
    help="Seconds a new app may take to answer /healthz with the new version before it is rolled back.",
)
@cluster_option
@handle_errors
def deploy(
    path: Path | None,
    version: str | None,
    health_timeout: float,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Ship a code base to the app servers one at a time, with no failed request (default PATH: the
    built-in site package). A server whose new version fails its health check is rolled back."""
    from webinfra.control.deploy import deploy as rolling_deploy

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    result = rolling_deploy(cluster, path, version, health_timeout=health_timeout, progress=progress_printer())
    if not result.switched:
        console.print(f"version {result.version} already runs on every app server; nothing to do")
        return
    console.print(f"[bold green]deployed[/] {result.version} to {', '.join(result.switched)} in {result.seconds:.1f}s")


@cli.group()
def scale() -> None:
    """Add or remove app servers and DB replicas live; the topology file is updated."""


@scale.command(name="add-server")
@click.argument("name")
@click.option("--weight", type=int, default=None, help="Load-balancer weight (default 1).")
@cluster_option
@handle_errors
def scale_add_server(
    name: str, weight: int | None, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Add an app server (web + app) and put it into every load balancer without a reload."""
    from webinfra.control.scale import add_server

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    address = add_server(cluster, name, weight, topology_file=topology_file, progress=progress_printer())
    console.print(f"[bold green]added[/] server {name} ({address})")


@scale.command(name="remove-server")
@click.argument("name")
@cluster_option
@handle_errors
def scale_remove_server(name: str, topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> None:
    """Drain an app server out of rotation, then stop and remove it."""
    from webinfra.control.scale import remove_server

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    remove_server(cluster, name, topology_file=topology_file, progress=progress_printer())
    console.print(f"[bold green]removed[/] server {name}")


@scale.command(name="add-replica")
@click.argument("name")
@click.option("--from", "source", default=None, help="Clone from this DB host (default: the primary).")
@cluster_option
@handle_errors
def scale_add_replica(
    name: str, source: str | None, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Add a DB replica: cloned with mariabackup from a running node, then replicating from the primary."""
    from webinfra.control.scale import add_replica

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    gtid = add_replica(cluster, name, source, topology_file=topology_file, progress=progress_printer())
    console.print(f"[bold green]added[/] replica {name} (cloned at {gtid or 'an empty position'})")


@scale.command(name="remove-replica")
@click.argument("name")
@cluster_option
@handle_errors
def scale_remove_replica(
    name: str, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Take a DB replica out of the apps' routing, then stop and remove it."""
    from webinfra.control.scale import remove_replica

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    remove_replica(cluster, name, topology_file=topology_file, progress=progress_printer())
    console.print(f"[bold green]removed[/] replica {name}")


def main() -> None:
    cli(prog_name="webinfra")


if __name__ == "__main__":
    main()
