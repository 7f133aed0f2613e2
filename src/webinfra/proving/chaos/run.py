"""Running one chaos scenario against a cluster (proving/scratch.py brings up the cluster to run it on).

`run_scenario` resolves the scenario from who holds which role now, starts a paced read/write load through
the site (every acknowledged write recorded) and a split-brain monitor, waits `before` seconds, injects the
fault, keeps it at least `hold` seconds and until the site has served reads and writes again for good (at
most `deadline` seconds), undoes it, waits until the cluster is healthy again (every service running, one
primary, replicas streaming, one VIP holder, a read and a write through the site), keeps the load `after`
seconds more, and then computes the report (report.py), checks every acknowledged write on the current
primary, and draws the timeline (plot.py).
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from webinfra.control import hastate
from webinfra.control.cluster import Cluster
from webinfra.daemons import mariadb
from webinfra.errors import ClusterError
from webinfra.model import Role
from webinfra.ops import faults
from webinfra.proving.chaos.plot import timeline_png
from webinfra.proving.chaos.report import QUIET_GAP, ChaosResult, Marks, served_again, summarize
from webinfra.proving.chaos.scenarios import NotApplicable, Roles, Target, resolve
from webinfra.proving.chaos.splitbrain import SplitBrainMonitor, missing_writes
from webinfra.proving.loadgen import BackgroundLoad
from webinfra.services import pki, supervisor

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Timing:
    before: float = 5.0  # load before the fault
    hold: float = 10.0  # the fault stays in force at least this long...
    deadline: float = 30.0  # ...and until the site has recovered, at most this long
    after: float = 5.0  # load after the cluster is healthy again
    healthy_timeout: float = 180.0  # undoing the fault must make the cluster healthy within this
    rate: float = 25.0  # requests/s of the load, in all, on a fixed schedule (open loop)
    write_ratio: float = 0.3
    keyed_ratio: float = 0.5  # share of the writes sent with an Idempotency-Key (reported on their own)
    request_timeout: float = 2.0

    @property
    def concurrency(self) -> int:
        """Enough connections that requests hanging until their timeout do not thin the schedule."""
        return math.ceil(self.rate * (self.request_timeout + 0.5))

    @classmethod
    def for_duration(cls, duration: float) -> Timing:
        """`--duration D`: D/4 before, the fault held D/2 (longer, up to D/2 + 10 s, until recovered), D/4 after."""
        return cls(before=duration / 4, hold=duration / 2, deadline=duration / 2 + 10, after=duration / 4)

    @classmethod
    def short(cls) -> Timing:
        """A few seconds of load around each fault (the CI form)."""
        return cls(before=1.5, hold=1.5, deadline=25.0, after=1.5)


# ---- reading the cluster ----
def runs_on(cluster: Cluster) -> str:
    """The report's `runs_on`: servers over SSH, or emulated hosts."""
    return "servers" if cluster.servers else "emulated"


def roles_of(cluster: Cluster) -> Roles:
    topo = cluster.topology
    holders = hastate.vip_holders(cluster) if topo.lb_pair else []
    if topo.ha:
        primary = hastate.current_primary(cluster)
    else:
        primary = topo.db_primary.name if topo.db_primary else None
    return Roles(vip_holder=holders[0] if len(holders) == 1 else None, primary=primary)


def verify_for(cluster: Cluster) -> ssl.SSLContext | bool:
    """What a client verifies the site's certificate with: the cluster's CA (TLS on), else the default."""
    if not cluster.topology.tls.enabled:
        return True
    return ssl.create_default_context(cafile=str(pki.ca_path(cluster.topology, cluster.layout)))


def site_works(cluster: Cluster, verify: ssl.SSLContext | bool) -> bool:
    try:
        with httpx.Client(base_url=cluster.topology.site_url, timeout=3.0, verify=verify) as client:
            read = client.get("/api/entries?limit=1")
            write = client.post("/api/entries", json={"text": "chaos health check"})
    except httpx.HTTPError:
        return False
    return read.status_code == 200 and write.status_code == 201


def unhealthy(cluster: Cluster, verify: ssl.SSLContext | bool) -> str | None:
    """Why the cluster is not back to normal yet, or None when it is."""
    topo = cluster.topology
    for hp in cluster.plan.hosts:
        for svc in hp.services:
            if not supervisor.running(cluster.hosts[hp.name], svc):
                return f"{hp.name} {svc.name} not running"
    if topo.lb_pair and len(hastate.vip_holders(cluster)) != 1:
        return "no single VIP holder"
    primary = roles_of(cluster).primary
    if primary is None:
        return "no single writable primary"
    for spec in topo.with_role(Role.DB):
        if spec.name == primary:
            continue
        f = mariadb.facts(cluster.hosts[spec.name], cluster.plan.host(spec.name))
        if f.io_running != "Yes" or f.sql_running != "Yes":
            return f"replica {spec.name} not streaming (IO {f.io_running or '-'}, SQL {f.sql_running or '-'})"
    if not site_works(cluster, verify):
        return "the site does not serve a read and a write"
    return None


def wait_healthy(cluster: Cluster, timeout: float, verify: ssl.SSLContext | bool | None = None) -> str | None:
    """Poll until healthy; None when it is, else the last reason it was not."""
    verify = verify_for(cluster) if verify is None else verify
    deadline = time.monotonic() + timeout
    reason = unhealthy(cluster, verify)
    while reason is not None and time.monotonic() < deadline:
        time.sleep(0.3)
        reason = unhealthy(cluster, verify)
    return reason


# ---- one scenario ----
def _inject(cluster: Cluster, target: Target) -> str:
    assert target.host is not None
    assert target.mode != "restart"  # run_scenario restarts the cluster itself; faults.fail has no such mode
    return faults.fail(cluster, target.host, target.service, target.mode)


def run_scenario(
    cluster: Cluster,
    name: str,
    *,
    timing: Timing = Timing(),
    design: str = "",
    png: Path | None = None,
    say: Say = _quiet,
) -> ChaosResult:
    topo = cluster.topology
    design = design or topo.name
    resolved = resolve(name, topo, roles_of(cluster), servers=cluster.servers)
    if isinstance(resolved, NotApplicable):
        say(f"{name}: not applicable ({resolved.reason})")
        return ChaosResult(name, design, topo.name, runs_on(cluster), applicable=False, reason=resolved.reason)
    target = resolved
    result = ChaosResult(name, design, topo.name, runs_on(cluster), target=target.what)
    before = roles_of(cluster)
    result.primary_before, result.vip_before = before.primary, before.vip_holder
    verify = verify_for(cluster)
    pause = threading.Event()  # never set: waits on it are fixed observation windows, not polls for a condition
    bound = timing.before + timing.deadline + timing.healthy_timeout + timing.after + 120
    restart = target.mode == "restart"
    with (
        SplitBrainMonitor(cluster, interval=0.2) as monitor,
        BackgroundLoad(
            topo.site_url,
            duration=bound,
            concurrency=timing.concurrency,
            write_ratio=timing.write_ratio,
            keyed_ratio=timing.keyed_ratio,
            rate=timing.rate,
            timeout=timing.request_timeout,
            verify=verify,
        ) as load,
    ):
        flowing = time.monotonic() + 15
        while load.samples_so_far() < 5 and time.monotonic() < flowing:
            pause.wait(0.05)
        say(f"{name}: load flowing; {timing.before:g}s before the fault")
        pause.wait(timing.before)
        fault_at = time.monotonic() - load.started_at
        say(f"{name}: injecting: {target.what}")
        if restart:
            cluster.down()
            result.fault = "down (data kept)"
            say(f"{name}: down; up again")
            cluster.up()
        else:
            result.fault = _inject(cluster, target)
            while True:
                now = time.monotonic() - load.started_at
                held = now - fault_at
                recovered = served_again(load.snapshot(), fault_at, now)
                # Settled once a quiet gap has passed after it and every request started in that gap has ended.
                settled = (recovered or 0.0) + QUIET_GAP + timing.request_timeout + 0.2
                if recovered is not None and held >= max(timing.hold, settled):
                    say(f"{name}: site serving again {recovered:.2f}s after the fault")
                    break
                if held >= timing.deadline:
                    say(f"{name}: not recovered within {timing.deadline:g}s; undoing the fault")
                    break
                pause.wait(0.2)
            assert target.host is not None
            undone_at = time.monotonic() - load.started_at  # the fault is in force until its undoing starts
            faults.recover(cluster, target.host)
        if restart:
            undone_at = time.monotonic() - load.started_at
        say(f"{name}: fault undone; waiting for the cluster to be healthy")
        reason = wait_healthy(cluster, timing.healthy_timeout, verify)
        if reason is not None:
            result.error = f"not healthy {timing.healthy_timeout:g}s after undoing the fault: {reason}"
        pause.wait(timing.after)
        end = time.monotonic() - load.started_at
    samples = load.result.samples
    marks = Marks(fault_at, undone_at, round(end, 3), recovery_window_end=end if restart else None)
    summarize(result, samples, marks)
    acked = load.result.acked_writes
    result.acked_writes = len(acked)
    after = roles_of(cluster)
    primary = after.primary
    if primary is None and topo.ha:
        # One question per agent can miss on a loaded machine (a timeout) right after a healthy check: ask
        # until one answers rather than leave the lost writes uncounted.
        primary = hastate.wait_for_leader(cluster, timing.healthy_timeout)
    result.primary_after, result.vip_after = primary, after.vip_holder
    if primary is not None:
        lost = missing_writes(cluster, primary, acked)
        result.acked_writes_lost, result.lost_ids = len(lost), lost[:20]
    elif not result.error:
        result.error = "no writable primary to count the acknowledged writes on"
    result.split_brain_windows = monitor.windows()
    result.split_brain_polls = monitor.samples
    if png is not None:
        result.png = str(timeline_png(result, samples, png))
    return result


def run_all(
    cluster: Cluster,
    names: list[str],
    *,
    timing: Timing = Timing(),
    design: str = "",
    png_dir: Path | None = None,
    say: Say = _quiet,
    done: Callable[[ChaosResult], None] = lambda r: None,
) -> list[ChaosResult]:
    """Run `names` one after the other on `cluster` (each leaves it healthy for the next)."""
    results = []
    for name in names:
        png = png_dir / f"{design or cluster.topology.name}-{name}.png" if png_dir else None
        try:
            result = run_scenario(cluster, name, timing=timing, design=design, png=png, say=say)
        except (ClusterError, OSError) as exc:
            topo = cluster.topology
            result = ChaosResult(name, design or topo.name, topo.name, runs_on(cluster), error=str(exc))
            reason = wait_healthy(cluster, timing.healthy_timeout)
            if reason is not None:
                result.error += f"; the cluster stayed unhealthy: {reason}"
        results.append(result)
        done(result)
        if result.error and "unhealthy" in result.error:
            break
    return results
