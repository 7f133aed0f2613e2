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
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import tomlkit

from webinfra.control import faults
from webinfra.control.bench import WrkResult, wrk
from webinfra.control.chaos.run import bring_up, example_file, roles_of, verify_for, wait_healthy
from webinfra.control.chaos.splitbrain import missing_writes
from webinfra.control.cluster import Cluster, ClusterError
from webinfra.control.load import BackgroundLoad
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
    roles = roles_of(cluster)
    primary = roles.primary
    if primary is None:
        raise ClusterError("no single primary to measure replication lag from")
    replica = next(h.name for h in cluster.topology.db_replicas + (cluster.topology.db_primary,) if h and h.name != primary)  # type: ignore[operator]
    table = f"{cluster.topology.db.database}.entries"
    run = LagRun()
    writer, reader = SqlSession(cluster, primary), SqlSession(cluster, replica)
    root = Path(tempfile.mkdtemp(prefix="webinfra-lag-"))
    script = root / "post.lua"
    script.write_text(POST_LUA)
    box: dict[str, WrkResult] = {}
    load = threading.Thread(
        target=lambda: box.setdefault(
            "r", wrk(cluster.topology.site_url + "api/entries", duration=duration, connections=connections, script=script)
        ),
        daemon=True,
    )
    try:
        writer.ask("SELECT 1;")
        reader.ask("SELECT 1;")
        load.start()
        started = time.monotonic()
        while time.monotonic() - started < duration - 0.5 and load.is_alive():
            writer.ask(f"INSERT INTO {table} (text, author_host) VALUES ('lag probe', 'bench');")  # no output
            gtid = writer.ask("SELECT @@last_gtid;")
            committed = time.monotonic()
            if reader.ask(f"SELECT MASTER_GTID_WAIT('{gtid}', 5);") != "0":
                run.timeouts += 1
            else:
                run.lags_ms.append((time.monotonic() - committed) * 1000)
            time.sleep(interval)
        load.join(duration + 60)
    finally:
        writer.close()
        reader.close()
        shutil.rmtree(root, ignore_errors=True)
    if "r" in box:
        run.write_rps = box["r"].requests_per_second
    return run
