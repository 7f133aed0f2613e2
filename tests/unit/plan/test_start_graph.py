"""The start graph of `up` and `down`: which phases wait for which (START_AFTER, ClusterPlan.phase_graph),
and `parallel.run_graph`, which runs each phase once what it waits for is done."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from testkit import EXAMPLES
from webinfra.model import load_topology, parse_topology
from webinfra.parallel import run_graph
from webinfra.plan.build import build_plan
from webinfra.plan.spec import SERVICE_ORDER, START_AFTER
from webinfra.proving.bench_scale import scale_topology_text
from webinfra.state import Layout

# ---- run_graph ----


def test_run_graph_runs_a_step_after_what_it_waits_for() -> None:
    finished: list[str] = []
    lock = threading.Lock()

    def step(name: str) -> None:
        time.sleep({"a": 0.05, "b": 0.0, "c": 0.0}[name])
        with lock:
            finished.append(name)

    order = run_graph({"a": (), "b": ("a",), "c": ()}, step)
    assert order == finished
    assert finished.index("a") < finished.index("b")
    assert finished[0] == "c"  # independent of a: it did not wait for it


def test_run_graph_runs_independent_steps_side_by_side() -> None:
    both = threading.Barrier(2, timeout=5)  # a BrokenBarrierError if the two never run at the same time
    run_graph({"db": (), "front": ()}, lambda name: both.wait() and None)


def test_run_graph_starts_nothing_after_a_failure_and_raises_it() -> None:
    started: list[str] = []

    def step(name: str) -> None:
        started.append(name)
        if name == "a":
            raise RuntimeError("a failed")

    with pytest.raises(RuntimeError, match="a failed"):
        run_graph({"a": (), "b": ("a",)}, step)
    assert started == ["a"]


def test_run_graph_refuses_unknown_steps_and_cycles() -> None:
    with pytest.raises(ValueError, match="unknown steps: z"):
        run_graph({"a": ("z",)}, lambda name: None)
    with pytest.raises(ValueError, match="cycle: a, b"):
        run_graph({"a": ("b",), "b": ("a",)}, lambda name: None)


# ---- the phases' graph ----


def test_start_after_names_every_service_and_only_earlier_ones() -> None:
    assert set(START_AFTER) == set(SERVICE_ORDER)
    for name, deps in START_AFTER.items():
        assert all(SERVICE_ORDER.index(d) < SERVICE_ORDER.index(name) for d in deps), name


def test_hardened_front_tier_does_not_wait_for_the_databases(tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / "hardened.toml")
    graph = build_plan(topo, Layout.for_cluster(topo.name, tmp_path)).phase_graph()
    assert graph["agent"] == ("etcd", "mariadb")
    assert graph["etcd"] == graph["mariadb"] == graph["dbproxy"] == ()
    assert graph["keepalived"] == ("haproxy",) and graph["haproxy"] == ("nginx",) and graph["app"] == ("dbproxy",)


def test_a_phase_the_plan_lacks_is_looked_through(tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / "seed.toml")  # no etcd, agent, dbproxy or keepalived
    graph = build_plan(topo, Layout.for_cluster(topo.name, tmp_path)).phase_graph()
    assert "dbproxy" not in graph and graph["app"] == ()
    assert set(graph) == {name for name, _ in build_plan(topo, Layout.for_cluster(topo.name, tmp_path)).start_phases()}


def test_every_phase_of_a_large_plan_is_in_its_graph(tmp_path: Path) -> None:
    plan = build_plan(
        parse_topology(scale_topology_text(12, "tgraph", 81), "<test>"), Layout.for_cluster("t", tmp_path)
    )
    graph = plan.phase_graph()
    assert list(graph) == [name for name, _ in plan.start_phases()]
    assert graph["monitor"] == ("prometheus",) and graph["nginx-exporter"] == ("nginx",)
