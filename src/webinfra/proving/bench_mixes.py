"""`webinfra bench --mixes`: the hardened design's throughput and replication lag for docs/BENCHMARKS.md, as
ratios taken in one run (`--failover` is bench_failover.py).

--mixes   Two copies of examples/hardened.toml side by side, identical but for `[tls]` (both without the
          firewall, so the client can also reach one app server directly): `benchhh` (HTTP, 198.18.63.0/24)
          and `benchhs` (HTTPS at the VIP and on every hop behind it, 198.18.64.0/24). Each round runs wrk,
          interleaved, for three read/write mixes (read-only, 90/10, 50/50) on three paths: through the VIP
          (HTTP), one app server direct (web-01's nginx, HTTP), and through the VIP over HTTPS. Then
          replication lag under a write load on each cluster: wrk POSTs through the VIP while a probe inserts
          a row on the primary (over its local socket), takes the commit's GTID, and times
          `MASTER_GTID_WAIT(gtid)` on the replica: lag = from the commit returning on the primary until the
          replica has applied it.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from webinfra.control.cluster import Cluster
from webinfra.daemons import mariadb
from webinfra.errors import ClusterError
from webinfra.model import Role
from webinfra.model.relocate import amended, example_file
from webinfra.proving.bench import BenchParams, WrkResult, seed_rows, wrk
from webinfra.proving.chaos.run import roles_of
from webinfra.proving.scratch import scratch_run

Say = Callable[[str], None]
Tick = Callable[[], None]

MIX_CLUSTERS = {"HTTP": ("benchhh", "198.18.63.0/24"), "HTTPS": ("benchhs", "198.18.64.0/24")}
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
    settings: dict[str, object] = {"firewall": False}
    if not tls:
        settings["tls"] = {"enabled": False}
    return amended(example_file("hardened.toml").read_text(), settings)


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


def run_mixes(params: BenchParams, *, root: Path | None = None, say: Say = _quiet, tick: Tick = _noop) -> MixReport:
    report = MixReport()
    with scratch_run("webinfra-bench-mixes-", root, params.keep, say) as run:
        clusters: dict[str, Cluster] = {}
        for label, (name, subnet) in MIX_CLUSTERS.items():
            clusters[label] = run.bring_up(hardened_variant(tls=label == "HTTPS"), name=name, subnet=subnet)
            tick()
        scripts = {}
        for mix, every in MIXES:
            scripts[mix] = run.root / f"mix-{every}.lua"
            scripts[mix].write_text(MIX_LUA.format(every=every))
        for cluster in clusters.values():
            seed_rows(cluster)
        for n in range(params.rounds):
            for mix, _ in MIXES:
                for path, url in _mix_paths(clusters):
                    key = f"{mix} {path}"
                    say(f"round {n + 1}/{params.rounds}: {key}")
                    result = wrk(url, duration=params.duration, connections=params.connections, script=scripts[mix])
                    report.rows.setdefault(key, []).append(result)
                    tick()
            for label, cluster in clusters.items():
                say(f"round {n + 1}/{params.rounds}: replication lag under write load ({label})")
                report.lag.setdefault(label, []).append(
                    measure_lag(cluster, duration=params.duration, connections=params.connections)
                )
                tick()
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
