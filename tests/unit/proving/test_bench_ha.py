"""The pure parts of `webinfra bench --mixes / --failover`: the topologies, the wrk script, the reports."""

from __future__ import annotations

from webinfra.model import parse_topology
from webinfra.proving.bench import WrkResult
from webinfra.proving.bench_ha import (
    MIX_LUA,
    FailoverReport,
    LagRun,
    MixReport,
    failover_markdown,
    hardened_variant,
    mixes_markdown,
)


def test_variants_differ_only_in_tls() -> None:
    http = parse_topology(hardened_variant(tls=False), "<http>")
    https = parse_topology(hardened_variant(tls=True), "<https>")
    assert not http.tls.enabled and https.tls.enabled
    assert not http.firewall and not https.firewall  # the client reaches one app server directly too
    assert [h.name for h in http.hosts] == [h.name for h in https.hosts] and http.vip == https.vip


def test_mix_script_writes_every_nth_request() -> None:
    assert "local every = 10" in MIX_LUA.format(every=10)
    assert '"POST", "/api/entries"' in MIX_LUA.format(every=2)


def _w(rps: float) -> WrkResult:
    return WrkResult(rps, 5.0, 20.0, 0, 0)


def test_mixes_markdown_gives_ratios_from_medians() -> None:
    report = MixReport()
    for mix in ("read-only", "90/10", "50/50"):
        report.rows[f"{mix} via VIP (HTTP)"] = [_w(900), _w(1000), _w(1100)]
        report.rows[f"{mix} web-01 direct (HTTP)"] = [_w(1000)] * 3
        report.rows[f"{mix} via VIP (HTTPS)"] = [_w(800)] * 3
    report.lag["HTTP"] = [LagRun([1.0, 2.0, 3.0, 50.0], 400.0), LagRun([2.0] * 10, 500.0)]
    text = mixes_markdown(report, "webinfra bench --mixes")
    assert "- 90/10: through the VIP / one app server direct **1.00**; HTTPS / HTTP through the VIP **0.80**" in text
    assert "| HTTP | 450 | 14 |" in text
    assert LagRun([1.0, 2.0, 3.0, 50.0]).pct(99) == 50.0


def test_failover_markdown() -> None:
    report = FailoverReport(
        vip_haproxy_killed=[1.2, 1.3, 1.1],
        vip_host_down=[1.0, 1.4, 1.2],
        db_mariadb_killed=[2.0, 2.5, 2.2],
        db_partitioned=[6.0, 7.0, 6.5],
        acked_writes=300,
        acked_writes_lost=0,
        app_crash_failed=[(0, 3, 300), (0, 5, 300), (1, 4, 300)],
    )
    text = failover_markdown(report, "webinfra bench --failover --runs 3")
    assert "| **1.20 s** | 1.20, 1.30, 1.10 | ≤ 2 s |" in text
    assert "**0** of 300 acknowledged" in text
    assert "median **0 reads, 4 writes**" in text
