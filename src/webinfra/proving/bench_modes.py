"""What `webinfra bench` runs, below the CLI: the mode its flags choose, and each mode's run and Markdown.

The default run, `--tls`, `--monitoring`, `--mixes`, `--failover` each return (report, Markdown); `--scale`
prints its own text (bench_scale.run_from_cli). Add a mode: its flag in the CLI, a branch in `run_mode`
(and in PROGRESS_MODES when it takes minutes); `--json` and `--markdown` then work for it unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from webinfra.errors import UsageError
from webinfra.proving import bench, bench_failover, bench_mixes, bench_monitoring
from webinfra.proving.bench import BenchParams

Say = Callable[[str], None]
PROGRESS_MODES = ("mixes", "failover")  # they take minutes: the CLI shows a progress bar


def choose_mode(flags: Mapping[str, bool], scratch_name: str | None, scratch_subnet: str | None) -> str:
    """The one mode the flags ask for ("seed" when none), or a UsageError."""
    chosen = [name for name, on in flags.items() if on]
    if len(chosen) > 1:
        raise UsageError(f"choose one of --{', --'.join(chosen)}")
    mode = chosen[0] if chosen else "seed"
    if scratch_subnet and mode != "failover":
        raise UsageError("--scratch-subnet: only with --failover (--scale takes --subnet-octet)")
    if scratch_name and mode not in ("failover", "scale"):
        raise UsageError("--scratch-name: only with --failover or --scale")
    return mode


def steps(mode: str, params: BenchParams) -> int:
    """How many steps a progress mode reports through `tick`."""
    return bench_mixes.mixes_steps(params.rounds) if mode == "mixes" else bench_failover.failover_steps(params.runs)


def run_mode(mode: str, params: BenchParams, say: Say, tick: Callable[[], None]) -> tuple[Any, str]:
    """Run `mode`; returns its report and the Markdown that quotes the command."""
    if mode == "mixes":
        report: Any = bench_mixes.run_mixes(params, say=say, tick=tick)
        return report, bench_mixes.mixes_markdown(report, f"webinfra bench --mixes {params.flags}")
    if mode == "failover":
        report = bench_failover.run_failover(params, say=say, tick=tick)
        return report, bench_failover.failover_markdown(report, f"webinfra bench --failover --runs {params.runs}")
    if mode == "monitoring":
        report = bench_monitoring.run_monitoring_bench(params, say=say)
        return report, bench_monitoring.monitoring_markdown(report, f"webinfra bench --monitoring {params.flags}")
    if mode == "tls":
        report = bench.run_tls_bench(params, say=say)
        return report, bench.tls_markdown(report, f"webinfra bench --tls {params.flags}")
    report = bench.run_bench(params, say=say)
    return report, bench.markdown(report, f"webinfra bench {params.flags}")


def report_json(mode: str, markdown: str, report: Any) -> str:
    """{mode, command, report}: the command is the one the Markdown's first line quotes."""
    command = markdown.splitlines()[0].removeprefix("Command: ").strip("`")
    # is_dataclass is also true of a dataclass itself; asdict takes instances only.
    body = dataclasses.asdict(report) if dataclasses.is_dataclass(report) and not isinstance(report, type) else report
    return json.dumps({"mode": mode, "command": command, "report": body}, indent=2, default=str)
