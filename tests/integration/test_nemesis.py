"""The nemesis in its short form (a few minutes) on its own hardened cluster (`tnem`, 198.18.62.0/24,
examples/hardened.toml as users run it): writers send keyed and unkeyed POSTs through the VIP the whole time
while a seeded schedule injects single and overlapping faults (primary crash and partition, a replica
partitioned while the primary acknowledges alone, the primary's agent frozen, an etcd member lost, the VIP
holder crashed, a switchover in flight, a slow primary), each undone and followed by a healthy cluster.
Then the data must say: every acknowledged write there exactly once, no keyed write twice, every DB node's
tables equal, never two writable nodes, exactly one at the end, errant transactions surfaced.

The long form (`webinfra chaos nemesis --duration 1800`) is recorded in docs/RESILIENCE.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from clusterkit import ARTIFACTS, cli, take_down

from webinfra.control.cluster import Cluster
from webinfra.proving.chaos.nemesis_plan import FAULT_KINDS
from webinfra.proving.chaos.nemesis_report import timeline_png
from webinfra.proving.chaos.nemesis_run import NemesisSettings, run_nemesis
from webinfra.proving.chaos.run import bring_up, example_file


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    text = example_file("hardened.toml").read_text()
    c = bring_up(text, "tnem", "198.18.62.0/24", tmp_path_factory.mktemp("state-nemesis"))
    yield c
    take_down(c)


def test_short_nemesis_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    # Seed 26's 8 steps: every fault kind at least once, four overlapping (one: the primary crashes while a
    # replica is cut off, i.e. while it acknowledges alone).
    settings = NemesisSettings(seed=26, steps=8)
    report = run_nemesis(cluster, settings, print)
    png = timeline_png(report, ARTIFACTS / "chaos" / "nemesis-short.png")
    (ARTIFACTS / "chaos" / "nemesis-short.json").write_text(json.dumps(report.to_json(), indent=2))
    v = report.verdict
    assert not report.error, report.error
    assert v.ok, v.problems
    kinds = {label for s in report.steps for label in s.label.split(" + ")}
    assert kinds == set(FAULT_KINDS)
    assert any(" + " in s.label for s in report.steps)
    assert v.acked > 50 and v.acked_keyed > 20
    assert v.writable_polls > 100 and v.max_writable == 1 and v.final_writable == 1
    assert png.stat().st_size > 5000


def test_nemesis_through_the_cli(cluster: Cluster) -> None:
    proc = cli(cluster, "chaos", "nemesis", "--steps", "1", "--seed", "5", "--json", timeout=400)
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["faults_injected"] >= 1
    assert {"acked", "lost", "duplicated_keyed", "checksums_equal", "max_writable"} <= set(data["verdict"])
