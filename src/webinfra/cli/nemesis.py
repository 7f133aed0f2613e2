"""`webinfra chaos nemesis`: the Jepsen-style run (proving/chaos/nemesis_*.py), printed as tables, JSON or a PNG.
Exit 1 when the checker found a problem (a lost, duplicated or divergent write, two writable nodes …)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from webinfra.control.cluster import Cluster
from webinfra.model.relocate import example_file
from webinfra.proving.chaos import nemesis_report, suite
from webinfra.proving.chaos.nemesis_run import NemesisReport, NemesisSettings, run_nemesis
from webinfra.proving.scratch import on_cluster


def run_command(
    *,
    cluster: Cluster | None = None,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
    duration: float,
    seed: int,
    steps: int | None,
    as_json: bool,
    png_path: str | None,
    out_dir: str | None,
    keep: bool,
    console: Console,
    err_console: Console,
) -> None:
    settings = NemesisSettings.for_duration(duration, seed)
    if steps is not None:
        settings = NemesisSettings(seed=seed, steps=steps)

    def say(line: str) -> None:
        err_console.print(f"  {line}", highlight=False, markup=False)

    def body(cluster: Cluster) -> NemesisReport:
        report = run_nemesis(cluster, settings, say)
        if png_path:
            report.png = str(nemesis_report.timeline_png(report, Path(png_path)))
        if out_dir:
            flags = f"--duration {duration:g}" if steps is None else f"--steps {steps}"
            command = f"webinfra chaos nemesis {flags} --seed {seed} --out {out_dir}"
            err_console.print(f"wrote {nemesis_report.write_docs(report, Path(out_dir), command)}")
        return report

    if cluster is not None:  # the running servers (cli/bench.py asked first)
        report = body(cluster)
    elif cluster_name:
        report = body(Cluster.existing(cluster_name, state_dir))
    else:
        path = Path(topology_file) if topology_file else example_file("hardened.toml")
        name, subnet = suite.NEMESIS_CLUSTER
        report = on_cluster(path.read_text(), name, subnet, state_dir, keep, say, body)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        out = console if console.is_terminal else Console(highlight=False, width=200)
        for table in nemesis_report.rich_tables(report):
            out.print(table)
    if not report.ok:
        sys.exit(1)
