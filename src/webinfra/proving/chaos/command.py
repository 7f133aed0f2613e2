"""What `webinfra chaos` runs, below the CLI: one scenario, `all` of them, or `compare` (both designs), on a
cluster brought up for the run or on a running one; where the PNGs and reports go. The CLI only checks its
arguments, shows progress and prints the results.

On servers over SSH nothing is brought up: the scenarios run on the running cluster (`-f servers.toml` or
`-c NAME`), from this machine (the load to the VIP, the faults through the SshMachines). `servers_cluster`
opens it, refuses what cannot run there and says what a run will break, for the confirmation."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from webinfra.control.cluster import Cluster
from webinfra.errors import ClusterError, UsageError
from webinfra.model.relocate import example_file
from webinfra.proving.chaos import report, suite
from webinfra.proving.chaos.run import Timing, roles_of, run_all, wait_healthy
from webinfra.proving.chaos.scenarios import NAMES, NotApplicable, resolve, scenario
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


# ---- on servers ----
HEALTHY_BEFORE = 60.0  # seconds a servers cluster may take to be healthy before the first fault


def check_on_servers(name: str, keep: bool, scratch: bool) -> None:
    """What `webinfra chaos` cannot do on servers: one line (UsageError), before any server is reached."""
    if name == "compare":
        raise UsageError("compare brings up examples/seed.toml and examples/hardened.toml itself; no -f or -c")
    if name in NAMES and (why := scenario(name).not_on_servers):
        raise UsageError(f"chaos {name} does not run on servers: {why}")
    if keep or scratch:
        raise UsageError("--keep/--scratch-name/--scratch-subnet: on servers chaos brings nothing up (it runs on them)")


def running_servers(topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> Cluster:
    """The running servers cluster -f or -c names; a cluster never brought up is a UsageError."""
    if topology_file:
        cluster = Cluster.from_file(topology_file, state_dir)
    else:
        cluster = Cluster.existing(cluster_name, state_dir)
    if not cluster.layout.topology_file.is_file():
        raise UsageError(
            f"cluster {cluster.topology.name!r} is not up under {cluster.layout.cluster_dir.parent}: "
            "chaos runs on the running servers (`webinfra up` first)"
        )
    return cluster


def servers_cluster(req: ChaosRequest) -> tuple[Cluster, str]:
    """The running servers cluster `req` names (-f or -c), and the question to confirm: what the run breaks.
    A scenario the cluster cannot express (say, no etcd) is a UsageError, as is a cluster never brought up."""
    cluster = running_servers(req.topology_file, req.cluster_name, req.state_dir)
    topo = cluster.topology
    each = f"~{req.timing.before + req.timing.hold + req.timing.after:.0f} s"
    if req.scenario not in NAMES:  # all
        runnable = [n for n in NAMES if not scenario(n).not_on_servers]
        return cluster, (
            f"chaos all breaks {len(runnable)} things one after the other on the servers of {topo.name}, each under "
            f"load ({each}) and then recovered. Go on?"
        )
    resolved = resolve(req.scenario, topo, roles_of(cluster), servers=True)
    if isinstance(resolved, NotApplicable):
        raise UsageError(f"chaos {req.scenario} on cluster {topo.name}: {resolved.reason}")
    return cluster, f"chaos {req.scenario}: {resolved.what}, on the servers of {topo.name}, under load ({each}). Go on?"


def _on_servers(
    cluster: Cluster, req: ChaosRequest, png_dir: Path | None, say: Say, done: Done
) -> list[report.ChaosResult]:
    say(f"waiting for {cluster.topology.name} to be healthy before the first fault")
    reason = wait_healthy(cluster, HEALTHY_BEFORE)
    if reason is not None:
        raise ClusterError(f"cluster {cluster.topology.name} is not healthy ({reason}): nothing was broken")
    design = cluster.topology.name
    return run_all(cluster, req.names, timing=req.timing, design=design, png_dir=png_dir, say=say, done=done)


def run_chaos(
    req: ChaosRequest, say: Say, done: Done, servers: Cluster | None = None
) -> tuple[list[report.ChaosResult], str | None]:
    """Run what `req` asks (on `servers`, the running servers cluster, when given); returns the results and,
    for `all` and `compare`, a line saying what was written."""
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
    if servers is not None:
        results = _on_servers(servers, req, png_dir, say, done)
    elif req.cluster_name:
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
