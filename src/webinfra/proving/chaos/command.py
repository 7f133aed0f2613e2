"""What `webinfra chaos` runs, below the CLI: one scenario, `all` of them, or `compare` (both designs), on a
cluster brought up for the run or on a running one; where the PNGs and reports go. The CLI only checks its
arguments, shows progress and prints the results."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from webinfra.control.cluster import Cluster
from webinfra.proving.chaos import report, suite
from webinfra.proving.chaos.run import Timing, example_file, run_all
from webinfra.proving.chaos.scenarios import NAMES

Say = Callable[[str], None]
Done = Callable[[report.ChaosResult], None]


@dataclass(frozen=True)
class ChaosRequest:
    scenario: str  # a name from NAMES, "all" or "compare"
    timing: Timing
    flags: str  # how the timing was asked for, for the command line the reports quote
    topology_file: str | None = None
    cluster_name: str | None = None
    state_dir: Path | None = None
    png_path: str | None = None
    out_dir: str | None = None
    keep: bool = False
    scratch: tuple[str, str] = (
        suite.ALL_CLUSTER
    )  # name and subnet of the cluster brought up (--scratch-name, --scratch-subnet)

    @property
    def names(self) -> list[str]:
        return list(NAMES) if self.scenario in ("all", "compare") else [self.scenario]

    @property
    def steps(self) -> int:
        return len(self.names) * (2 if self.scenario == "compare" else 1)


def run_chaos(req: ChaosRequest, say: Say, done: Done) -> tuple[list[report.ChaosResult], str | None]:
    """Run what `req` asks; returns the results and, for `all` and `compare`, a line saying what was written."""
    if req.scenario == "compare":
        docs = Path(req.out_dir or "docs")
        out, seed, hardened = suite.compare(
            docs,
            timing=req.timing,
            root=req.state_dir,
            command=f"webinfra chaos compare {req.flags} --out {docs}/",
            say=say,
            done=done,
        )
        pngs = len(list((docs / "resilience").glob("*.png")))
        return seed + hardened, f"wrote {out} and {pngs} PNGs under {docs}/resilience/"
    png_dir = Path(req.out_dir or "chaos-report") if req.scenario == "all" else None
    if req.png_path:
        png_dir = Path(tempfile.mkdtemp(prefix="webinfra-chaos-"))
    if req.cluster_name:
        cluster = Cluster.existing(req.cluster_name, req.state_dir)
        design = cluster.topology.name
        results = run_all(cluster, req.names, timing=req.timing, design=design, png_dir=png_dir, say=say, done=done)
    else:
        path = Path(req.topology_file) if req.topology_file else example_file("hardened.toml")
        results = suite.run_design(
            path.read_text(),
            path.stem,
            cluster=req.scratch,
            names=req.names,
            timing=req.timing,
            png_dir=png_dir,
            root=req.state_dir,
            keep=req.keep,
            say=say,
            done=done,
        )
    if req.png_path and results and results[0].png:
        Path(req.png_path).parent.mkdir(parents=True, exist_ok=True)
        results[0].png = str(shutil.move(results[0].png, req.png_path))
    if req.scenario != "all":
        return results, None
    assert png_dir is not None
    source = f" -f {req.topology_file}" if req.topology_file else f" -c {req.cluster_name}" if req.cluster_name else ""
    command = f"webinfra chaos all{source} {req.flags} --out {png_dir}"
    return results, f"wrote {suite.write_report(results, req.timing, command, png_dir)}"


def failed(results: list[report.ChaosResult]) -> bool:
    """A scenario that applied went wrong: an error, acknowledged writes lost, or two writable primaries."""
    return any(r.applicable and (r.error or r.acked_writes_lost or r.split_brain_windows) for r in results)
