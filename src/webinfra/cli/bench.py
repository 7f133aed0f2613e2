"""`webinfra bench` and `webinfra chaos`: measurements and fault drills on clusters of their own.

`bench` has one default run and alternative modes (`--tls`, `--monitoring`, `--mixes`, `--failover`,
`--scale`): which mode the flags choose and what each runs is proving/bench_modes.py; add a mode by adding its
option here and its branch there. `chaos` checks and runs through proving/chaos/command.py. This module
parses and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click
from rich.console import Console
from rich.markup import escape

from webinfra.cli.common import F, confirm, console, err_console, handle_errors, names_servers, state_dir_option
from webinfra.control.cluster import require_root

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster
    from webinfra.proving.bench_modes import BenchParams
    from webinfra.proving.chaos.command import ChaosRequest
    from webinfra.proving.chaos.report import ChaosResult


scratch_options = [
    click.option("--scratch-name", default=None, help="Name of the cluster the run brings up (default: its own)."),
    click.option("--scratch-subnet", default=None, help="Subnet of the cluster the run brings up (default: its own)."),
]


def with_scratch_options(fn: F) -> F:
    for option in reversed(scratch_options):
        fn = option(fn)
    return fn


def _say(line: str) -> None:
    err_console.print(line, soft_wrap=True)


def _noop() -> None:
    pass


def _with_progress(mode: str, params: BenchParams) -> tuple[Any, str]:
    """A mode that takes minutes, under a progress bar on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from webinfra.proving import bench_modes

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console
    )
    task = progress.add_task(f"bench --{mode}", total=bench_modes.steps(mode, params))

    def say(line: str) -> None:
        progress.update(task, description=escape(line[:90]))
        progress.console.print(f"  {escape(line)}", soft_wrap=True)

    with progress:
        return bench_modes.run_mode(mode, params, say, lambda: progress.advance(task))


@click.command()
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
@with_scratch_options
@click.option(
    "--markdown",
    "md_out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the results as Markdown to this file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print {mode, command, report} as JSON (see docs/CLI.md).")
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
    scratch_name: str | None,
    scratch_subnet: str | None,
    md_out: str | None,
    as_json: bool,
) -> None:
    """Measure cold up time, and LB vs direct throughput and latency, in one run (own cluster)."""
    from webinfra.proving import bench_modes
    from webinfra.proving.bench_failover import FAILOVER_CLUSTER
    from webinfra.proving.scratch import scratch_at

    flags = {"tls": tls_mode, "monitoring": monitoring_mode, "mixes": mixes_mode, "failover": failover_mode}
    mode = bench_modes.choose_mode({**flags, "scale": scale_mode}, scratch_name, scratch_subnet)
    if mode == "scale":
        from webinfra.proving.bench_scale import SCALE_CLUSTER, run_from_cli

        require_root()
        name = scratch_name or SCALE_CLUSTER
        click.echo(run_from_cli(sizes, subnet_octet, name, keep=keep, as_json=as_json, md_out=md_out))
        return
    at = scratch_at(scratch_name, scratch_subnet, FAILOVER_CLUSTER)
    params = bench_modes.BenchParams(duration, connections, rounds, keep, runs, at)
    require_root()
    if mode in bench_modes.PROGRESS_MODES:
        report, text = _with_progress(mode, params)
    else:
        report, text = bench_modes.run_mode(mode, params, _say, _noop)
    click.echo(bench_modes.report_json(mode, text, report) if as_json else text)
    if md_out:
        Path(md_out).write_text(text)


@click.command()
@click.argument("scenario", metavar="SCENARIO")
@click.option(
    "-f",
    "--file",
    "topology_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Topology to bring up for the run (default: examples/hardened.toml), under its own name and subnet; "
    "servers over SSH: the running servers it names.",
)
@click.option("-c", "--cluster", "cluster_name", default=None, help="Run on this running cluster instead.")
@click.option("-y", "--yes", is_flag=True, help="On servers: do not ask before breaking them (for scripts).")
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
    help="all: the report directory (default chaos-report/); compare, nemesis: the docs directory (RESILIENCE.md).",
)
@click.option("--keep", is_flag=True, help="Leave the cluster it brought up running afterwards.")
@click.option("--seed", default=1, show_default=True, help="nemesis: the seed of its fault schedule (replayable).")
@click.option("--steps", type=click.IntRange(1, 10_000), default=None, help="nemesis: steps (default: duration/25).")
@with_scratch_options
@handle_errors
def chaos(
    scenario: str,
    topology_file: str | None,
    cluster_name: str | None,
    yes: bool,
    state_dir: Path | None,
    duration: float,
    short: bool,
    as_json: bool,
    png_path: str | None,
    out_dir: str | None,
    keep: bool,
    seed: int,
    steps: int | None,
    scratch_name: str | None,
    scratch_subnet: str | None,
) -> None:
    """Break one thing under load and report what the site saw (see docs/RESILIENCE.md).

    SCENARIO is one of: app-crash, app-partition, lb-crash, lb-host-down, primary-crash, primary-partition,
    replica-down, replica-slow, etcd-member-down, full-restart; or `all` (every one: report.md + PNGs), or
    `compare` (all of them on examples/seed.toml and examples/hardened.toml: docs/RESILIENCE.md), or
    `nemesis` (writers the whole time, a seeded schedule of single and overlapping faults for --duration
    seconds, then a check of the data: lost, duplicated or divergent writes, two writable nodes).
    On servers over SSH (-f servers.toml, -c NAME) it runs on the running servers, after asking (--yes).
    """
    from webinfra.proving.chaos.command import chaos_request, failed, require_plots

    at = _chaos_where(scenario, topology_file, cluster_name, state_dir, keep, scratch_name, scratch_subnet)
    if scenario == "nemesis":
        from webinfra.cli import nemesis

        if png_path or out_dir:  # its timeline PNG
            require_plots()
        nemesis.run_command(
            cluster=_nemesis_target(at.servers, topology_file, cluster_name, state_dir, duration, steps, yes),
            topology_file=topology_file,
            cluster_name=cluster_name,
            state_dir=state_dir,
            duration=duration,
            seed=seed,
            steps=steps,
            as_json=as_json,
            png_path=png_path,
            out_dir=out_dir,
            keep=keep,
            console=console,
            err_console=err_console,
        )
        return
    req = chaos_request(
        scenario,
        short=short,
        duration=duration,
        topology_file=topology_file,
        cluster_name=cluster_name,
        state_dir=state_dir,
        png_path=png_path,
        out_dir=out_dir,
        keep=keep,
        scratch=at.scratch,
    )
    results = _run_on_servers(req, yes, as_json) if at.servers else _run_emulated(req, as_json)
    if failed(results):
        sys.exit(1)


class ChaosWhere(NamedTuple):
    scratch: tuple[str, str]  # the cluster a run brings up: (name, subnet)
    servers: bool  # -f/-c names servers over SSH: run on them


def _chaos_where(
    scenario: str,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
    keep: bool,
    scratch_name: str | None,
    scratch_subnet: str | None,
) -> ChaosWhere:
    """The arguments checked: the scratch cluster's (name, subnet), and whether -f/-c names servers (what
    cannot run on them refused)."""
    from webinfra.proving.chaos.command import chaos_scratch, check_on_servers

    scratch = chaos_scratch(scenario, cluster_name, scratch_name, scratch_subnet)
    servers = names_servers(topology_file, cluster_name, state_dir)
    if servers:
        check_on_servers(scenario, keep, bool(scratch_name or scratch_subnet))
    return ChaosWhere(scratch, servers)


def _nemesis_target(
    servers: bool,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
    duration: float,
    steps: int | None,
    yes: bool,
) -> Cluster | None:
    """On servers: the running cluster, once whoever runs it has said yes to what the nemesis breaks. Else
    None (the nemesis brings up its own cluster, or opens -c NAME's, in this machine's namespaces: root)."""
    from webinfra.proving.chaos.command import running_servers

    if not servers:
        require_root()
        return None
    cluster = running_servers(topology_file, cluster_name, state_dir)
    length = f"{steps} steps" if steps is not None else f"~{duration:g} s"
    confirm(
        f"chaos nemesis breaks the servers of {cluster.topology.name} for {length}, faults overlapping (primary "
        "crashes and partitions, a frozen agent, an etcd member and the VIP holder lost, switchovers), each "
        "undone, with writers through the VIP the whole time. Go on?",
        yes,
    )
    return cluster


def _run_emulated(req: ChaosRequest, as_json: bool) -> list[ChaosResult]:
    require_root()
    return _run_chaos_with_progress(req, as_json)


def _run_on_servers(req: ChaosRequest, yes: bool, as_json: bool) -> list[ChaosResult]:
    """The running servers cluster opened and its roles read, what breaks confirmed, then the run."""
    from webinfra.proving.chaos.command import servers_cluster

    cluster, question = servers_cluster(req)
    confirm(question, yes)
    return _run_chaos_with_progress(req, as_json, cluster)


def _run_chaos_with_progress(req: ChaosRequest, as_json: bool, servers: Cluster | None = None) -> list[ChaosResult]:
    """Run under a transient progress bar (a row per finished scenario), then print the results."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from webinfra.proving.chaos import report
    from webinfra.proving.chaos.command import run_chaos

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    progress = Progress(*columns, TimeElapsedColumn(), console=err_console, transient=True)
    task = progress.add_task("starting", total=req.steps)

    def say(line: str) -> None:
        progress.update(task, description=escape(line[:100]))

    def done(result: ChaosResult) -> None:
        progress.advance(task)
        progress.console.print(f"  {escape(' | '.join(report.row(result)[:7]))}", soft_wrap=True)

    with progress:
        results, wrote = run_chaos(req, say, done, servers)
    if wrote:
        console.print(wrote)
    if as_json:
        click.echo(report.to_json(results[0] if len(results) == 1 else results))
    else:
        out_console = console if console.is_terminal else Console(highlight=False, width=240)
        where = " (servers over SSH)" if servers is not None else ""
        out_console.print(report.rich_table(results, title=f"chaos: {results[0].design if results else ''}{where}"))
    return results
