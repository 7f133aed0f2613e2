"""`webinfra deploy`, `rollback` and `scale`: changing the code and the size of a running cluster."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from webinfra.cli.common import (
    cluster_file,
    cluster_option,
    complete_host,
    console,
    handle_errors,
    json_option,
    open_operable,
    print_json,
    progress_printer,
)
from webinfra.cli.views import print_rows
from webinfra.control.cluster import Cluster
from webinfra.errors import UsageError

if TYPE_CHECKING:
    from webinfra.ops.deploy import DeployResult

Progress = Callable[[str, str, str], None]  # (host, service or step, what happened): progress_printer's

ADDRESS_HELP = "Its address in the subnet (default: the next free one; on servers the host of --ssh)."
SSH_HELP = "On servers: the new server's SSH address, user@host:port (key and become: [machines]'s)."
HEALTH_HELP = "Seconds a new app may take to answer /healthz with the new version before it is rolled back."


def _deploy_json(cluster: Cluster, result: DeployResult) -> dict[str, object]:
    return {"cluster": cluster.topology.name, **dataclasses.asdict(result)}


def _print_deployed(result: DeployResult) -> None:
    switched, version, seconds = result.switched, result.version, result.seconds
    if not switched:
        console.print(f"version {version} already runs on every app server; nothing to do")
    else:
        console.print(f"[bold green]deployed[/] {version} to {', '.join(switched)} in {seconds:.1f}s")


def _print_releases(cluster: Cluster, as_json: bool) -> None:
    from webinfra.ops.deploy import list_releases

    found = list_releases(cluster)
    if as_json:
        print_json({"cluster": cluster.topology.name, "releases": [dataclasses.asdict(r) for r in found]})
        return
    rows = []
    for r in found:
        when = datetime.fromtimestamp(r.deployed_at, UTC).strftime("%Y-%m-%d %H:%M:%S") if r.deployed_at else ""
        rows.append([r.version + (" (installed)" if r.installed else ""), when, ", ".join(r.running_on) or "-"])
    print_rows(f"releases of {cluster.topology.name}", ["Version", "Deployed (UTC)", "Running on"], rows)


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--version", "version", default=None, help="Version label (default: a short hash of PATH's content).")
@click.option("--health-timeout", default=30.0, show_default=True, help=HEALTH_HELP)
@click.option("--list", "list_only", is_flag=True, help="Show the releases kept on the app hosts, and where each runs.")
@json_option
@cluster_option
@handle_errors
def deploy(
    path: Path | None,
    version: str | None,
    health_timeout: float,
    list_only: bool,
    as_json: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Ship a code base to the app servers one at a time, with no failed request (default PATH: the
    built-in site package). A server whose new version fails its health check is rolled back."""
    from webinfra.ops.deploy import deploy as rolling_deploy

    cluster = open_operable(topology_file, cluster_name, state_dir)
    if list_only:
        if path or version:
            raise UsageError("--list shows the releases; it takes no PATH or --version")
        _print_releases(cluster, as_json)
        return
    result = rolling_deploy(cluster, path, version, health_timeout=health_timeout, progress=progress_printer(as_json))
    print_json(_deploy_json(cluster, result)) if as_json else _print_deployed(result)


@click.command()
@click.argument("version", required=False)
@click.option("--health-timeout", default=30.0, show_default=True, help=HEALTH_HELP)
@json_option
@cluster_option
@handle_errors
def rollback(
    version: str | None,
    health_timeout: float,
    as_json: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Go back to a kept release (default: the one deployed before the one running), one app server at a
    time with the same drain and health checks as deploy. `webinfra deploy --list` shows the releases."""
    from webinfra.ops.deploy import rollback as roll_back

    cluster = open_operable(topology_file, cluster_name, state_dir)
    result = roll_back(cluster, version, health_timeout=health_timeout, progress=progress_printer(as_json))
    print_json(_deploy_json(cluster, result)) if as_json else _print_deployed(result)


@click.group()
def scale() -> None:
    """Add or remove app servers and DB replicas live; the topology file is updated."""


def _scale(
    run: Callable[[Cluster, str | None, Progress], dict[str, object]],
    what: tuple[str, str, str],
    as_json: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """What every `scale` command does around its operation: open the cluster and the file it edits, run it
    with progress lines, print `{action} {kind} {name}` (with the address or clone position) or JSON."""
    cluster = open_operable(topology_file, cluster_name, state_dir)
    edited = cluster_file(topology_file, cluster_name)
    detail = run(cluster, edited, progress_printer(as_json))
    action, kind, name = what
    if as_json:
        print_json({"cluster": cluster.topology.name, "action": action, "kind": kind, "name": name, **detail})
        return
    extra = ""
    if "address" in detail:
        extra = f" ({detail['address']})"
    elif "cloned_at" in detail:
        extra = f" (cloned at {detail['cloned_at'] or 'an empty position'})"
    console.print(f"[bold green]{action}[/] {kind} {name}{extra}")


@scale.command(name="add-server")
@click.argument("name")
@click.option("--weight", type=int, default=None, help="Load-balancer weight (default 1).")
@click.option("--address", default=None, help=ADDRESS_HELP)
@click.option("--ssh", default=None, help=SSH_HELP)
@json_option
@cluster_option
@handle_errors
def scale_add_server(
    name: str,
    weight: int | None,
    address: str | None,
    ssh: str | None,
    as_json: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Add an app server (web + app) and put it into every load balancer without a reload."""
    from webinfra.ops.scale import add_server

    def run(cluster: Cluster, edited: str | None, progress: Progress) -> dict[str, object]:
        added = add_server(cluster, name, weight, address=address, ssh=ssh, topology_file=edited, progress=progress)
        return {"address": added}

    _scale(run, ("added", "server", name), as_json, topology_file, cluster_name, state_dir)


@scale.command(name="remove-server")
@click.argument("name", shell_complete=complete_host)
@json_option
@cluster_option
@handle_errors
def scale_remove_server(
    name: str, as_json: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Drain an app server out of rotation, then stop and remove it."""
    from webinfra.ops.scale import remove_server

    def run(cluster: Cluster, edited: str | None, progress: Progress) -> dict[str, object]:
        remove_server(cluster, name, topology_file=edited, progress=progress)
        return {}

    _scale(run, ("removed", "server", name), as_json, topology_file, cluster_name, state_dir)


@scale.command(name="add-replica")
@click.argument("name")
@click.option("--from", "source", default=None, shell_complete=complete_host, help="Clone from this DB host.")
@click.option("--address", default=None, help=ADDRESS_HELP)
@click.option("--ssh", default=None, help=SSH_HELP)
@json_option
@cluster_option
@handle_errors
def scale_add_replica(
    name: str,
    source: str | None,
    address: str | None,
    ssh: str | None,
    as_json: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
) -> None:
    """Add a DB replica: cloned with mariabackup from a running node (default: the primary), then
    replicating from the primary."""
    from webinfra.ops.scale import add_replica

    def run(cluster: Cluster, edited: str | None, progress: Progress) -> dict[str, object]:
        gtid = add_replica(cluster, name, source, address=address, ssh=ssh, topology_file=edited, progress=progress)
        return {"cloned_at": gtid or None}

    _scale(run, ("added", "replica", name), as_json, topology_file, cluster_name, state_dir)


@scale.command(name="remove-replica")
@click.argument("name", shell_complete=complete_host)
@json_option
@cluster_option
@handle_errors
def scale_remove_replica(
    name: str, as_json: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None
) -> None:
    """Take a DB replica out of the apps' routing, then stop and remove it."""
    from webinfra.ops.scale import remove_replica

    def run(cluster: Cluster, edited: str | None, progress: Progress) -> dict[str, object]:
        remove_replica(cluster, name, topology_file=edited, progress=progress)
        return {}

    _scale(run, ("removed", "replica", name), as_json, topology_file, cluster_name, state_dir)
