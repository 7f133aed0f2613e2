"""`webinfra bench --mixes` and `webinfra bench --failover`: the hardened design's figures for
docs/BENCHMARKS.md, as ratios taken in one run and medians of several runs.

--mixes   Two copies of examples/hardened.toml side by side, identical but for `[tls]` (both without the
          firewall, so the client can also reach one app server directly): `benchhh` (HTTP, 198.18.63.0/24)
          and `benchhs` (HTTPS at the VIP and on every hop behind it, 198.18.64.0/24). Each round runs wrk,
          interleaved, for three read/write mixes (read-only, 90/10, 50/50) on three paths: through the VIP
          (HTTP), one app server direct (web-01's nginx, HTTP), and through the VIP over HTTPS. Then
          replication lag under a write load on each cluster: wrk POSTs through the VIP while a probe inserts
          a row on the primary (over its local socket), takes the commit's GTID, and times
          `MASTER_GTID_WAIT(gtid)` on the replica: lag = from the commit returning on the primary until the
          replica has applied it.
--failover  One copy of examples/hardened.toml as it is (HTTPS, firewall; `benchfo`, 198.18.65.0/24). N runs
          each of: HAProxy killed on the VIP holder and the VIP holder's host down (→ first successful
          request through the VIP), the primary's mariadbd SIGKILLed and the primary's host partitioned
          (→ first successful write through the site), with a read/write load whose acknowledged writes are
          all checked on the new primary, and an app server killed under load (→ failed requests). Medians.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import tomlkit

from webinfra.control.cluster import Cluster, ClusterError
from webinfra.model import Role
from webinfra.ops import faults
from webinfra.proving.bench import WrkResult, wrk
from webinfra.proving.chaos.run import bring_up, example_file, roles_of, verify_for, wait_healthy
from webinfra.proving.chaos.splitbrain import missing_writes
from webinfra.proving.loadgen import BackgroundLoad
from webinfra.services import mariadb

Say = Callable[[str], None]
Tick = Callable[[], None]

MIX_CLUSTERS = {"HTTP": ("benchhh", "198.18.63.0/24"), "HTTPS": ("benchhs", "198.18.64.0/24")}
FAILOVER_CLUSTER = ("benchfo", "198.18.65.0/24")
MIXES = (("read-only", 0), ("90/10", 10), ("50/50", 2))  # (label, every Nth request is a write; 0: none)

MIX_LUA = """
local n = 0
local every = {every}
local body = '{{"text": "bench mix"}}'
request = function()
  n = n + 1
  if every > 0 and n % every == 0 then
    return wrk.format("POST", "/api/entries", {{["Content-Type"] = "application/json"}}, body)
  end
  return wrk.format("GET", "/api/entries?limit=10")
end
"""
POST_LUA = """
wrk.method = "POST"
wrk.body = '{"text": "bench write load"}'
wrk.headers["Content-Type"] = "application/json"
"""


def _quiet(_: str) -> None:
    pass


def _noop() -> None:
    pass


def hardened_variant(tls: bool) -> str:
    """examples/hardened.toml without the firewall, with or without TLS."""
    doc = tomlkit.parse(example_file("hardened.toml").read_text())
    doc["firewall"] = False
    if not tls:
        doc["tls"] = {"enabled": False}
    return tomlkit.dumps(doc)


# ---- replication lag ----
class SqlSession:
    """One long-lived `mariadb` client on a node's local socket: a query per line, one answer line each."""

    def __init__(self, cluster: Cluster, host: str) -> None:
        sock = mariadb.socket_path(cluster.plan.host(host))
        self.proc = subprocess.Popen(
            ["mariadb", f"--socket={sock}", "--user=root", "--batch", "--skip-column-names", "--unbuffered"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def ask(self, sql: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(sql + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise ClusterError(f"mariadb session ended while asking {sql!r}")
        return line.strip()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class LagRun:
    lags_ms: list[float] = field(default_factory=list)
    write_rps: float = 0.0
    timeouts: int = 0

    def pct(self, p: float) -> float:
        ordered = sorted(self.lags_ms)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] if ordered else float("nan")


def measure_lag(cluster: Cluster, *, duration: int, connections: int, interval: float = 0.05) -> LagRun:
    """Replication lag under a write load (wrk POSTs through the site): see the module doc."""
    primary = roles_of(cluster).primary
    if primary is None:
        raise ClusterError("no single primary to measure replication lag from")
    replica = next(h.name for h in cluster.topology.with_role(Role.DB) if h.name != primary)
    table = f"{cluster.topology.db.database}.entries"
    run = LagRun()
    root = Path(tempfile.mkdtemp(prefix="webinfra-lag-"))
    script = root / "post.lua"
    script.write_text(POST_LUA)
    box: dict[str, WrkResult] = {}
    url = cluster.topology.site_url + "api/entries"

    def load() -> None:
        box["r"] = wrk(url, duration=duration, connections=connections, script=script)

    thread = threading.Thread(target=load, daemon=True)
    writer, reader = SqlSession(cluster, primary), SqlSession(cluster, replica)
    try:
        writer.ask("SELECT 1;")
        reader.ask("SELECT 1;")
        thread.start()
        started = time.monotonic()
        while time.monotonic() - started < duration - 0.5 and thread.is_alive():
            # The INSERT commits (autocommit; semi-sync: once the replica has it in its relay log) and prints
            # nothing; the SELECT on the same line prints the commit's GTID.
            gtid = writer.ask(
                f"INSERT INTO {table} (text, author_host) VALUES ('lag probe', 'bench'); SELECT @@last_gtid;"
            )
            committed = time.monotonic()
            if reader.ask(f"SELECT MASTER_GTID_WAIT('{gtid}', 5);") != "0":
                run.timeouts += 1
            else:
                run.lags_ms.append((time.monotonic() - committed) * 1000)
            time.sleep(interval)
        thread.join(duration + 60)
    finally:
        writer.close()
        reader.close()
        shutil.rmtree(root, ignore_errors=True)
    if "r" in box:
        run.write_rps = box["r"].requests_per_second
    return run


# ---- --mixes ----
@dataclass
class MixReport:
    rows: dict[str, list[WrkResult]] = field(default_factory=dict)
    lag: dict[str, list[LagRun]] = field(default_factory=dict)  # "HTTP" / "HTTPS" cluster -> one run per round

    def median(self, key: str, attr: str = "requests_per_second") -> float:
        return statistics.median(getattr(r, attr) for r in self.rows[key])


def _mix_paths(clusters: dict[str, Cluster]) -> list[tuple[str, str]]:
    """(path label, base URL) for each path, in the order measured."""
    http, https = clusters["HTTP"], clusters["HTTPS"]
    direct = f"http://{http.topology.address_of('web-01')}:{http.topology.web.port}/"
    return [
        ("via VIP (HTTP)", http.topology.site_url),
        ("web-01 direct (HTTP)", direct),
        ("via VIP (HTTPS)", https.topology.site_url),
    ]


def run_mixes(
    *,
    duration: int = 5,
    connections: int = 16,
    rounds: int = 3,
    keep: bool = False,
    root: Path | None = None,
    say: Say = _quiet,
    tick: Tick = _noop,
) -> MixReport:
    report = MixReport()
    state = root or Path(tempfile.mkdtemp(prefix="webinfra-bench-mixes-"))
    clusters: dict[str, Cluster] = {}
    try:
        for label, (name, subnet) in MIX_CLUSTERS.items():
            clusters[label] = bring_up(hardened_variant(tls=label == "HTTPS"), name, subnet, state, say)
            tick()
        scripts = {}
        for mix, every in MIXES:
            scripts[mix] = state / f"mix-{every}.lua"
            scripts[mix].write_text(MIX_LUA.format(every=every))
        for cluster in clusters.values():  # some rows to read, so the list endpoint does real work
            with httpx.Client(base_url=cluster.topology.site_url, verify=verify_for(cluster), timeout=10) as client:
                for i in range(50):
                    client.post("/api/entries", json={"text": f"seed row {i}"})
        for n in range(rounds):
            for mix, _ in MIXES:
                for path, url in _mix_paths(clusters):
                    key = f"{mix} {path}"
                    say(f"round {n + 1}/{rounds}: {key}")
                    result = wrk(url, duration=duration, connections=connections, script=scripts[mix])
                    report.rows.setdefault(key, []).append(result)
                    tick()
            for label, cluster in clusters.items():
                say(f"round {n + 1}/{rounds}: replication lag under write load ({label})")
                report.lag.setdefault(label, []).append(
                    measure_lag(cluster, duration=duration, connections=connections)
                )
                tick()
    finally:
        if not keep:
            for cluster in clusters.values():
                cluster.down(purge=True)
            if root is None:
                shutil.rmtree(state, ignore_errors=True)
    return report


def mixes_steps(rounds: int) -> int:
    return len(MIX_CLUSTERS) + rounds * (len(MIXES) * 3 + len(MIX_CLUSTERS))


def mixes_markdown(report: MixReport, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "| mix | path | req/s (median) | p50 ms | p99 ms | non-2xx | socket errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, results in report.rows.items():
        mix, path = key.split(" ", 1)
        lines.append(
            f"| {mix} | {path} | {report.median(key):.0f} | {report.median(key, 'p50_ms'):.1f} | "
            f"{report.median(key, 'p99_ms'):.1f} | {sum(r.non_2xx for r in results)} | "
            f"{sum(r.errors for r in results)} |"
        )
    lines += ["", "Ratios (medians of the same run):", ""]
    for mix, _ in MIXES:
        keys = [f"{mix} {path}" for path in ("via VIP (HTTP)", "web-01 direct (HTTP)", "via VIP (HTTPS)")]
        if not all(k in report.rows for k in keys):
            continue
        vip, direct, https = (report.median(k) for k in keys)
        lines.append(
            f"- {mix}: through the VIP / one app server direct **{vip / direct:.2f}**; "
            f"HTTPS / HTTP through the VIP **{https / vip:.2f}**"
        )
    if report.lag:
        lines += [
            "",
            "Replication lag under write load (commit on the primary → `MASTER_GTID_WAIT` returns on the replica):",
            "",
            "| cluster | write load req/s (median) | probes | lag p50 ms (median of rounds) | lag p99 ms (median) | "
            "worst p99 ms | timeouts |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label, runs in report.lag.items():
            lines.append(
                f"| {label} | {statistics.median(r.write_rps for r in runs):.0f} | "
                f"{sum(len(r.lags_ms) for r in runs)} | {statistics.median(r.pct(50) for r in runs):.1f} | "
                f"{statistics.median(r.pct(99) for r in runs):.1f} | {max(r.pct(99) for r in runs):.1f} | "
                f"{sum(r.timeouts for r in runs)} |"
            )
    return "\n".join(lines) + "\n"


# ---- --failover ----
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


def run_failover(
    *,
    runs: int = 3,
    keep: bool = False,
    root: Path | None = None,
    say: Say = _quiet,
    tick: Tick = _noop,
    cluster_at: tuple[str, str] = FAILOVER_CLUSTER,
) -> FailoverReport:
    """`cluster_at`: (name, subnet) of the scratch cluster it brings up."""
    report = FailoverReport()
    state = root or Path(tempfile.mkdtemp(prefix="webinfra-bench-failover-"))
    name, subnet = cluster_at
    cluster = bring_up(example_file("hardened.toml").read_text(), name, subnet, state, say)
    tick()
    verify = verify_for(cluster)
    try:
        for n in range(runs):
            for service, series in (("haproxy", report.vip_haproxy_killed), (None, report.vip_host_down)):
                holder = roles_of(cluster).vip_holder
                assert holder is not None
                say(f"run {n + 1}/{runs}: VIP takeover, {'HAProxy killed' if service else 'host down'} on {holder}")
                started = time.monotonic()
                faults.fail(cluster, holder, service, "crash")
                series.append(_first_success(_read_ok(cluster), started, 60))
                faults.recover(cluster, holder)
                _healthy(cluster, "VIP takeover")
                tick()
            db_faults: tuple[tuple[str | None, faults.Mode, list[float]], ...] = (
                ("mariadb", "crash", report.db_mariadb_killed),
                (None, "partition", report.db_partitioned),
            )
            for service, mode, series in db_faults:
                primary = roles_of(cluster).primary
                assert primary is not None
                say(f"run {n + 1}/{runs}: DB failover, {primary} {'mariadbd killed' if service else 'partitioned'}")
                with BackgroundLoad(
                    cluster.topology.site_url,
                    duration=600,
                    concurrency=50,
                    rate=40,
                    write_ratio=0.5,
                    timeout=2.0,
                    verify=verify,
                ) as load:
                    time.sleep(1.0)  # a second of acknowledged writes before the fault
                    started = time.monotonic()
                    faults.fail(cluster, primary, service, mode)
                    series.append(_first_success(_write_ok(cluster), started, 60))
                    faults.recover(cluster, primary)
                    _healthy(cluster, "DB failover")
                acked = load.result.acked_writes
                new_primary = roles_of(cluster).primary
                assert new_primary is not None
                report.acked_writes += len(acked)
                report.acked_writes_lost += len(missing_writes(cluster, new_primary, acked))
                tick()
            app = next(h.name for h in cluster.topology.with_role(Role.APP) if h.name != roles_of(cluster).primary)
            say(f"run {n + 1}/{runs}: app server on {app} killed under load")
            with BackgroundLoad(
                cluster.topology.site_url,
                duration=600,
                concurrency=50,
                rate=40,
                write_ratio=0.3,
                timeout=2.0,
                verify=verify,
            ) as load:
                time.sleep(1.0)
                faults.fail(cluster, app, "app", "crash")
                time.sleep(6.0)  # several health-check intervals: the LB has marked it down by then
                faults.recover(cluster, app)
                _healthy(cluster, "app crash")
            failed = load.result.failed
            report.app_crash_failed.append(
                (
                    sum(s.method == "GET" for s in failed),
                    sum(s.method == "POST" for s in failed),
                    len(load.result.samples),
                )
            )
            tick()
    finally:
        if not keep:
            cluster.down(purge=True)
            if root is None:
                shutil.rmtree(state, ignore_errors=True)
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
    return "\n".join(lines) + "\n"
