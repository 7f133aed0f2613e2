"""The nemesis's pure parts: the seeded schedule and the checker."""

from __future__ import annotations

import pytest

from webinfra.proving.chaos.nemesis_check import (
    Verdict,
    WriteOp,
    check_checksums,
    check_errant,
    check_writable,
    check_writes,
)
from webinfra.proving.chaos.nemesis_plan import FAULT_KINDS, OVERLAPS, schedule


def test_schedule_is_reproducible_and_covers_the_catalogue() -> None:
    a = schedule(7, 20)
    assert a == schedule(7, 20)
    assert a != schedule(8, 20)
    singles = [s.faults[0].kind for s in a if len(s.faults) == 1]
    # Single faults go through every kind before one repeats.
    first = singles[: len(FAULT_KINDS)]
    assert len(set(first)) == len(first)
    assert any(len(s.faults) == 2 for s in a)
    for step in a:
        assert 4.0 <= step.hold <= 8.0
        if len(step.faults) == 2:
            assert (step.faults[0].kind, step.faults[1].kind) in OVERLAPS
            assert 0 < step.faults[1].offset < step.hold


def test_schedule_only_single_faults_and_bad_kinds() -> None:
    steps = schedule(1, 8, overlap_share=0.0)
    assert all(len(s.faults) == 1 for s in steps)
    assert {s.faults[0].kind for s in steps} == set(FAULT_KINDS)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        schedule(1, 3, kinds=("primary-crash", "meteor"))


def op(
    text: str, outcome: str = "acked", key: str | None = None, entry_id: int | None = 1, attempts: int = 1
) -> WriteOp:
    return WriteOp(0, 0, text, key, outcome, entry_id, attempts)  # type: ignore[arg-type]


def test_every_acknowledged_write_once_with_its_id() -> None:
    ops = [op("a", entry_id=1), op("b", entry_id=2, key="k"), op("c", entry_id=3)]
    v = check_writes(ops, {"a": [1], "b": [2], "c": [3]})
    assert v.acked == 3 and v.acked_keyed == 1 and not v.lost and not v.wrong_id
    v = check_writes(ops, {"a": [1], "c": [9]})
    assert v.lost == ["b"] and v.wrong_id == ["c"]


def test_duplicates_keyed_and_acknowledged() -> None:
    ops = [op("k1", key="k1", outcome="unknown", entry_id=None), op("u1"), op("k2", key="k2", attempts=3)]
    v = check_writes(ops, {"k1": [4, 5], "u1": [1, 2], "k2": [7]})
    assert v.duplicated_keyed == ["k1"]
    assert v.duplicated_acked == ["u1"]
    assert v.keyed_retried == 1 and v.unknown_keyed == 1 and v.unknown_keyed_applied == 1


def test_unknown_unkeyed_writes_reported_separately() -> None:
    ops = [op(t, outcome="unknown", entry_id=None) for t in ("x", "y", "z")]
    v = check_writes(ops, {"x": [1], "z": [2, 3]})
    assert (v.unknown_unkeyed, v.unknown_unkeyed_applied, v.unknown_unkeyed_not_applied) == (3, 1, 1)
    assert v.unknown_unkeyed_duplicated == 1
    assert any("applied twice" in p for p in check_checksums({"a": "1"}, v).problems)


def test_refused_writes_must_not_be_applied() -> None:
    v = check_writes([op("r", outcome="failed", entry_id=None)], {"r": [1]})
    assert v.applied_after_refusal == ["r"] and v.failed == 1


def test_cluster_checks() -> None:
    v = Verdict()
    check_writable([1, 1, 0, 1], 1, v)
    check_checksums({"web-01": "123 9", "web-02": "123 9"}, v)
    assert v.ok, v.problems
    check_writable([1, 2, 1], 1, v)
    assert any("2 writable nodes at once" in p for p in v.problems)
    v = Verdict()
    check_writable([], 0, v)
    check_checksums({"web-01": "1", "web-02": "2"}, v)
    problems = " | ".join(v.problems)
    assert "no sample" in problems and "at the end" in problems and "differ" in problems


def test_errant_transactions_must_name_an_existing_file() -> None:
    evs = [
        {"kind": "errant_transactions", "host": "web-01", "detail": "0-1-101..0-1-103 exported to /d/errant-1.sql"},
        {"kind": "errant_transactions", "host": "web-02", "detail": "0-2-9 set aside, no export"},
        {"kind": "promoted", "host": "web-02", "detail": "/not/errant"},
    ]
    v = check_errant(evs, lambda host, path: path == "/d/errant-1.sql", Verdict())
    assert len(v.errant_events) == 2
    assert v.errant_unsurfaced == ["web-02: 0-2-9 set aside, no export"]
    assert v.to_json()["ok"] is False


def test_resilience_page_keeps_one_nemesis_section() -> None:
    from webinfra.proving.chaos.nemesis_report import SECTION_END, SECTION_START, markdown, splice
    from webinfra.proving.chaos.nemesis_run import NemesisReport, StepRecord

    report = NemesisReport("tnem", 26, "abc", duration=120.0, steps=[StepRecord(0, "a + b", healthy_after=1.5)])
    check_writable([1, 1], 1, report.verdict)
    check_checksums({"x": "1"}, report.verdict)
    section = markdown(report, "webinfra chaos nemesis --steps 1", "nemesis/timeline.png")
    assert "| acknowledged writes lost | 0 |" in section and "![nemesis timeline](nemesis/timeline.png)" in section
    page = splice("# Resilience\n\nintro\n", section)
    again = splice(page + "\n## later\n", section.replace("--steps 1", "--steps 2"))
    assert again.count(SECTION_START) == 1 and again.count(SECTION_END) == 1
    assert "--steps 2" in again and "--steps 1" not in again and "## later" in again and "intro" in again


def test_duration_means_steps_until_that_many_seconds() -> None:
    from webinfra.proving.chaos.nemesis_run import NemesisSettings

    long = NemesisSettings.for_duration(1800, 7)
    assert long.duration == 1800 and long.seed == 7 and long.steps >= 1000  # time bounds it, not the count
    assert NemesisSettings(seed=1, steps=8).duration is None
