"""`webinfra bench --failover`: the hardened design's failover times for docs/BENCHMARKS.md, medians of
several runs.

One copy of examples/hardened.toml as it is (HTTPS, firewall; `benchfo`, 198.18.65.0/24). N runs
each of: HAProxy killed on the VIP holder and the VIP holder's host down (→ first successful
request through the VIP), the primary's mariadbd SIGKILLed and the primary's host partitioned
(→ first successful write through the site), with a read/write load whose acknowledged writes are
all checked on the new primary, and an app server killed under load (→ failed requests). Medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from webinfra.control import events
from webinfra.control.cluster import Cluster
from webinfra.errors import ClusterError
from webinfra.model import Role
from webinfra.model.relocate import example_file
from webinfra.ops import faults
from webinfra.proving.bench import BenchParams
from webinfra.proving.bench_stages import DbStages, stages_markdown, stages_of
from webinfra.proving.chaos.run import roles_of, verify_for, wait_healthy
from webinfra.proving.chaos.splitbrain import missing_writes
from webinfra.proving.loadgen import BackgroundLoad
from webinfra.proving.scratch import Say, scratch_run

Tick = Callable[[], None]

FAILOVER_CLUSTER = ("benchfo", "198.18.65.0/24")


def _quiet(_: str) -> None:
    pass


def _noop() -> None:
    pass


def _prefixed(say: Say, prefix: str) -> Say:
    return lambda what: say(f"{prefix}: {what}")


@dataclass
class FailoverReport:
    vip_haproxy_killed: list[float] = field(default_factory=list)
    vip_host_down: list[float] = field(default_factory=list)
    db_mariadb_killed: list[float] = field(default_factory=list)
    db_partitioned: list[float] = field(default_factory=list)
    acked_writes: int = 0
    acked_writes_lost: int = 0
    app_crash_failed: list[tuple[int, int, int]] = field(default_factory=list)  # (failed reads, failed writes, all)
    notes: list[str] = field(default_factory=list)
    db_stages: list[DbStages] = field(default_factory=list)


def _first_success(probe: Callable[[], bool], started: float, timeout: float, every: float = 0.05) -> float:
    """Seconds from `started` until a probe first succeeded. A new probe starts every `every` seconds while the
    earlier ones may still hang (a dead LB's address times out), so the answer is not rounded to a timeout."""
    successes: list[float] = []

    def one() -> None:
        if probe():
            successes.append(time.monotonic())

    with ThreadPoolExecutor(max_workers=64) as pool:
        while not successes and time.monotonic() - started < timeout:
            pool.submit(one)
            time.sleep(every)
    if not successes:
        raise ClusterError(f"no success within {timeout:g}s")
    return min(successes) - started


def _client(cluster: Cluster, timeout: float) -> httpx.Client:
    # A new connection per request: a kept-alive connection to the dead LB would say nothing about the VIP.
    return httpx.Client(
        base_url=cluster.topology.site_url,
        verify=verify_for(cluster),
        timeout=timeout,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def _read_ok(cluster: Cluster) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with _client(cluster, 0.5) as c:
                return c.get("/api/entries?limit=1").status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def _write_ok(cluster: Cluster) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with _client(cluster, 3.0) as c:
                return c.post("/api/entries", json={"text": "failover probe"}).status_code == 201
        except httpx.HTTPError:
            return False

    return probe


def _healthy(cluster: Cluster, what: str) -> None:
    reason = wait_healthy(cluster, 180)
    if reason is not None:
        raise ClusterError(f"after {what}: not healthy within 180 s: {reason}")


def _under_load(cluster: Cluster, write_ratio: float) -> BackgroundLoad:
    """The client load a failover is measured under: 40 requests/s from up to 50 at once, 2 s timeouts."""
    return BackgroundLoad(
        cluster.topology.site_url,
        duration=600,
        concurrency=50,
        rate=40,
        write_ratio=write_ratio,
        timeout=2.0,
        verify=verify_for(cluster),
    )


def _vip_takeover(cluster: Cluster, service: str | None, say: Say) -> float:
    """Crash `service` (None: the whole host) on the VIP holder; seconds to the first read through the VIP."""
    holder = roles_of(cluster).vip_holder
    assert holder is not None
    say(f"VIP takeover, {'HAProxy killed' if service else 'host down'} on {holder}")
    started = time.monotonic()
    faults.fail(cluster, holder, service, "crash")
    took = _first_success(_read_ok(cluster), started, 60)
    faults.recover(cluster, holder)
    _healthy(cluster, "VIP takeover")
    return took


def _db_failover(cluster: Cluster, service: str | None, mode: faults.Mode, run: int, say: Say) -> DbFailover:
    """Inject `mode` on the primary (into `service`, or the whole host) under a read/write load; the seconds
    to the first write through the site, the writes acknowledged, those the new primary lacks, its stages."""
    primary = roles_of(cluster).primary
    assert primary is not None
    say(f"DB failover, {primary} {'mariadbd killed' if service else 'partitioned'}")
    with _under_load(cluster, write_ratio=0.5) as load:
        time.sleep(1.0)  # a second of acknowledged writes before the fault
        fault_at = datetime.now(UTC)
        started = time.monotonic()
        faults.fail(cluster, primary, service, mode)
        took = _first_success(_write_ok(cluster), started, 60)
        faults.recover(cluster, primary)
        _healthy(cluster, "DB failover")
    acked = load.result.acked_writes
    new_primary = roles_of(cluster).primary
    assert new_primary is not None
    stages = stages_of(
        events.read(cluster.layout.events_file),
        fault=mode,
        run=run,
        at=fault_at,
        old=primary,
        new=new_primary,
        first_write=took,
    )
    return DbFailover(took, len(acked), len(missing_writes(cluster, new_primary, acked)), stages)


@dataclass(frozen=True)
class DbFailover:
    seconds: float
    acked_writes: int
    acked_writes_lost: int
    stages: DbStages


def _app_crash(cluster: Cluster, say: Say) -> tuple[int, int, int]:
    """Kill an app server (not the primary's) for 6 s under load: (failed reads, failed writes, all requests)."""
    app = next(h.name for h in cluster.topology.with_role(Role.APP) if h.name != roles_of(cluster).primary)
    say(f"app server on {app} killed under load")
    with _under_load(cluster, write_ratio=0.3) as load:
        time.sleep(1.0)
        faults.fail(cluster, app, "app", "crash")
        time.sleep(6.0)  # several health-check intervals: the LB has marked it down by then
        faults.recover(cluster, app)
        _healthy(cluster, "app crash")
    failed = load.result.failed
    return (sum(s.method == "GET" for s in failed), sum(s.method == "POST" for s in failed), len(load.result.samples))


def run_failover(
    params: BenchParams, *, root: Path | None = None, say: Say = _quiet, tick: Tick = _noop
) -> FailoverReport:
    report = FailoverReport()
    name, subnet = params.cluster_at
    with scratch_run("webinfra-bench-failover-", root, params.keep, say) as run:
        cluster = run.bring_up(example_file("hardened.toml").read_text(), name=name, subnet=subnet)
        tick()
        for n in range(params.runs):
            step = _prefixed(say, f"run {n + 1}/{params.runs}")
            for service, series in (("haproxy", report.vip_haproxy_killed), (None, report.vip_host_down)):
                series.append(_vip_takeover(cluster, service, step))
                tick()
            db_faults: tuple[tuple[str | None, faults.Mode, list[float]], ...] = (
                ("mariadb", "crash", report.db_mariadb_killed),
                (None, "partition", report.db_partitioned),
            )
            for service, mode, series in db_faults:
                outcome = _db_failover(cluster, service, mode, n + 1, step)
                series.append(outcome.seconds)
                report.acked_writes += outcome.acked_writes
                report.acked_writes_lost += outcome.acked_writes_lost
                report.db_stages.append(outcome.stages)
                tick()
            report.app_crash_failed.append(_app_crash(cluster, step))
            tick()
    return report


def failover_steps(runs: int) -> int:
    return 1 + runs * 5


def failover_markdown(report: FailoverReport, command: str) -> str:
    def row(label: str, values: list[float], goal: str) -> str:
        each = ", ".join(f"{v:.2f}" for v in values)
        return f"| {label} | **{statistics.median(values):.2f} s** | {each} | {goal} |"

    reads = [r for r, _, _ in report.app_crash_failed]
    writes = [w for _, w, _ in report.app_crash_failed]
    lines = [
        f"Command: `{command}`",
        "",
        "| measure | median | each run | goal |",
        "|---|---:|---|---|",
        row(
            "VIP takeover, HAProxy killed on the VIP holder → first successful request via the VIP",
            report.vip_haproxy_killed,
            "≤ 2 s",
        ),
        row(
            "VIP takeover, VIP holder's host down → first successful request via the VIP", report.vip_host_down, "≤ 2 s"
        ),
        row(
            "DB failover, primary's mariadbd SIGKILLed → first successful write through the site",
            report.db_mariadb_killed,
            "≤ 5 s",
        ),
        row(
            "DB failover, primary's host partitioned → first successful write through the site",
            report.db_partitioned,
            "≤ 5 s",
        ),
        "",
        f"- Acknowledged writes lost over all DB failover runs: **{report.acked_writes_lost}** of "
        f"{report.acked_writes} acknowledged (goal 0)",
        f"- Failed requests while an app server was killed (6 s held, then restarted), per run: "
        f"{', '.join(f'{r} reads + {w} writes of {t}' for r, w, t in report.app_crash_failed)}; "
        f"median **{statistics.median(reads):.0f} reads, {statistics.median(writes):.0f} writes** (goal 0)"
        if report.app_crash_failed
        else "",
    ]
    stages = stages_markdown(report.db_stages)
    return "\n".join(lines) + "\n" + (f"\n{stages}" if stages else "")
