"""Scale: the bounded thread pool `up` and `status` use, the start phases (what may start side by side),
the growth fit and generated topologies of `bench --scale`, and plan building that stays cheap with
many hosts (firewall rules and Prometheus targets derived once per topology)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from webinfra.daemons.mariadb import first_rows
from webinfra.errors import UsageError
from webinfra.model import Role, parse_topology
from webinfra.parallel import map_ordered, serialized
from webinfra.plan.build import build_plan
from webinfra.plan.daemons import firewall, prometheus
from webinfra.plan.spec import PRIMARY_FIRST, SERVICE_ORDER
from webinfra.proving.bench_scale import (
    FIXED_HOSTS,
    ScaleReport,
    ScaleRow,
    fit_growth,
    is_change,
    markdown,
    parse_sizes,
    scale_topology_text,
)
from webinfra.runtime.emulated.network import link_in_place
from webinfra.services.secrets import ensure_secret
from webinfra.state import Layout

# ---- the pool ----


def test_map_ordered_keeps_item_order_whatever_finishes_first() -> None:
    def slow_first(i: int) -> int:
        time.sleep(0.01 * (5 - i))
        return i * i

    assert map_ordered(slow_first, range(6), max_workers=6) == [0, 1, 4, 9, 16, 25]


def test_map_ordered_runs_side_by_side_but_never_more_than_max_workers() -> None:
    lock, active, peak = threading.Lock(), [0], [0]

    def step(_: int) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1

    started = time.monotonic()
    map_ordered(step, range(12), max_workers=3)
    assert peak[0] == 3
    assert time.monotonic() - started < 12 * 0.05  # not one after another


def test_map_ordered_runs_every_item_then_raises_the_first_failure_in_item_order() -> None:
    done: list[int] = []

    def step(i: int) -> int:
        if i in (2, 4):
            time.sleep(0.05 if i == 2 else 0)  # item 4 fails first in time, item 2 first in order
            raise ValueError(f"item {i}")
        done.append(i)
        return i

    for workers in (1, 4):
        done.clear()
        with pytest.raises(ValueError, match="item 2"):
            map_ordered(step, range(6), max_workers=workers)
        assert sorted(done) == [0, 1, 3, 5]


def test_map_ordered_refuses_no_workers_and_handles_nothing() -> None:
    assert map_ordered(lambda i: i, [], max_workers=4) == []
    with pytest.raises(ValueError, match="max_workers"):
        map_ordered(lambda i: i, [1, 2], max_workers=0)


def test_serialized_callback_never_interleaves() -> None:
    lines: list[str] = []

    def say(host: str, what: str) -> None:
        lines.append(f"{host} begin")
        time.sleep(0.001)
        lines.append(f"{host} {what}")

    serialized_say = serialized(say)
    map_ordered(lambda i: serialized_say(f"h{i}", "started"), range(16), max_workers=8)
    pairs = list(zip(lines[::2], lines[1::2], strict=True))
    assert all(a.split()[0] == b.split()[0] for a, b in pairs)


def test_secret_asked_for_by_many_threads_at_once_has_one_value(tmp_path: Path) -> None:
    layout = Layout.for_cluster("tscale", tmp_path)
    values = map_ordered(lambda _: ensure_secret(layout, "db-exporter"), range(24), max_workers=8)
    assert len(set(values)) == 1
    assert (layout.secret("db-exporter").stat().st_mode & 0o777) == 0o600
    assert [p.name for p in layout.secrets.iterdir()] == [layout.secret("db-exporter").name]  # no temp files


# ---- start phases ----


def _plan(size: int, tmp_path: Path):  # type: ignore[no-untyped-def]
    topo = parse_topology(scale_topology_text(size, "tscale", 80), "<test>")
    return build_plan(topo, Layout.for_cluster("tscale", tmp_path))


def test_start_phases_follow_the_service_order_and_cover_the_start_order(tmp_path: Path) -> None:
    plan = _plan(12, tmp_path)
    phases = plan.start_phases()
    names = [name for name, _ in phases]
    assert names == sorted(names, key=SERVICE_ORDER.index) and len(set(names)) == len(names)
    flat = [step for _, waves in phases for wave in waves for step in wave]
    assert [(h.name, s.name) for h, s in flat] == [(h.name, s.name) for h, s in plan.start_order()]
    for name, waves in phases:
        for wave in waves:
            assert {s.name for _, s in wave} == {name}
            assert len({h.name for h, _ in wave}) == len(wave)  # one host at most once per wave


def test_primary_first_services_start_the_primary_alone_then_the_rest_together(tmp_path: Path) -> None:
    plan = _plan(12, tmp_path)
    phases = dict(plan.start_phases())
    for name in PRIMARY_FIRST:
        assert [[h.name for h, _ in wave] for wave in phases[name]] == [["db-01"], ["db-02", "db-03"]]
    assert len(phases["app"]) == 1 and len(phases["app"][0]) == 12 - len(FIXED_HOSTS)
    assert len(phases["node-exporter"]) == 1 and len(phases["node-exporter"][0]) == 12


# ---- generated topologies, sizes, growth ----


@pytest.mark.parametrize("size", [7, 10, 40])
def test_generated_topology_has_the_hardened_shape(size: int) -> None:
    topo = parse_topology(scale_topology_text(size, "tscale", 81), "<test>")
    assert len(topo.hosts) == size
    assert [len(topo.with_role(r)) for r in (Role.LB, Role.DB, Role.ETCD, Role.MONITORING)] == [2, 3, 3, 1]
    assert len(topo.with_role(Role.APP)) == size - len(FIXED_HOSTS)
    assert topo.tls.enabled and topo.firewall and topo.ha and topo.lb_pair
    assert str(topo.network.subnet) == "198.18.81.0/24"


def test_sizes_are_validated_with_one_clear_line() -> None:
    assert parse_sizes("20, 7,10,7") == (7, 10, 20)
    for bad, words in [
        ("5", "must be 7..200"),
        ("7,x", "expected host counts"),
        ("", "at least one"),
        ("500", "7..200"),
    ]:
        with pytest.raises(UsageError, match=words):
            parse_sizes(bad)


def test_fit_growth_is_least_squares() -> None:
    slope, intercept = fit_growth([5, 10, 20, 40], [3.5 + 0.25 * x for x in (5, 10, 20, 40)])
    assert slope == pytest.approx(0.25) and intercept == pytest.approx(3.5)
    slope, intercept = fit_growth([1, 2, 3], [1, 3, 2])
    assert slope == pytest.approx(0.5) and intercept == pytest.approx(1.0)
    assert fit_growth([10], [4.0]) == (0.0, 4.0)
    with pytest.raises(ValueError):
        fit_growth([1, 2], [1.0])


def _row(hosts: int, cold: float) -> ScaleRow:
    return ScaleRow(
        hosts=hosts,
        app_servers=hosts - 6,
        cold_up_seconds=cold,
        second_up_seconds=0.5,
        second_up_runs=[0.5],
        second_up_changed=[],
        status_seconds=0.4,
        status_runs=[0.4],
        status_in_process_seconds=0.1,
        cli_startup_seconds=0.3,
        rss_mib_per_host=100.0,
        idle_cpu_cores=0.5,
        idle_cpu_cores_by_service={"agent": 0.3, "app": 0.2},
        rss_mib_by_host={},
        prometheus_targets=4 * hosts,
        prometheus_targets_up=4 * hosts,
        ingest_samples_per_second=1000.0,
        scraped_samples_per_second=990.0,
    )


def test_report_fits_growth_per_host_and_prints_a_table() -> None:
    report = ScaleReport([_row(7, 10.0), _row(10, 11.5), _row(20, 16.5)])
    assert report.growth("cold_up_seconds") == pytest.approx(0.5)
    assert report.as_dict()["growth_per_host"]["second_up_seconds"] == pytest.approx(0.0)  # type: ignore[index]
    text = markdown(report, "webinfra bench --scale --sizes 7,10,20")
    assert "| 20 | 14 | 16.5 | 0.5 | 0.40 | 0.30 | 0.10 | 100 | 0.50 | 80 (80) | 1000 | 990 |" in text
    assert "cold up +0.500 s" in text
    assert "changed something" not in text
    assert ScaleReport([_row(7, 1.0)]).growth("cold_up_seconds") is None


def test_only_what_up_changed_counts_as_a_change() -> None:
    for action in ("started", "restarted", "reloaded", "loaded", "stopped (role removed)", "issued ca, site"):
        assert is_change(action)
    for action in ("unchanged", "healthy", "holds the VIP 198.18.80.250", "leader (writable primary)", "none"):
        assert not is_change(action)


# ---- plan cost ----


def test_plan_of_200_hosts_builds_in_bounded_time(tmp_path: Path) -> None:
    topo = parse_topology(scale_topology_text(200, "tscale", 82), "<test>")
    started = time.monotonic()
    plan = build_plan(topo, Layout.for_cluster("tscale", tmp_path))
    elapsed = time.monotonic() - started
    # ~0.2 s here; the per-host derivation of every flow it replaced took 87 s (cubic in the host count).
    assert elapsed < 15, f"plan of 200 hosts took {elapsed:.1f}s"
    assert len(plan.hosts) == 200
    targets = prometheus.targets(topo)
    # node: every host; site, nginx and dbproxy: each app server; haproxy: 2 LBs; mysqld and agent: 3 DB
    # nodes; etcd: 3 members; prometheus, webinfra's watcher and alertmanager: the monitoring host
    assert len(targets) == len({(t.job, t.host) for t in targets}) == 200 + 3 * 194 + 2 + 2 * 3 + 3 + 3


def test_rulesets_of_a_whole_cluster_equal_each_host_s_own(tmp_path: Path) -> None:
    topo = parse_topology(scale_topology_text(9, "tscale", 83), "<test>")
    every = firewall.rulesets(topo)
    assert list(every) == [h.name for h in topo.hosts]
    assert all(every[h.name] == firewall.ruleset(topo, h.name) for h in topo.hosts)
    # db-01 accepts the app servers' queries, each address once.
    apps = [str(topo.address_of(h.name)) for h in topo.with_role(Role.APP)]
    db_rule = next(line for line in every["db-01"].splitlines() if '"app -> mariadb"' in line)
    assert all(db_rule.count(a + ",") + db_rule.count(a + " }") == 1 for a in apps)


# ---- fewer commands per host on the unchanged path ----


def test_first_rows_of_several_result_sets() -> None:
    out = """*************************** 1. row ***************************
  ro: 1
gtid: 0-12-8
*************************** 1. row ***************************
                Slave_IO_State: Waiting for master to send event
                   Master_Host: 198.18.81.12
         Seconds_Behind_Master: NULL
*************************** 2. row ***************************
                   Master_Host: ignored
"""
    rows = first_rows(out)
    assert rows == [
        {"ro": "1", "gtid": "0-12-8"},
        {
            "Slave_IO_State": "Waiting for master to send event",
            "Master_Host": "198.18.81.12",
            "Seconds_Behind_Master": "",
        },
    ]
    assert first_rows("") == []


def test_link_in_place_needs_loopback_up_and_eth0_up_with_its_address() -> None:
    good = (
        "lo               UNKNOWN        127.0.0.1/8 \n"
        "eth0@if253       UP             198.18.81.15/24 198.18.81.250/32 \n"
    )
    assert link_in_place(good, "198.18.81.15/24")
    assert link_in_place(good, "198.18.81.250/32")
    assert not link_in_place(good, "198.18.81.16/24")
    assert not link_in_place(good.replace("UNKNOWN", "DOWN   "), "198.18.81.15/24")
    assert not link_in_place(good.replace(" UP ", " DOWN "), "198.18.81.15/24")
    assert not link_in_place("lo UNKNOWN 127.0.0.1/8\n", "198.18.81.15/24")
    assert not link_in_place("", "198.18.81.15/24")
