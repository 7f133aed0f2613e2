"""`webinfra status`, `weight`, `start`, `stop`, `fail`, `recover`, `switchover`: operating a running cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from webinfra.cli import common
from webinfra.cli.common import (
    cluster_option,
    complete_host,
    handle_errors,
    host_argument,
    json_option,
    open_cluster,
    open_operable,
    print_json,
    progress_printer,
    service_argument,
    wide_console,
)
from webinfra.errors import EXIT_DEGRADED, EXIT_DOWN, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from webinfra.ops.faults import Mode

STATUS_EXIT = {"healthy": 0, "degraded": EXIT_DEGRADED, "down": EXIT_DOWN}


@click.command()
@json_option
@click.option("--watch", is_flag=True, help="Redraw every second, with requests/s, 5xx, p99, lag and alerts.")
@cluster_option
@handle_errors
def status(
    as_json: bool, watch: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Show hosts, services, load-balancer backends and database replication.

    Exit 0: healthy; 4: degraded (the site serves, something is missing); 5: the site is down."""
    from webinfra.observe.status import snapshot

    cluster = open_cluster(topology_file, cluster_name, state_dir)
    if watch:
        if as_json:
            raise UsageError("--watch draws tables; it does not go with --json")
        from webinfra.cli.watch import watch as watch_live

        watch_live(common.console, cluster)
        return
    snap = snapshot(cluster)
    if as_json:
        print_json(snap)
    else:
        from webinfra.cli.tables import render_status  # rich: only for the table

        out: Console = wide_console()
        render_status(out, snap)
        for problem in snap["health"]["problems"]:
            out.print(f"[yellow]![/] {problem}", soft_wrap=True)
    sys.exit(STATUS_EXIT[snap["health"]["state"]])


@click.command()
@click.argument("server", shell_complete=complete_host)
@click.argument("weight", type=int)
@json_option
@cluster_option
@handle_errors
def weight(
    server: str,
    weight: int,
    as_json: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Change a backend's load-balancer weight live (runtime API; no reload)."""
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    cluster.set_weight(server, weight)
    if as_json:
        print_json({"cluster": cluster.topology.name, "server": server, "weight": weight})
    else:
        common.console.print(f"weight of {server} is now {weight}")


@click.command()
@host_argument()
@service_argument
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


@click.command()
@host_argument()
@service_argument
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


@click.command()
@host_argument()
@click.option("--service", default=None, help="Only this service (default: the whole host).")
@click.option(
    "--mode",
    type=click.Choice(["crash", "stop", "partition", "slow", "freeze"]),
    default="crash",
    show_default=True,
    help="crash = SIGKILL (a whole host: link down too); stop = clean stop; partition = traffic dropped; "
    "slow = 200 ms delay on what the host sends (tc netem; a CPU quota where the kernel has no netem); "
    "freeze = SIGSTOP one --service (recover resumes it).",
)
@json_option
@cluster_option
@handle_errors
def fail(
    host: str,
    service: str | None,
    mode: Mode,  # one of the click.Choice above
    as_json: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Inject a fault into a host (see also: recover)."""
    from webinfra.ops.faults import fail as inject

    cluster = open_operable(topology_file, cluster_name, state_dir)
    what = inject(cluster, host, service, mode)
    if as_json:
        print_json({"cluster": cluster.topology.name, "host": host, "service": service, "mode": mode, "fault": what})
    else:
        common.console.print(f"{host}: {what}")


@click.command()
@host_argument()
@json_option
@cluster_option
@handle_errors
def recover(
    host: str, as_json: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Undo any fault on a host and start its services again."""
    from webinfra.ops.faults import recover as undo

    cluster = open_operable(topology_file, cluster_name, state_dir)
    undo(cluster, host)
    if as_json:
        print_json({"cluster": cluster.topology.name, "host": host, "recovered": True})
    else:
        common.console.print(f"{host}: recovered")


@click.command()
@click.option("--to", "target", default=None, shell_complete=complete_host, help="The replica to promote.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the new primary.")
@json_option
@cluster_option
@handle_errors
def switchover(
    target: str | None,
    timeout: float,
    as_json: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Planned change of the primary database, without losing a write (writes pause briefly).

    Default --to: the most advanced replica."""
    from webinfra.ops.switchover import switchover as do_switchover

    cluster = open_operable(topology_file, cluster_name, state_dir)
    old, new, seconds = do_switchover(cluster, target, timeout)
    if as_json:
        print_json({"cluster": cluster.topology.name, "old_primary": old, "new_primary": new, "seconds": seconds})
    else:
        common.console.print(f"primary: {old} -> {new} in {seconds:.1f}s")
