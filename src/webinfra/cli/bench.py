"""`webinfra bench` and `webinfra chaos`: measurements and fault drills on clusters of their own.

`bench` has one default run and alternative modes (`--tls`, `--monitoring`, `--mixes`, `--failover`). A mode
is a flag plus an entry in `_simple_mode`/`_progress_mode`, each returning (report, Markdown): add a mode by
adding its option and its branch there; `--json` and `--markdown` then work for it unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TypedDict

import click
from rich.console import Console
from rich.markup import escape

from webinfra.cli.common import F, console, err_console, handle_errors, state_dir_option
from webinfra.control.cluster import UsageError, require_root


def _scratch_cluster(name: str | None, subnet: str | None, default: tuple[str, str]) -> tuple[str, str]:
    """The (name, subnet) of a scratch cluster a bench or chaos run brings up: the defaults unless given."""
    import ipaddress
    import re

    chosen = (name or default[0], subnet or default[1])
    if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", chosen[0]):
        raise UsageError(f"--scratch-name {chosen[0]!r}: 1-8 lowercase letters and digits, a letter first")
    try:
        ipaddress.IPv4Network(chosen[1])
    except ValueError:
        raise UsageError(f"--scratch-subnet {chosen[1]!r}: not an IPv4 network like 198.18.33.0/24") from None
    return chosen


scratch_options = [
    click.option("--scratch-name", default=None, help="Name of the cluster the run brings up (default: its own)."),
    click.option("--scratch-subnet", default=None, help="Subnet of the cluster the run brings up (default: its own)."),
]


def with_scratch_options(fn: F) -> F:
    for option in reversed(scratch_options):
        fn = option(fn)
    return fn


def report_json(mode: str, command: str, report: Any) -> str:
    # is_dataclass is also true of a dataclass itself; asdict takes instances only.
    body = dataclasses.asdict(report) if dataclasses.is_dataclass(report) and not isinstance(report, type) else report
    return json.dumps({"mode": mode, "command": command, "report": body}, indent=2, default=str)


def _progress_mode(
    mode: str, duration: int, connections: int, rounds: int, runs: int, keep: bool, cluster_at: tuple[str, str]
) -> tuple[Any, str]:
    """Modes with a progress bar (they take minutes): mixes, failover (on the scratch cluster `cluster_at`)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from webinfra.proving import bench_ha

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console
    )
    total = bench_ha.mixes_steps(rounds) if mode == "mixes" else bench_ha.failover_steps(runs)
    task = progress.add_task(f"bench --{mode}", total=total)

    def say(line: str) -> None:
        progress.update(task, description=escape(line[:90]))
        progress.console.print(f"  {escape(line)}", soft_wrap=True)

    def tick() -> None:
        progress.advance(task)

    with progress:
        if mode == "mixes":
            report: Any = bench_ha.run_mixes(
                duration=duration, connections=connections, rounds=rounds, keep=keep, say=say, tick=tick
            )
            command = f"webinfra bench --mixes --duration {duration} --connections {connections} --rounds {rounds}"
            return report, bench_ha.mixes_markdown(report, command)
        report = bench_ha.run_failover(runs=runs, keep=keep, say=say, tick=tick, cluster_at=cluster_at)
        return report, bench_ha.failover_markdown(report, f"webinfra bench --failover --runs {runs}")


class _RunParams(TypedDict):
    """The arguments every simple mode's run function takes (checked against each signature)."""

    duration: int
    connections: int
    rounds: int
    keep: bool


def _simple_mode(mode: str, duration: int, connections: int, rounds: int, keep: bool) -> tuple[Any, str]:
    """The default run, and the --tls and --monitoring comparisons."""
    from webinfra.proving.bench import markdown, run_bench, run_tls_bench, tls_markdown

    flags = f"--duration {duration} --connections {connections} --rounds {rounds}"
    params: _RunParams = {"duration": duration, "connections": connections, "rounds": rounds, "keep": keep}

    def say(line: str) -> None:
        err_console.print(line, soft_wrap=True)

    if mode == "monitoring":
        from webinfra.proving.bench_monitoring import monitoring_markdown, run_monitoring_bench

        report: Any = run_monitoring_bench(**params, say=say)
        return report, monitoring_markdown(report, f"webinfra bench --monitoring {flags}")
    if mode == "tls":
        report = run_tls_bench(**params, say=say)
        return report, tls_markdown(report, f"webinfra bench --tls {flags}")
    report = run_bench(**params, say=say)
    return report, markdown(report, f"webinfra bench {flags}")


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
    from webinfra.proving.bench_ha import FAILOVER_CLUSTER

    modes = {"tls": tls_mode, "monitoring": monitoring_mode, "mixes": mixes_mode, "failover": failover_mode}
    modes["scale"] = scale_mode
    chosen = [name for name, on in modes.items() if on]
    if len(chosen) > 1:
        raise UsageError(f"choose one of --{', --'.join(chosen)}")
    mode = chosen[0] if chosen else "seed"
    if scratch_subnet and mode != "failover":
        raise UsageError("--scratch-subnet: only with --failover (--scale takes --subnet-octet)")
    if scratch_name and mode not in ("failover", "scale"):
        raise UsageError("--scratch-name: only with --failover or --scale")
    if mode == "scale":
        from webinfra.proving.bench_scale import SCALE_CLUSTER, run_from_cli

        require_root()
        name = scratch_name or SCALE_CLUSTER
        click.echo(run_from_cli(sizes, subnet_octet, name, keep=keep, as_json=as_json, md_out=md_out))
        return
    at = _scratch_cluster(scratch_name, scratch_subnet, FAILOVER_CLUSTER)
    require_root()
    if mode in ("mixes", "failover"):
        report, text = _progress_mode(mode, duration, connections, rounds, runs, keep, at)
    else:
        report, text = _simple_mode(mode, duration, connections, rounds, keep)
    if as_json:
        click.echo(report_json(mode, text.splitlines()[0].removeprefix("Command: ").strip("`"), report))
    else:
        click.echo(text)
    if md_out:
        Path(md_out).write_text(text)


def _require_plots() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("PNG timelines need matplotlib: pip install 'webinfra[plots]'") from None


@click.command()
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
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from webinfra.proving.chaos import report, suite
    from webinfra.proving.chaos.command import ChaosRequest, failed, run_chaos
    from webinfra.proving.chaos.run import Timing
    from webinfra.proving.chaos.scenarios import NAMES

    if scenario not in (*NAMES, "all", "compare", "nemesis"):
        raise UsageError(f"unknown scenario {scenario!r} (scenarios: {', '.join(NAMES)}; or all, compare, nemesis)")
    if (scratch_name or scratch_subnet) and (scenario in ("compare", "nemesis") or cluster_name):
        raise UsageError("--scratch-name/--scratch-subnet: not with compare, nemesis or -c (no cluster brought up)")
    scratch = _scratch_cluster(scratch_name, scratch_subnet, suite.ALL_CLUSTER)
    if scenario == "nemesis":
        from webinfra.cli import nemesis

        if png_path or out_dir:  # its timeline PNG
            _require_plots()
        require_root()
        nemesis.run_command(
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
    if scenario == "compare" and (topology_file or cluster_name):
        raise UsageError("compare brings up examples/seed.toml and examples/hardened.toml itself; no -f or -c")
    if png_path and scenario in ("all", "compare"):
        raise UsageError("--png is for one scenario; all and compare write their PNGs under --out")
    if duration < 4:
        raise UsageError(f"--duration {duration:g}: at least 4 seconds")
    if png_path or scenario in ("all", "compare"):
        _require_plots()
    require_root()
    req = ChaosRequest(
        scenario,
        Timing.short() if short else Timing.for_duration(duration),
        "--short" if short else f"--duration {duration:g}",
        topology_file,
        cluster_name,
        state_dir,
        png_path,
        out_dir,
        keep,
        scratch,
    )
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    progress = Progress(*columns, console=err_console, transient=True)
    task = progress.add_task("starting", total=req.steps)

    def say(line: str) -> None:
        progress.update(task, description=escape(line[:100]))

    def done(result: report.ChaosResult) -> None:
        progress.advance(task)
        progress.console.print(f"  {escape(' | '.join(report.row(result)[:7]))}", soft_wrap=True)

    with progress:
        results, wrote = run_chaos(req, say, done)
    if wrote:
        console.print(wrote)
    if as_json:
        click.echo(report.to_json(results[0] if len(results) == 1 else results))
    else:
        out_console = console if console.is_terminal else Console(highlight=False, width=240)
        out_console.print(report.rich_table(results, title=f"chaos: {results[0].design if results else ''}"))
    if failed(results):
        sys.exit(1)
