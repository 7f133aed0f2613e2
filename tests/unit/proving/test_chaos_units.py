"""The pure parts of `webinfra chaos`: scenario resolution from roles, the report's maths, moving a topology to
another name and subnet, and the timeline PNG."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit import EXAMPLES
from webinfra.model import parse_topology
from webinfra.model.relocate import relocated
from webinfra.proving.chaos.plot import buckets, timeline_png
from webinfra.proving.chaos.report import (
    ChaosResult,
    Marks,
    markdown_table,
    outage_end,
    percentile_ms,
    row,
    served_again,
    summarize,
    to_json,
)
from webinfra.proving.chaos.run import Timing
from webinfra.proving.chaos.scenarios import NAMES, NotApplicable, Roles, Target, resolve
from webinfra.proving.chaos.splitbrain import count_windows
from webinfra.proving.loadgen import Sample

SEED = parse_topology((EXAMPLES / "seed.toml").read_text(), "seed.toml")
HARDENED = parse_topology((EXAMPLES / "hardened.toml").read_text(), "hardened.toml")


# ---- scenario resolution ----
@pytest.mark.parametrize(
    ("name", "host", "service", "mode"),
    [
        ("app-crash", "web-02", "app", "crash"),
        ("app-partition", "web-02", None, "partition"),
        ("lb-crash", "lb-01", "haproxy", "crash"),
        ("lb-host-down", "lb-01", None, "crash"),
        ("primary-crash", "web-01", "mariadb", "crash"),
        ("primary-partition", "web-01", None, "partition"),
        ("replica-down", "web-02", "mariadb", "stop"),
        ("replica-slow", "web-02", None, "slow"),
        ("full-restart", None, None, "restart"),
    ],
)
def test_seed_scenarios_resolve_from_roles(name: str, host: str | None, service: str | None, mode: str) -> None:
    target = resolve(name, SEED, Roles(vip_holder=None, primary="web-01"))
    assert isinstance(target, Target)
    assert (target.host, target.service, target.mode) == (host, service, mode)
    assert target.what


def test_etcd_member_down_is_not_applicable_without_etcd() -> None:
    result = resolve("etcd-member-down", SEED, Roles(None, "web-01"))
    assert isinstance(result, NotApplicable) and "etcd" in result.reason


def test_hardened_targets_follow_the_current_roles() -> None:
    # After a failover web-02 is the primary and lb-02 holds the VIP: the scenarios follow the roles.
    roles = Roles(vip_holder="lb-02", primary="web-02")
    assert resolve("lb-crash", HARDENED, roles) == Target(
        "lb-crash", "lb-02", "haproxy", "crash", "HAProxy on lb-02 (the active LB) is killed (SIGKILL)"
    )
    primary = resolve("primary-partition", HARDENED, roles)
    assert isinstance(primary, Target) and primary.host == "web-02"
    replica = resolve("replica-down", HARDENED, roles)
    assert isinstance(replica, Target) and replica.host == "web-01"
    app = resolve("app-crash", HARDENED, roles)
    assert isinstance(app, Target) and app.host == "web-01"  # the app server not on the primary's host
    etcd = resolve("etcd-member-down", HARDENED, roles)
    assert isinstance(etcd, Target) and (etcd.host, etcd.service) == ("lb-01", "etcd")  # not a DB host


def test_on_servers_the_same_scenarios_resolve_but_full_restart() -> None:
    roles = Roles("lb-01", "web-01")
    for name in NAMES:
        emulated, servers = resolve(name, HARDENED, roles), resolve(name, HARDENED, roles, servers=True)
        if name == "full-restart":
            assert isinstance(servers, NotApplicable) and servers.reason.startswith("not on servers: ")
        else:
            assert servers == emulated  # one table of scenarios for both targets
    assert ChaosResult("x", "d", "c").runs_on == "emulated"


def test_every_scenario_resolves_on_the_hardened_design() -> None:
    roles = Roles("lb-01", "web-01")
    assert all(isinstance(resolve(n, HARDENED, roles), Target) for n in NAMES)
    assert len(NAMES) == 10
    with pytest.raises(KeyError):
        resolve("meteor-strike", HARDENED, roles)


# ---- the report's maths ----
def _s(t: float, method: str, ok: bool, latency: float = 0.01) -> Sample:
    return Sample(t, method, 200 if ok and method == "GET" else 201 if ok else 0, latency)


def _run(fail_from: float, fail_to: float, end: float = 10.0, step: float = 0.1) -> list[Sample]:
    """Alternating reads and writes every `step` s; everything started in [fail_from, fail_to) fails."""
    out = []
    for i in range(int(end / step)):
        t = round(i * step, 3)
        out.append(_s(t, "GET" if i % 2 == 0 else "POST", not (fail_from <= t < fail_to)))
    return out


def test_keyed_writes_are_counted_on_their_own() -> None:
    samples = [*_run(3.0, 4.0), Sample(5.0, "POST", 201, 0.01, keyed=True), Sample(5.1, "POST", 502, 0.01, keyed=True)]
    result = summarize(ChaosResult("x", "d", "c"), samples, Marks(fault_at=3.0, undone_at=7.0, end=10.0))
    assert (result.keyed_writes, result.keyed_writes_failed, result.writes_failed) == (2, 1, 6)
    assert "6 w, 1 of 2 keyed w)" in row(result)[3]
    assert "keyed" not in row(summarize(ChaosResult("x", "d", "c"), _run(3.0, 4.0), Marks(3.0, 7.0, 10.0)))[3]


def test_outage_that_heals_itself() -> None:
    samples = _run(3.0, 4.0)
    result = summarize(ChaosResult("x", "d", "c"), samples, Marks(fault_at=3.0, undone_at=7.0, end=10.0))
    assert result.requests_failed == 10 and result.reads_failed == 5 and result.writes_failed == 5
    assert result.availability == 90.0
    assert result.availability_during == 75.0  # 10 of the 40 requests started in [3, 7)
    # Last failure started at 3.9; the first read (4.0) and write (4.1) after it end at 4.01 and 4.11.
    assert result.recovery_seconds == pytest.approx(1.11)
    assert result.restored_seconds is None
    assert result.last_failure_seconds == pytest.approx(0.9)
    assert result.fault_seconds == 4.0
    assert result.latency_ms["before"]["n"] == 30 and result.latency_ms["during"]["p50"] == 10.0


def test_outage_until_undone_is_not_a_recovery() -> None:
    samples = _run(3.0, 7.0)
    result = summarize(ChaosResult("x", "d", "c"), samples, Marks(fault_at=3.0, undone_at=7.0, end=10.0))
    assert result.recovery_seconds is None
    assert result.restored_seconds == pytest.approx(0.11)
    assert result.availability_during == 0.0
    assert "no (held 4 s" in markdown_table([result])


def test_writes_failing_alone_still_mean_not_recovered() -> None:
    samples = [s if s.method == "GET" or not 3 <= s.started < 7 else _s(s.started, "POST", False) for s in _run(0, 0)]
    assert served_again(samples, 3.0, 7.0) is None
    assert served_again(samples, 7.0, 10.0) == pytest.approx(0.11)


def test_a_stray_failure_after_a_quiet_gap_is_not_part_of_the_outage() -> None:
    assert outage_end([3.1, 3.5, 4.9, 9.0], 3.0) == 4.9  # 9.0 follows 4.9 by more than 2 s
    assert outage_end([5.5], 3.0) == 3.0  # nothing failed right after the injection
    samples = _run(3.0, 4.0)
    samples = [_s(t.started, t.method, False) if t.started == 6.5 else t for t in samples]
    result = summarize(ChaosResult("x", "d", "c"), samples, Marks(fault_at=3.0, undone_at=7.0, end=10.0))
    assert result.recovery_seconds == pytest.approx(1.11)
    assert result.requests_failed == 11 and result.last_failure_seconds == pytest.approx(3.5)


def test_restart_window_runs_to_the_end() -> None:
    samples = _run(3.0, 8.0)
    marks = Marks(fault_at=3.0, undone_at=8.0, end=10.0, recovery_window_end=10.0)
    result = summarize(ChaosResult("full-restart", "d", "c"), samples, marks)
    assert result.recovery_seconds == pytest.approx(5.11) and result.restored_seconds is None


def test_percentiles_and_windows() -> None:
    assert percentile_ms([], 50) is None
    assert percentile_ms([0.001 * i for i in range(1, 101)], 99) == 99.0
    assert percentile_ms([0.5], 99) == 500.0
    assert count_windows([1, 2, 2, 1, 1, 2, 1, 0, 2]) == 3
    assert count_windows([1, 1, 0, 1]) == 0


def test_not_applicable_and_json() -> None:
    na = ChaosResult("etcd-member-down", "seed", "c", applicable=False, reason="no etcd")
    assert "not applicable: no etcd" in markdown_table([na])
    data = to_json(na)
    for key in ("scenario", "requests_ok", "requests_failed", "availability", "recovery_seconds"):
        assert f'"{key}"' in data
    assert '"acked_writes_lost"' in data and '"split_brain_windows"' in data


# ---- the cluster to run on ----
def test_relocated_moves_name_subnet_and_addresses() -> None:
    text = relocated((EXAMPLES / "hardened.toml").read_text(), "chx", "198.18.63.0/24")
    topo = parse_topology(text, "<relocated>")
    assert topo.name == "chx" and str(topo.network.subnet) == "198.18.63.0/24"
    assert str(topo.vip) == "198.18.63.100" and str(topo.address_of("web-02")) == "198.18.63.13"
    assert topo.tls.enabled and topo.firewall  # everything else as in the file
    seed = parse_topology(relocated((EXAMPLES / "seed.toml").read_text(), "chy", "198.18.64.0/24"), "<r>")
    assert str(seed.address_of("lb-01")) == "198.18.64.10"


def test_timing() -> None:
    t = Timing()
    assert t.concurrency >= t.rate * t.request_timeout  # hanging requests do not thin the schedule
    d = Timing.for_duration(20)
    assert (d.before, d.hold, d.after) == (5, 10, 5) and d.deadline > d.hold
    assert Timing.short().before < 2


# ---- the timeline ----
def test_buckets_and_png(tmp_path: Path) -> None:
    samples = _run(3.0, 4.0)
    t, ok, failed, p50, p99 = buckets(samples, 10.0)
    assert len(t) == 20 and ok[0] == 10.0 and failed[6] == 10.0 and p50[6] is None and p99[0] == 10.0
    result = summarize(ChaosResult("app-crash", "seed", "c", target="web-02"), samples, Marks(3.0, 7.0, 10.0))
    path = timeline_png(result, samples, tmp_path / "sub" / "t.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 5_000 < path.stat().st_size < 150_000


def test_compare_page_names_the_single_points_of_failure(tmp_path: Path) -> None:
    from webinfra.proving.chaos.suite import compare_markdown

    samples = _run(3.0, 7.0)
    seed = [summarize(ChaosResult("lb-crash", "seed", "c", target="lb-01"), samples, Marks(3.0, 7.0, 10.0))]
    seed[0].acked_writes_lost = 0
    healed = summarize(ChaosResult("lb-crash", "hardened", "c", target="lb-01"), _run(3.0, 4.0), Marks(3.0, 7.0, 10.0))
    page = compare_markdown(seed, [healed], Timing.short(), "webinfra chaos compare --out docs/", tmp_path)
    assert "As drawn, **lb-crash**: nothing was served until the fault was undone" in page
    assert "Hardened: the site served reads and writes again by itself in lb-crash." in page
    assert "| lb-crash | HAProxy on the active load balancer is killed | 0 % | no (held 4 s" in page
    assert "`webinfra chaos compare --out docs/`" in page


def test_chaos_all_writes_report_and_json(tmp_path: Path) -> None:
    import json

    from webinfra.proving.chaos.suite import write_report

    samples = _run(3.0, 4.0)
    r = summarize(ChaosResult("app-crash", "seed", "c", target="web-02"), samples, Marks(3.0, 7.0, 10.0))
    r.png = str(timeline_png(r, samples, tmp_path / "seed-app-crash.png"))
    na = ChaosResult("etcd-member-down", "seed", "c", applicable=False, reason="no etcd")
    path = write_report([r, na], Timing.short(), "webinfra chaos all --short", tmp_path)
    text = path.read_text()
    assert "# Chaos report: seed" in text and "![](seed-app-crash.png)" in text and "not applicable" in text
    data = json.loads((tmp_path / "report.json").read_text())
    assert [d["scenario"] for d in data] == ["app-crash", "etcd-member-down"]
    assert {d["runs_on"] for d in data} == {"emulated"}
    on_servers = ChaosResult("lb-crash", "hard", "hard", "servers", target="lb-01")
    servers_md = write_report([on_servers], Timing.short(), "webinfra chaos all -f servers.toml", tmp_path)
    assert "# Chaos report: hard (servers over SSH)" in servers_md.read_text()


def test_amended_sets_keys_tables_and_hosts_keeping_comments() -> None:
    from webinfra.model.relocate import amended

    text = amended(
        (EXAMPLES / "seed.toml").read_text(),
        {"firewall": True, "lb": {"check_interval_ms": 700}, "tls": {"enabled": True}},
        hosts={"web-02": {"weight": 3}},
        extra_hosts=({"name": "mon-01", "roles": ["monitoring"]},),
    )
    topo = parse_topology(text, "<amended>")
    assert topo.firewall and topo.tls.enabled and topo.lb.check_interval_ms == 700
    assert topo.lb.route_writes_to == "primary"  # the rest of [lb] kept
    assert [h.weight for h in topo.hosts if h.name == "web-02"] == [3]
    assert topo.hosts[-1].name == "mon-01"
    assert "# seed.toml: the reference design" in text


def test_the_seed_host_list_is_written_once() -> None:
    """examples/seed.toml is the seed design; the benches and the tests derive theirs from it."""
    import re

    seed_replica = re.compile(r'name = "web-02"\s*roles = \["web", "app", "db"\]\s*db_role = "replica"')
    root = EXAMPLES.parent
    for path in [*(root / "src").rglob("*.py"), *(root / "tests").rglob("*.py")]:
        assert not seed_replica.search(path.read_text()), path
