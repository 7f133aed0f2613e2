"""`webinfra bench`: measured figures for docs/BENCHMARKS.md, always as ratios taken in one run.

It brings up its own cluster (name `bench`, subnet 198.18.250.0/24, the seed design) from cold, so it
never disturbs a user's cluster, measures, and takes it down again (unless asked to keep it).
Load comes from wrk (Debian) in the machine's own namespace against the cluster's own addresses only,
bounded by duration. Paths are interleaved (LB, direct, LB, direct, ...) so drift on a noisy machine
hits both sides alike; each figure is the median of the rounds.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from webinfra.control.cluster import Cluster
from webinfra.errors import ClusterError
from webinfra.model.relocate import amended, relocated, seed_text
from webinfra.proving import scratch
from webinfra.proving.chaos.run import verify_for

BENCH_CLUSTER = "bench"
BENCH_SUBNET = "198.18.250.0/24"

POST_LUA = """
wrk.method = "POST"
wrk.body = '{"text": "bench write"}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


@dataclass
class BenchReport:
    cold_up_seconds: float = 0.0
    rows: dict[str, list[WrkResult]] = field(default_factory=dict)

    def median(self, key: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.rows[key])


@dataclass(frozen=True)
class BenchParams:
    """What every bench runner takes (`webinfra bench`'s flags); a mode reads the fields it uses."""

    duration: int
    connections: int
    rounds: int
    keep: bool
    runs: int  # --failover: runs of each fault
    cluster_at: tuple[str, str]  # --failover: (name, subnet) of its scratch cluster

    @property
    def flags(self) -> str:
        return f"--duration {self.duration} --connections {self.connections} --rounds {self.rounds}"


def bench_topology_text() -> str:
    """The seed design (examples/seed.toml: one LB, web-01 primary, web-02 replica; no TLS, no firewall, no
    monitoring) under the bench cluster's own name and subnet."""
    return relocated(seed_text(), BENCH_CLUSTER, BENCH_SUBNET)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> WrkResult:
    # wrk always prints these three lines; output without them fails here (AttributeError on None), on purpose.
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        rps, p50, p99, int(non2xx.group(1)) if non2xx else 0, sum(int(g) for g in errors.groups()) if errors else 0
    )


def wrk(
    url: str, *, duration: int, connections: int, script: Path | None = None, headers: tuple[str, ...] = ()
) -> WrkResult:
    if shutil.which("wrk") is None:
        raise ClusterError("wrk is not installed (apt-get install wrk, or `make deps`)")
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-H", "Host: www.foobar.com"]
    for header in headers:
        argv += ["-H", header]
    if script:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    return parse_wrk(out)


def seed_rows(cluster: Cluster, count: int = 50) -> None:
    """Some rows to read, so the list endpoint does real work."""
    with httpx.Client(base_url=cluster.topology.site_url, verify=verify_for(cluster), timeout=10) as client:
        for i in range(count):
            client.post("/api/entries", json={"text": f"seed row {i}"})


def run_bench(params: BenchParams, *, root: Path | None = None, say: Callable[[str], None] = print) -> BenchReport:
    report = BenchReport()
    with scratch.scratch_run("webinfra-bench-", root, params.keep) as run:
        cluster = run.prepare(bench_topology_text(), source="<bench>")
        topo = cluster.topology
        say(f"cold up of the seed design ({len(topo.hosts)} hosts)...")
        started = time.monotonic()
        cluster.up()
        report.cold_up_seconds = time.monotonic() - started
        say(f"  cold up: {report.cold_up_seconds:.1f}s")
        lb = topo.site_url.rstrip("/")
        direct = f"http://{topo.address_of('web-01')}"
        seed_rows(cluster)
        script = run.root / "post.lua"
        script.write_text(POST_LUA)
        plan = [
            ("read via LB", f"{lb}/api/entries?limit=10", None),
            ("read direct (web-01)", f"{direct}/api/entries?limit=10", None),
            ("write via LB", f"{lb}/api/entries", script),
            ("write direct (web-01)", f"{direct}/api/entries", script),
        ]
        for n in range(params.rounds):
            for key, url, lua in plan:
                result = wrk(url, duration=params.duration, connections=params.connections, script=lua)
                report.rows.setdefault(key, []).append(result)
                say(
                    f"  round {n + 1}/{params.rounds} {key:<22} {result.requests_per_second:8.0f} req/s  "
                    f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms"
                )
    return report


def markdown(report: BenchReport, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        f"- Cold `up` of the seed design (3 hosts, MariaDB init, replication in sync, all probes green): "
        f"**{report.cold_up_seconds:.1f} s** (goal ≤ 30 s)",
        "",
        "| path | req/s (median) | p50 ms | p99 ms | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, results in report.rows.items():
        lines.append(
            f"| {key} | {report.median(key, 'requests_per_second'):.0f} | {report.median(key, 'p50_ms'):.1f} | "
            f"{report.median(key, 'p99_ms'):.1f} | {sum(r.non_2xx for r in results)} | "
            f"{sum(r.errors for r in results)} |"
        )
    if "read via LB" in report.rows and "read direct (web-01)" in report.rows:
        ratio = report.median("read via LB", "requests_per_second") / report.median(
            "read direct (web-01)", "requests_per_second"
        )
        lines += ["", f"- Read throughput, LB path / one server direct: **{ratio:.2f}** (goal ≥ 0.9)"]
    if "write via LB" in report.rows and "write direct (web-01)" in report.rows:
        ratio = report.median("write via LB", "requests_per_second") / report.median(
            "write direct (web-01)", "requests_per_second"
        )
        lines += [f"- Write throughput, LB path / primary's server direct: **{ratio:.2f}**"]
    return "\n".join(lines) + "\n"


# ---- `webinfra bench --tls`: what HTTPS costs through the LB, with and without re-encryption ----

# Three copies of the seed design, side by side (same hosts, same firewall), differing only in [tls].
TLS_BENCH = (
    # (cluster, subnet, row label, [tls] section)
    ("benchhp", "198.18.37.0/24", "HTTP", "enabled = false"),
    ("benchhs", "198.18.38.0/24", "HTTPS, re-encrypted to nginx", "enabled = true\nbackend = true"),
    ("benchhe", "198.18.39.0/24", "HTTPS, clear to nginx", "enabled = true\nbackend = false"),
)
# Keep-alive: the TLS cost is the record layer only. New connection per request: a handshake each time,
# resumed from HAProxy's session cache after the first (wrk keeps its client session).
TLS_MODES = (("keep-alive", ()), ("new connection per request", ("Connection: close",)))


def tls_bench_topology_text(name: str, subnet: str, tls: str) -> str:
    """The seed design with the firewall on and `tls` (the lines of a [tls] section)."""
    return amended(relocated(seed_text(), name, subnet), {"firewall": True, "tls": tomllib.loads(tls)})


@dataclass
class TlsBenchReport:
    rows: dict[str, list[WrkResult]] = field(default_factory=dict)
    session_reuse: dict[str, str] = field(default_factory=dict)  # cluster label -> HAProxy's own counters

    def median(self, key: str) -> float:
        return statistics.median(r.requests_per_second for r in self.rows[key])


def _ssl_info(cluster: Cluster) -> str:
    """HAProxy's TLS counters (`show info`): connections, session-cache lookups and misses (a lookup that
    hits is a resumed session), and the peak rate of full handshakes (key computations), front and back."""
    text = cluster.runtime().command("show info")
    keep = ("CumSslConns", "SslCacheLookups", "SslCacheMisses", "SslFrontendMaxKeyRate", "SslBackendMaxKeyRate")
    wanted = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in text.splitlines() if ":" in line}
    return ", ".join(f"{k} {wanted[k]}" for k in keep if k in wanted)


def run_tls_bench(
    params: BenchParams, *, path: str = "/healthz", root: Path | None = None, say: Callable[[str], None] = print
) -> TlsBenchReport:
    """HTTP vs HTTPS (re-encrypted) vs HTTPS (edge only) through the LB, interleaved round by round."""
    report = TlsBenchReport()
    with scratch.scratch_run("webinfra-bench-tls-", root, params.keep) as run:
        clusters: list[tuple[str, Cluster]] = []
        for name, subnet, label, tls in TLS_BENCH:
            cluster = run.prepare(tls_bench_topology_text(name, subnet, tls), source="<bench>")
            clusters.append((label, cluster))
            say(f"up: {name} ({label}, {subnet})...")
            cluster.up()
        for n in range(params.rounds):
            for mode, headers in TLS_MODES:
                for label, cluster in clusters:
                    key = f"{label} ({mode})"
                    url = cluster.topology.site_url.rstrip("/") + path
                    result = wrk(url, duration=params.duration, connections=params.connections, headers=headers)
                    report.rows.setdefault(key, []).append(result)
                    say(
                        f"  round {n + 1}/{params.rounds} {key:<52} {result.requests_per_second:8.0f} req/s  "
                        f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms"
                    )
        for label, cluster in clusters:
            if cluster.topology.tls.enabled:
                report.session_reuse[label] = _ssl_info(cluster)
    return report


def tls_markdown(report: TlsBenchReport, command: str, path: str = "/healthz") -> str:
    lines = [
        f"Command: `{command}` (`GET {path}` through the LB; three copies of the seed design side by side, "
        "identical but for `[tls]`, measured interleaved)",
        "",
        "| path | req/s (median) | p50 ms | p99 ms | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, results in report.rows.items():
        lines.append(
            f"| {key} | {report.median(key):.0f} | {statistics.median(r.p50_ms for r in results):.1f} | "
            f"{statistics.median(r.p99_ms for r in results):.1f} | {sum(r.non_2xx for r in results)} | "
            f"{sum(r.errors for r in results)} |"
        )
    lines.append("")
    http, reenc, edge = (label for _, _, label, _ in TLS_BENCH)
    for mode, _ in TLS_MODES:
        keys = {label: f"{label} ({mode})" for label in (http, reenc, edge)}
        if not all(k in report.rows for k in keys.values()):
            continue
        base = report.median(keys[http])
        lines.append(
            f"- {mode}: HTTPS re-encrypted / HTTP **{report.median(keys[reenc]) / base:.2f}**; "
            f"HTTPS clear to nginx / HTTP **{report.median(keys[edge]) / base:.2f}**; "
            f"re-encrypted / clear to nginx **{report.median(keys[reenc]) / report.median(keys[edge]):.2f}**"
        )
    for label, info in report.session_reuse.items():
        lines.append(f"- HAProxy TLS counters after the run, {label}: {info}")
    return "\n".join(lines) + "\n"
