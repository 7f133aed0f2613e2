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
from webinfra.errors import UsageError
from webinfra.model.relocate import example_file
from webinfra.proving.chaos import report, suite
from webinfra.proving.chaos.run import Timing, run_all
from webinfra.proving.chaos.scenarios import NAMES
from webinfra.proving.scratch import scratch_at

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

    @property
    def draws(self) -> bool:
        """It draws PNG timelines (matplotlib needed)."""
        return bool(self.png_path) or self.scenario in ("all", "compare")


def chaos_scratch(
    scenario: str, cluster_name: str | None, scratch_name: str | None, scratch_subnet: str | None
) -> tuple[str, str]:
    """Check SCENARIO and the --scratch-* options of `webinfra chaos`; the scratch cluster's (name, subnet)."""
    if scenario not in (*NAMES, "all", "compare", "nemesis"):
        raise UsageError(f"unknown scenario {scenario!r} (scenarios: {', '.join(NAMES)}; or all, compare, nemesis)")
    if (scratch_name or scratch_subnet) and (scenario in ("compare", "nemesis") or cluster_name):
        raise UsageError("--scratch-name/--scratch-subnet: not with compare, nemesis or -c (no cluster brought up)")
    return scratch_at(scratch_name, scratch_subnet, suite.ALL_CLUSTER)


def require_plots() -> None:
    """PNG timelines need matplotlib (the `plots` extra): a UsageError before anything starts."""
    try:
        import matplotlib  # noqa: F401 (only whether it is installed)
    except ImportError:
        raise UsageError("PNG timelines need matplotlib: pip install 'webinfra[plots]'") from None


def chaos_request(
    scenario: str,
    *,
    short: bool,
    duration: float,
    topology_file: str | None,
    cluster_name: str | None,
    state_dir: Path | None,
    png_path: str | None,
    out_dir: str | None,
    keep: bool,
    scratch: tuple[str, str],
) -> ChaosRequest:
    """A scenario, `all` or `compare` as asked on the command line; bad combinations are UsageErrors."""
    if scenario == "compare" and (topology_file or cluster_name):
        raise UsageError("compare brings up examples/seed.toml and examples/hardened.toml itself; no -f or -c")
    if png_path and scenario in ("all", "compare"):
        raise UsageError("--png is for one scenario; all and compare write their PNGs under --out")
    if duration < 4:
        raise UsageError(f"--duration {duration:g}: at least 4 seconds")
    timing = Timing.short() if short else Timing.for_duration(duration)
    flags = "--short" if short else f"--duration {duration:g}"
    req = ChaosRequest(
        scenario, timing, flags, topology_file, cluster_name, state_dir, png_path, out_dir, keep, scratch
    )
    if req.draws:
        require_plots()
    return req


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
