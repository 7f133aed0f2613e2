"""`webinfra up`, `down`, `plan` and `validate`: a topology file and the cluster it describes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from webinfra.cli import servers, views
from webinfra.cli.common import (
    LOCAL_TOPOLOGY,
    cluster_option,
    confirm,
    console,
    default_topology_file,
    file_option,
    handle_errors,
    json_option,
    open_cluster,
    print_json,
    progress_printer,
    state_dir_option,
    yes_option,
)
from webinfra.control import plan_diff, preflight
from webinfra.control.cluster import Cluster, require_root
from webinfra.errors import EXIT_CHANGES_PENDING, EXIT_USAGE, UsageError
from webinfra.model import TopologyError, load_topology
from webinfra.model.load import DEFAULT_TOPOLOGY_NAME

FILE_HELP = f"Topology file (TOML). Default: ./{LOCAL_TOPOLOGY} if present, else the built-in topology."


@click.command()
@file_option(FILE_HELP)
@state_dir_option
@yes_option
@handle_errors
def up(topology_file: str | None, state_dir: Path | None, yes: bool) -> None:
    """Create the hosts and start every service (idempotent). Asks before removing a host or its data."""
    from webinfra.services.pki import check_tls_files

    topology_file = default_topology_file(topology_file)
    # Bad input first (one line, exit 2, for anyone), then root, then the state on disk (root's to read).
    topo = load_topology(topology_file)
    check_tls_files(topo, topology_file or DEFAULT_TOPOLOGY_NAME)
    if topo.machines.ssh:  # servers over SSH: no root needed here, nothing emulated
        servers.up(topo, Path(topology_file).read_text() if topology_file else "", state_dir)
        return
    require_root()
    cluster = Cluster.from_file(topology_file, state_dir)
    missing = preflight.missing_programs(cluster.plan)
    if missing:
        raise UsageError(preflight.describe_missing(missing))
    removals = plan_diff.diff(cluster).removals()
    if removals:
        confirm(f"up would {'; '.join(removals)} (cluster {cluster.topology.name}). Go on?", yes)
    started = time.monotonic()
    topo = cluster.topology
    console.print(f"[bold]webinfra up[/] cluster [cyan]{topo.name}[/] ({len(topo.hosts)} hosts, {topo.network.subnet})")
    cluster.up(progress_printer())
    console.print(f"[bold green]up[/] in {time.monotonic() - started:.1f}s — site [bold]{topo.site.name}[/] at")
    console.print(topo.site_url)
    if topo.tls.enabled:
        from webinfra.services.pki import ca_path

        console.print(
            f"[dim]HTTPS with webinfra's local CA: curl --cacert {ca_path(topo, cluster.layout)} "
            f"{topo.site_url}api/entries[/]",
            soft_wrap=True,
        )


@click.command()
@click.option("--purge", is_flag=True, help="Also delete the cluster's data (databases, secrets, logs). Asks first.")
@yes_option
@cluster_option
@handle_errors
def down(purge: bool, yes: bool, topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> None:
    """Stop every service and remove namespaces, veths and the bridge. Data is kept unless --purge."""
    cluster = open_cluster(topology_file, cluster_name, state_dir)
    if not cluster.topology.machines.ssh:
        require_root()
    if purge:
        confirm(
            f"down --purge deletes every piece of data of cluster {cluster.topology.name} "
            f"({cluster.layout.cluster_dir}: databases, secrets, logs). Go on?",
            yes,
        )
    if cluster.topology.machines.ssh:
        servers.down(cluster.topology, state_dir, purge)
        return
    cluster.down(purge=purge, progress=progress_printer())
    console.print(f"[bold]down[/] cluster {cluster.topology.name}" + (" (data purged)" if purge else " (data kept)"))


@click.command()
@file_option(FILE_HELP)
@click.option(
    "-c",
    "--cluster",
    "cluster_name",
    default=None,
    help="Instead of a file: the topology this cluster last applied (what an upgrade of webinfra would change).",
)
@state_dir_option
@click.option("--full", is_flag=True, help="Print every file `up` would write and the start order, not a diff.")
@click.option("--diff", "as_diff", is_flag=True, help="The diff (the default); on servers, pyinfra's dry run per host.")
@json_option
@handle_errors
def plan(
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
    full: bool,
    as_diff: bool,
    as_json: bool,
) -> None:
    """Show what `up` would change on the running cluster: files (diffs), services, hosts.

    Exit 0: no changes; 3: changes pending; 2: bad input."""
    if full and as_json:
        raise UsageError("--full prints the rendered files; it does not go with --json")
    if cluster_name and not topology_file:
        cluster = Cluster.existing(cluster_name, state_dir)
    else:
        cluster = Cluster.from_file(default_topology_file(topology_file), state_dir)
    if cluster.topology.machines.ssh and not full:
        servers.plan(cluster.topology, state_dir, as_json)
        return
    if full:
        views.print_full_plan(cluster)
        return
    changes = plan_diff.diff(cluster)
    if as_json:
        print_json(changes.to_json())
    else:
        views.print_plan_diff(changes)
    sys.exit(EXIT_CHANGES_PENDING if changes.changed else 0)


@click.command()
@file_option(FILE_HELP)
@json_option
@handle_errors
def validate(topology_file: str | None, as_json: bool) -> None:
    """Check a topology file without starting anything: every problem, one line each."""
    from webinfra.services.pki import check_tls_files

    topology_file = default_topology_file(topology_file)
    try:
        # What `plan` and `up` refuse of a file: the model's checks and the TLS files. (Names derived from the
        # topology cannot clash: a unit test builds the plan and network of every file that validates.)
        topo = load_topology(topology_file)
        check_tls_files(topo, topology_file or DEFAULT_TOPOLOGY_NAME)
    except TopologyError as exc:
        if as_json:
            print_json({"ok": False, "errors": [e.to_json() for e in exc.all_errors]})
        else:
            for error in exc.all_errors:
                views.print_error(str(error))
        sys.exit(EXIT_USAGE)
    if as_json:
        print_json(
            {"ok": True, "cluster": topo.name, "hosts": len(topo.hosts), "site_url": topo.site_url, "errors": []}
        )
    else:
        console.print(f"ok: cluster {topo.name}, {len(topo.hosts)} hosts, site {topo.site_url}")
