"""`webinfra bench --scale`: how the cost of `up`, `status`, memory and Prometheus grows with the host count.

For each size it brings up a generated topology (the hardened default's shape: 2 LBs on a VIP, 3 DB nodes
with etcd and the HA agents, one monitoring host, and as many app servers as the size leaves; HTTPS and
the firewall on) from cold on its own scratch cluster and subnet, one size after another, and measures:

    cold up        `Cluster.up()` from nothing
    second up      `Cluster.up()` again, unchanged (nothing may report a change; median of 3 runs)
    status         `webinfra status --json` as a user runs it (a new process; median of 3 runs): its wall
                   and CPU time, next to `webinfra --version` (the CLI's bare start-up: the interpreter,
                   click and the command group, no command's module; interleaved, so that both see the
                   same load) and `snapshot()` in process; and the load average meanwhile
    memory         RSS of each host's daemons (every tracked service with its children, and hostd itself)
    idle CPU       what those daemons use with no traffic (health checks, scrapes, agents), in cores
    Prometheus     active targets (and how many are up) and its ingest rate, from its own metrics

then takes the cluster down (`--purge`) before the next size. `fit_growth` fits seconds = a + b * hosts by
least squares, so "seconds per added host" is `b`. One module (~450 lines): the measurements of one size
read each other's context (the same cluster, the same load), and the table is theirs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from webinfra.control.cluster import Cluster
from webinfra.errors import ClusterError, UsageError
from webinfra.model import parse_topology
from webinfra.observe import prom
from webinfra.observe.status import snapshot
from webinfra.proving import scratch

SCALE_CLUSTER = "scale"
DEFAULT_SUBNET_OCTET = 200  # 198.18.200.0/24: used by no test
DEFAULT_SIZES = (7, 10, 20, 40)
# lb-01, lb-02, db-01..03, mon-01: every size has them; the rest are app servers (at least one).
FIXED_HOSTS = ("lb-01", "lb-02", "db-01", "db-02", "db-03", "mon-01")
MIN_SIZE = len(FIXED_HOSTS) + 1
MAX_SIZE = 200  # addresses .10 and up, below the VIP at .250
STATUS_RUNS = 3
SECOND_UP_RUNS = 3


def scale_topology_text(size: int, name: str = SCALE_CLUSTER, octet: int = DEFAULT_SUBNET_OCTET) -> str:
    """A topology of `size` hosts in the hardened default's shape (TLS and firewall are the defaults)."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UsageError(
            f"--sizes: {size} hosts: must be {MIN_SIZE}..{MAX_SIZE} "
            f"({len(FIXED_HOSTS)} fixed hosts: 2 LBs, 3 DB nodes, monitoring; plus at least one app server)"
        )
    lines = [
        f'name = "{name}"',
        "[network]",
        f'subnet = "198.18.{octet}.0/24"',
        "[lb]",
        'route_writes_to = "any"',
        f'vip = "198.18.{octet}.250"',
        "",
        '[[hosts]]\nname = "lb-01"\nroles = ["lb"]\n',
        '[[hosts]]\nname = "lb-02"\nroles = ["lb"]\n',
    ]
    for i in range(1, 4):
        db_role = "primary" if i == 1 else "replica"
        lines.append(f'[[hosts]]\nname = "db-{i:02d}"\nroles = ["db", "etcd"]\ndb_role = "{db_role}"\n')
    for i in range(1, size - len(FIXED_HOSTS) + 1):
        lines.append(f'[[hosts]]\nname = "app-{i:02d}"\nroles = ["web", "app"]\n')
    lines.append('[[hosts]]\nname = "mon-01"\nroles = ["monitoring"]\n')
    return "\n".join(lines)


def parse_sizes(text: str) -> tuple[int, ...]:
    """`--sizes 7,10,20`: distinct host counts, ascending; a bad one is a usage error."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UsageError(f"--sizes = {text!r}: expected host counts separated by commas, e.g. 7,10,20") from None
    if not sizes:
        raise UsageError("--sizes: give at least one host count")
    for size in sizes:
        scale_topology_text(size)  # validates the range
    return tuple(sizes)


def fit_growth(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares line y = a + b x through the points; returns (b, a). One point: slope 0."""
    if len(xs) != len(ys) or not xs:
        raise ValueError("fit_growth needs as many x as y values, at least one")
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0, mean_y
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return slope, mean_y - slope * mean_x


# What `up` reports when it changed something (cluster-wide notes such as "quorum healthy" or "holds the
# VIP" are not changes, nor is "unchanged").
CHANGE_WORDS = ("started", "reloaded", "restarted", "stopped", "killed", "loaded", "removed", "issued")


def is_change(action: str) -> bool:
    return action.split(" ", 1)[0] in CHANGE_WORDS


# ---- memory and CPU of the daemons ----


def host_rss_mib(cluster: Cluster) -> dict[str, float]:
    """Per host: the resident memory of its daemons (and hostd), as its machine reports it."""
    return {
        hp.name: sum(u.rss_kib for u in cluster.hosts[hp.name].usage().values()) / 1024 for hp in cluster.plan.hosts
    }


def cpu_by_service(cluster: Cluster) -> dict[str, float]:
    """CPU seconds used so far per service name (summed over hosts; hostd included as "hostd")."""
    out: dict[str, float] = {}
    for hp in cluster.plan.hosts:
        for name, used in cluster.hosts[hp.name].usage().items():
            out[name] = out.get(name, 0.0) + used.cpu_seconds
    return out


# ---- one size ----


@dataclass
class ScaleRow:
    hosts: int
    app_servers: int
    cold_up_seconds: float
    second_up_seconds: float  # median of SECOND_UP_RUNS
    second_up_runs: list[float]
    second_up_changed: list[str]  # "host service action" lines other than `unchanged` (should be empty)
    status_seconds: float
    status_runs: list[float]
    status_in_process_seconds: float  # `snapshot()` alone, without the CLI's start-up
    cli_startup_seconds: float  # `webinfra --version` (bare start-up), measured between the status runs
    status_cpu_seconds: float  # CPU (user + system) of the status process and its children, median
    status_to_startup: float  # each status run / the start-up run just before it, median
    load_average: float  # the machine's 1-minute load average after the status runs
    rss_mib_per_host: float  # mean over the hosts
    idle_cpu_cores: float  # CPU the cluster's daemons use with no traffic (checks, scrapes, agents), in cores
    idle_cpu_cores_by_service: dict[str, float]  # the same, per service over all hosts, largest first
    rss_mib_by_host: dict[str, float]
    prometheus_targets: int
    prometheus_targets_up: int
    ingest_samples_per_second: float | None  # measured: rate of Prometheus's appended-samples counter
    scraped_samples_per_second: float | None  # the targets' samples per scrape round / scrape interval


@dataclass
class ScaleReport:
    rows: list[ScaleRow] = field(default_factory=list)

    def growth(self, attr: str) -> float | None:
        """Seconds (or the attribute's unit) per added host, least squares; None with fewer than 2 sizes."""
        if len(self.rows) < 2:
            return None
        return fit_growth([r.hosts for r in self.rows], [getattr(r, attr) for r in self.rows])[0]

    def as_dict(self) -> dict[str, object]:
        attrs = (
            "cold_up_seconds",
            "second_up_seconds",
            "status_seconds",
            "status_in_process_seconds",
            "status_cpu_seconds",
            "rss_mib_per_host",
            "idle_cpu_cores",
        )
        return {
            "rows": [asdict(r) for r in self.rows],
            "growth_per_host": {a: self.growth(a) for a in attrs},
        }


@dataclass(frozen=True)
class CliRun:
    seconds: float  # wall
    cpu_seconds: float  # user + system of the process and the children it waited for
    stdout: str


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _cli_run(*args: str) -> CliRun:
    """`webinfra ARGS` in a new process, as a user runs it. Its CPU is what this process's finished
    children grew by: nothing else of the bench runs a child meanwhile (the hostds never finish)."""
    argv = [str(Path(sys.executable).parent / "webinfra"), *args]
    cpu, started = _children_cpu(), time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    elapsed, cpu = time.monotonic() - started, _children_cpu() - cpu
    if proc.returncode != 0:
        raise ClusterError(f"webinfra {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return CliRun(elapsed, cpu, proc.stdout)


@dataclass(frozen=True)
class StatusFigures:
    runs: list[float]  # `status --json`, wall
    cpu: float  # median CPU of those runs
    startup: float  # median bare start-up (`webinfra --version`)
    ratio: float  # median of each status run over the start-up run just before it
    in_process: float  # median `snapshot()` in this process
    load: float  # 1-minute load average afterwards


def _status_figures(cluster: Cluster) -> StatusFigures:
    """`status --json` interleaved with the CLI's bare start-up and an in-process snapshot, so that load
    from elsewhere on the machine hits each alike; the JSON must parse and name every host (and status
    exit 0: a cluster just up is healthy)."""
    where = ("--state-dir", str(cluster.layout.cluster_dir.parent), "--cluster", cluster.topology.name)
    runs, cpus, startups, ratios, in_process = [], [], [], [], []
    for _ in range(STATUS_RUNS):
        bare = _cli_run("--version")
        status = _cli_run("status", "--json", *where)
        if len(json.loads(status.stdout)["hosts"]) != len(cluster.topology.hosts):
            raise ClusterError("webinfra status --json did not list every host")
        runs.append(status.seconds)
        cpus.append(status.cpu_seconds)
        startups.append(bare.seconds)
        ratios.append(status.seconds / bare.seconds)
        started = time.monotonic()
        snapshot(cluster)
        in_process.append(time.monotonic() - started)
    return StatusFigures(
        runs,
        statistics.median(cpus),
        statistics.median(startups),
        statistics.median(ratios),
        statistics.median(in_process),
        os.getloadavg()[0],
    )


INGEST_WINDOW = 20  # seconds of Prometheus's own counter the ingest rate is taken over


def _prometheus_figures(cluster: Cluster, timeout: float = 60.0) -> tuple[int, int, float | None, float | None]:
    """(active targets, targets up, samples appended per second, samples per scrape round / interval),
    once every target was scraped up (or `timeout` passed) and a whole window of steady scraping later:
    the rate of prometheus_tsdb_head_samples_appended_total over that window, and what the targets'
    last scrapes say the rate should be (sum of scrape_samples_scraped / scrape interval)."""
    deadline = time.monotonic() + timeout
    while True:
        found = prom.targets(cluster)
        up = sum(1 for t in found if t.get("health") == "up")
        if (found and up == len(found)) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    interval = cluster.topology.monitoring.scrape_interval_ms / 1000
    time.sleep(INGEST_WINDOW + 2 * interval)  # the window holds steady scraping only
    appended = prom.query(cluster, f"rate(prometheus_tsdb_head_samples_appended_total[{INGEST_WINDOW}s])")
    per_round = prom.query(cluster, "sum(scrape_samples_scraped)")
    return (
        len(found),
        up,
        appended[0][1] if appended else None,
        per_round[0][1] / interval if per_round else None,
    )


def measure_size(
    size: int, root: Path, octet: int, say: Callable[[str], None], keep: bool = False, name: str = SCALE_CLUSTER
) -> ScaleRow:
    cluster = scratch.prepare(scale_topology_text(size, name, octet), root, source=f"<bench --scale {size}>")
    say(f"{size} hosts ({size - len(FIXED_HOSTS)} app servers): cold up...")
    try:
        started = time.monotonic()
        cluster.up()
        cold = time.monotonic() - started
        changed: list[str] = []

        def note(host: str, what: str, action: str) -> None:
            if is_change(action):
                changed.append(f"{host} {what} {action}")

        second_runs = []
        for _ in range(SECOND_UP_RUNS):
            started = time.monotonic()
            cluster.up(progress=note)
            second_runs.append(time.monotonic() - started)
        second = statistics.median(second_runs)
        status = _status_figures(cluster)
        cpu_before, cpu_started = cpu_by_service(cluster), time.monotonic()
        targets, targets_up, ingest, expected_ingest = _prometheus_figures(cluster)  # waits a steady window
        cpu_after, window = cpu_by_service(cluster), time.monotonic() - cpu_started
        idle_by_service = {name: (cpu_after[name] - cpu_before.get(name, 0.0)) / window for name in cpu_after}
        rss = host_rss_mib(cluster)
    finally:
        if not keep:
            scratch.take_down(cluster)
    row = ScaleRow(
        hosts=size,
        app_servers=size - len(FIXED_HOSTS),
        cold_up_seconds=round(cold, 2),
        second_up_seconds=round(second, 2),
        second_up_runs=[round(r, 2) for r in second_runs],
        second_up_changed=changed,
        status_seconds=round(statistics.median(status.runs), 2),
        status_runs=[round(r, 2) for r in status.runs],
        status_in_process_seconds=round(status.in_process, 2),
        cli_startup_seconds=round(status.startup, 2),
        status_cpu_seconds=round(status.cpu, 2),
        status_to_startup=round(status.ratio, 1),
        load_average=round(status.load, 1),
        rss_mib_per_host=round(statistics.fmean(rss.values()), 1),
        idle_cpu_cores=round(sum(idle_by_service.values()), 2),
        idle_cpu_cores_by_service={
            name: round(cores, 3) for name, cores in sorted(idle_by_service.items(), key=lambda kv: -kv[1])
        },
        rss_mib_by_host={h: round(v, 1) for h, v in rss.items()},
        prometheus_targets=targets,
        prometheus_targets_up=targets_up,
        ingest_samples_per_second=round(ingest, 1) if ingest is not None else None,
        scraped_samples_per_second=round(expected_ingest, 1) if expected_ingest is not None else None,
    )
    busiest = ", ".join(f"{n} {c:.2f}" for n, c in list(row.idle_cpu_cores_by_service.items())[:3])
    say(
        f"  {size} hosts: cold up {row.cold_up_seconds:.1f}s, second up {row.second_up_seconds:.1f}s"
        f" ({len(changed)} changed), status {row.status_seconds:.2f}s (CPU {row.status_cpu_seconds:.2f}s,"
        f" {row.status_to_startup:.1f}x the bare start-up {row.cli_startup_seconds:.2f}s; in process"
        f" {row.status_in_process_seconds:.2f}s; load {row.load_average:.1f}), {row.rss_mib_per_host:.0f} MiB/host,"
        f" idle CPU"
        f" {row.idle_cpu_cores:.2f} cores ({busiest}),"
        f" {targets_up}/{targets} targets up, {row.ingest_samples_per_second} samples/s"
    )
    return row


def run_scale_bench(
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    octet: int = DEFAULT_SUBNET_OCTET,
    keep: bool = False,
    state_root: Path | None = None,
    say: Callable[[str], None] = print,
    name: str = SCALE_CLUSTER,
) -> ScaleReport:
    """Each size in turn on one scratch cluster (198.18.<octet>.0/24), taken down before the next; with
    `keep`, only the last size is left running."""
    if not 1 <= octet <= 254:
        raise UsageError(f"--subnet-octet = {octet}: must be 1..254 (198.18.<octet>.0/24; 0 is the default cluster's)")
    root = state_root or Path(tempfile.mkdtemp(prefix="webinfra-bench-scale-"))
    report = ScaleReport()
    try:
        for i, size in enumerate(sizes):
            report.rows.append(measure_size(size, root, octet, say, keep=keep and i == len(sizes) - 1, name=name))
    finally:
        if state_root is None and not keep:
            shutil.rmtree(root, ignore_errors=True)  # the scratch state dir made above (purged clusters)
    if keep:
        say(f"kept: {name} ({sizes[-1]} hosts), state under {root}")
    return report


# ---- output ----


def markdown(report: ScaleReport, command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        "| hosts | app servers | cold up (s) | second up (s) | status --json (s) | its CPU (s) "
        "| bare start-up `--version` (s) | status / start-up | snapshot in process (s) | load (1 min) "
        "| RSS/host (MiB) | idle CPU (cores) | Prometheus targets (up) | ingest (samples/s) "
        "| scraped per round / interval (samples/s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        ingest = f"{r.ingest_samples_per_second:.0f}" if r.ingest_samples_per_second is not None else "n/a"
        scraped = f"{r.scraped_samples_per_second:.0f}" if r.scraped_samples_per_second is not None else "n/a"
        lines.append(
            f"| {r.hosts} | {r.app_servers} | {r.cold_up_seconds:.1f} | {r.second_up_seconds:.1f} "
            f"| {r.status_seconds:.2f} | {r.status_cpu_seconds:.2f} | {r.cli_startup_seconds:.2f} "
            f"| {r.status_to_startup:.1f} | {r.status_in_process_seconds:.2f} | {r.load_average:.1f} "
            f"| {r.rss_mib_per_host:.0f} | {r.idle_cpu_cores:.2f} | {r.prometheus_targets} "
            f"({r.prometheus_targets_up}) | {ingest} | {scraped} |"
        )
    growth = [
        (label, report.growth(attr), unit)
        for label, attr, unit in (
            ("cold up", "cold_up_seconds", "s"),
            ("second up", "second_up_seconds", "s"),
            ("status --json", "status_seconds", "s"),
            ("status in process", "status_in_process_seconds", "s"),
            ("RSS per host", "rss_mib_per_host", "MiB"),
            ("idle CPU", "idle_cpu_cores", "cores"),
        )
    ]
    if report.rows and len(report.rows) > 1:
        lines += [
            "",
            "Growth per added host (least squares): "
            + "; ".join(f"{label} {g:+.3f} {unit}" for label, g, unit in growth if g is not None)
            + ".",
        ]
    changed = [f"{r.hosts} hosts: {', '.join(r.second_up_changed)}" for r in report.rows if r.second_up_changed]
    if changed:
        lines += ["", "Second `up` changed something (it should not): " + "; ".join(changed)]
    return "\n".join(lines) + "\n"


def command_line(sizes: Sequence[int], octet: int, name: str = SCALE_CLUSTER) -> str:
    named = f" --scratch-name {name}" if name != SCALE_CLUSTER else ""
    return f"webinfra bench --scale --sizes {','.join(str(s) for s in sizes)} --subnet-octet {octet}{named}"


def run_from_cli(
    sizes_text: str,
    octet: int | None,
    name: str = SCALE_CLUSTER,
    *,
    keep: bool = False,
    as_json: bool = False,
    md_out: str | None = None,
) -> str:
    """`webinfra bench --scale`: validate, run, and return what to print (progress goes to stderr, so that
    `--json` prints JSON only); `md_out` also gets the Markdown."""
    sizes = parse_sizes(sizes_text)
    octet = DEFAULT_SUBNET_OCTET if octet is None else octet
    parse_topology(scale_topology_text(sizes[0], name, octet), "--scratch-name")  # a bad name: one line, exit 2

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = run_scale_bench(sizes, octet=octet, keep=keep, say=say, name=name)
    text = markdown(report, command_line(sizes, octet, name))
    if md_out:
        Path(md_out).write_text(text)
    return json.dumps(report.as_dict(), indent=2) if as_json else text
