"""Running the nemesis on a cluster: writers the whole time, a seeded schedule of single and overlapping
faults, each undone and followed by a wait for a healthy cluster, then the checker (nemesis_check.py).

The run, in order: start the writable-node monitor and the writers; for each step of `schedule(seed, …)`,
inject its faults at their offsets (targets resolved from the roles of that moment), hold, undo every fault
of the step (`recover` on each host it touched), wait until the cluster is healthy; stop the writers (keyed
writes in flight finish within their retry budget); wait until replicas have applied everything the primary
has; then read the rows, the table checksums of every DB node and the events, and check.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from webinfra.control import events
from webinfra.control.cluster import Cluster, ClusterError
from webinfra.model import Role
from webinfra.ops import faults
from webinfra.ops.switchover import switchover
from webinfra.proving.chaos import nemesis_check as check
from webinfra.proving.chaos.nemesis_plan import Step, schedule
from webinfra.proving.chaos.nemesis_writers import Writers, WriterSettings
from webinfra.proving.chaos.run import roles_of, verify_for, wait_healthy
from webinfra.proving.chaos.splitbrain import SplitBrainMonitor
from webinfra.runtime import CommandError
from webinfra.services import mariadb

Say = Callable[[str], None]


@dataclass(frozen=True)
class NemesisSettings:
    seed: int = 1
    steps: int = 6  # at most this many steps...
    duration: float | None = None  # ...or, when set, steps until this many seconds have passed
    overlap_share: float = 0.5
    hold: tuple[float, float] = (4.0, 8.0)
    healthy_timeout: float = 150.0
    settle: float = 2.0  # load on a healthy cluster between steps
    writers: WriterSettings = field(default_factory=WriterSettings)

    @classmethod
    def for_duration(cls, duration: float, seed: int) -> NemesisSettings:
        """Steps one after another until `duration` seconds have passed (the last one runs to its end)."""
        return cls(seed=seed, steps=10_000, duration=duration)


@dataclass
class StepRecord:
    index: int
    label: str
    injected: list[str] = field(default_factory=list)  # "primary-crash: web-01 mariadb crashed (SIGKILL)"
    started: float = 0.0
    undone: float = 0.0
    healthy_after: float | None = None  # seconds from the undo until healthy
    error: str = ""


@dataclass
class NemesisReport:
    cluster: str
    seed: int
    run_id: str
    duration: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)
    verdict: check.Verdict = field(default_factory=check.Verdict)
    error: str = ""
    png: str | None = None
    writable_timeline: list[tuple[float, int]] = field(default_factory=list)
    attempts: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error and self.verdict.ok

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "seed": self.seed,
            "run_id": self.run_id,
            "duration": round(self.duration, 1),
            "faults_injected": sum(len(s.injected) for s in self.steps),
            "steps": [asdict(s) for s in self.steps],
            "verdict": self.verdict.to_json(),
            "error": self.error,
            "ok": self.ok,
            "png": self.png,
        }


# ---- faults, resolved from the roles of the moment ----
class Nemesis:
    def __init__(self, cluster: Cluster, seed: int, say: Say) -> None:
        self.cluster, self.say = cluster, say
        self.rng = random.Random(seed ^ 0x5EED)
        self.touched: set[str] = set()
        self.switchovers: list[threading.Thread] = []

    def _db_nodes(self) -> list[str]:
        return [h.name for h in self.cluster.topology.with_role(Role.DB)]

    def _primary(self) -> str | None:
        return roles_of(self.cluster).primary

    def _replica(self) -> str | None:
        primary = self._primary()
        others = [n for n in self._db_nodes() if n != primary]
        return self.rng.choice(others) if others else None

    def inject(self, kind: str) -> str:
        c = self.cluster
        if kind == "switchover":
            thread = threading.Thread(target=self._switchover, daemon=True, name="nemesis-switchover")
            thread.start()
            self.switchovers.append(thread)
            return "switchover requested"
        service: str | None
        mode: faults.Mode
        if kind == "etcd-member-loss":
            host: str | None = self.rng.choice([h.name for h in c.topology.with_role(Role.ETCD)])
            service, mode = "etcd", "crash"
        elif kind == "vip-holder-crash":
            host, service, mode = roles_of(c).vip_holder, "haproxy", "crash"
        elif kind == "replica-partition":
            host, service, mode = self._replica(), None, "partition"
        else:
            host = self._primary()
            on_primary: dict[str, tuple[str | None, faults.Mode]] = {
                "primary-crash": ("mariadb", "crash"),
                "primary-partition": (None, "partition"),
                "agent-freeze": ("agent", "freeze"),
                "primary-slow": (None, "slow"),
            }
            service, mode = on_primary[kind]
        if host is None:
            return "no target right now (role vacant): skipped"
        self.touched.add(host)
        return f"{host}: {faults.fail(c, host, service, mode)}"

    def _switchover(self) -> None:
        try:
            old, new, took = switchover(self.cluster, None, timeout=30.0)
            self.say(f"switchover {old} -> {new} in {took:.1f}s")
        except ClusterError as exc:  # refused or timed out under the other faults: part of the test
            self.say(f"switchover did not complete: {exc}")

    def undo(self) -> None:
        for thread in self.switchovers:
            thread.join(timeout=40)
        self.switchovers.clear()
        for host in sorted(self.touched):
            faults.recover(self.cluster, host)
        self.touched.clear()


def _run_step(nemesis: Nemesis, step: Step, t0: float, settings: NemesisSettings, say: Say) -> StepRecord:
    cluster = nemesis.cluster
    record = StepRecord(step.index, step.label, started=round(time.monotonic() - t0, 2))
    say(f"step {step.index + 1}: {step.label}")
    start = time.monotonic()
    pause = threading.Event()  # never set: timed waits
    try:
        for fault in step.faults:
            pause.wait(max(0.0, start + fault.offset - time.monotonic()))
            record.injected.append(f"{fault.kind}: {nemesis.inject(fault.kind)}")
        pause.wait(max(0.0, start + step.hold - time.monotonic()))
    except (ClusterError, CommandError, OSError) as exc:
        record.error = f"injecting: {exc}"
    finally:
        nemesis.undo()
    undone = time.monotonic()
    record.undone = round(undone - t0, 2)
    reason = wait_healthy(cluster, settings.healthy_timeout)
    if reason is None:
        record.healthy_after = round(time.monotonic() - undone, 2)
    else:
        record.error = (record.error + "; " if record.error else "") + f"not healthy: {reason}"
    events.record(cluster.layout, "nemesis_step", "", f"{step.label}: {record.error or 'healthy again'}")
    pause.wait(settings.settle)
    return record


# ---- after the run: convergence and the data ----
def _caught_up(cluster: Cluster, primary: str, timeout: float = 60.0) -> None:
    hp = cluster.plan.host(primary)
    pos = mariadb.admin_sql(cluster.hosts[primary], hp, "SELECT @@GLOBAL.gtid_binlog_pos;").strip()
    for node in (n.name for n in cluster.topology.with_role(Role.DB)):
        if node == primary:
            continue
        sql = f"SELECT MASTER_GTID_WAIT('{pos}', {timeout:g});"
        out = mariadb.admin_sql(cluster.hosts[node], cluster.plan.host(node), sql, timeout=timeout + 10).strip()
        if out != "0":
            raise ClusterError(f"{node} did not reach the primary's position {pos} within {timeout:g}s")


def _checksums(cluster: Cluster) -> dict[str, str]:
    db = cluster.topology.db.database
    out: dict[str, str] = {}
    for node in (n.name for n in cluster.topology.with_role(Role.DB)):
        host, hp = cluster.hosts[node], cluster.plan.host(node)
        tables = mariadb.admin_sql(
            host, hp, f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' ORDER BY 1;"
        ).split()
        sums = mariadb.admin_sql(host, hp, f"CHECKSUM TABLE {', '.join(f'{db}.{t}' for t in tables)} EXTENDED;")
        out[node] = " ".join(line.split("\t")[-1] for line in sums.splitlines())
    return out


def _rows(cluster: Cluster, primary: str, run_id: str) -> dict[str, list[int]]:
    db = cluster.topology.db.database
    sql = f"SELECT id, text FROM {db}.entries WHERE text LIKE 'nem-{run_id} %' ORDER BY id;"
    rows: dict[str, list[int]] = {}
    for line in mariadb.admin_sql(cluster.hosts[primary], cluster.plan.host(primary), sql, timeout=60).splitlines():
        entry_id, _, text = line.partition("\t")
        rows.setdefault(text, []).append(int(entry_id))
    return rows


def _file_exists(cluster: Cluster) -> Callable[[str, str], bool]:
    def exists(host: str, path: str) -> bool:
        if host not in cluster.hosts:
            return Path(path).exists()
        return cluster.hosts[host].run(["test", "-e", path], check=False).returncode == 0

    return exists


def _verdict(cluster: Cluster, report: NemesisReport, ops: list[check.WriteOp], monitor: SplitBrainMonitor) -> None:
    verdict = report.verdict
    check.check_writable([n for _, n in monitor.timeline], len(monitor.writable_nodes()), verdict)
    primary = roles_of(cluster).primary
    if primary is None:
        _count_writes(ops, verdict)
        report.error = "no single writable primary at the end"
        return
    try:
        _caught_up(cluster, primary)
    except (ClusterError, CommandError):
        _count_writes(ops, verdict)
        raise
    check.check_writes(ops, _rows(cluster, primary, report.run_id), verdict)
    check.check_checksums(_checksums(cluster), verdict)
    since = report.run_id  # events of this run: those after its first nemesis event
    run_events = events.read(cluster.layout.events_file)
    marks = [i for i, e in enumerate(run_events) if e.get("kind") == "nemesis_started" and since in e.get("detail", "")]
    check.check_errant(run_events[marks[-1] if marks else 0 :], _file_exists(cluster), verdict)


def _count_writes(ops: list[check.WriteOp], verdict: check.Verdict) -> None:
    """What the writers alone know (sent, acknowledged, refused), for a run whose data cannot be checked."""
    counted = check.check_writes(ops, {})
    verdict.writes, verdict.acked, verdict.failed = counted.writes, counted.acked, counted.failed
    verdict.acked_keyed, verdict.keyed_retried = counted.acked_keyed, counted.keyed_retried


def run_nemesis(cluster: Cluster, settings: NemesisSettings, say: Say = lambda _: None) -> NemesisReport:
    """Run the nemesis on `cluster` (healthy to begin with) and check what it did."""
    run_id = uuid.uuid4().hex[:8]
    report = NemesisReport(cluster.topology.name, settings.seed, run_id)
    plan = schedule(settings.seed, settings.steps, overlap_share=settings.overlap_share, hold=settings.hold)
    reason = wait_healthy(cluster, settings.healthy_timeout)
    if reason is not None:
        report.error = f"the cluster is not healthy to begin with: {reason}"
        return report
    length = f"{settings.duration:g} s" if settings.duration is not None else f"{len(plan)} steps"
    events.record(cluster.layout, "nemesis_started", "", f"run {run_id}, seed {settings.seed}, {length}")
    nemesis = Nemesis(cluster, settings.seed, say)
    t0 = time.monotonic()
    with SplitBrainMonitor(cluster, interval=0.3) as monitor:
        writers = Writers(cluster.topology.site_url, run_id, settings=settings.writers, verify=verify_for(cluster))
        with writers:
            for step in plan:
                if settings.duration is not None and time.monotonic() - t0 >= settings.duration:
                    break
                record = _run_step(nemesis, step, t0, settings, say)
                report.steps.append(record)
                if "not healthy" in record.error:
                    report.error = f"step {step.index + 1} ({step.label}) left the cluster unhealthy: {record.error}"
                    break
            say("stopping the writers (keyed writes in flight finish)")
        report.duration = time.monotonic() - t0
        say("waiting for replicas to apply everything; checking the data")
        try:
            _verdict(cluster, report, writers.log.ops, monitor)
        except (ClusterError, CommandError) as exc:
            report.error = (report.error + "; " if report.error else "") + f"checking: {exc}"
        report.writable_timeline = [(round(t - t0, 2), n) for t, n in monitor.timeline]
    report.attempts = list(writers.log.attempts)
    verdict = "ok" if report.ok else "; ".join([*([report.error] if report.error else []), *report.verdict.problems])
    events.record(cluster.layout, "nemesis_finished", "", f"run {run_id}: {verdict}")
    return report
