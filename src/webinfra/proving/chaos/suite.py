"""Sets of chaos runs: `webinfra chaos all` (every scenario on one design: report.md + PNGs) and
`webinfra chaos compare` (every scenario on the design as drawn, examples/seed.toml, and on the hardened
one, examples/hardened.toml, one after the other: docs/RESILIENCE.md + docs/resilience/*.png)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from webinfra.model.relocate import example_file
from webinfra.proving.chaos import report
from webinfra.proving.chaos.nemesis_report import SECTION_START
from webinfra.proving.chaos.report import ChaosResult
from webinfra.proving.chaos.run import Say, Timing, run_all
from webinfra.proving.chaos.scenarios import NAMES, SCENARIOS
from webinfra.proving.scratch import on_cluster

T = TypeVar("T")

ALL_CLUSTER = ("chaos", "198.18.66.0/24")
DEFAULT_TIMING = Timing()
COMPARE_CLUSTERS = {"seed": ("chseed", "198.18.67.0/24"), "hardened": ("chhard", "198.18.68.0/24")}
NEMESIS_CLUSTER = ("nemesis", "198.18.69.0/24")

DEFINITIONS = """\
- **Load**: a paced read/write load through the site's address (the VIP of an LB pair), {rate:g} requests/s
  over {conc} connections, {wr:.0%} writes (`POST /api/entries`; {kr:.0%} of them carry an `Idempotency-Key`, which
  lets HAProxy retry them on another server), the rest reads (`GET /api/entries?limit=10`),
  {timeout:g} s timeout per request. Every request is recorded; every acknowledged write (201) is kept.
- **Phases**: {before:g} s of load, then the fault; it stays in force at least {hold:g} s and until the site
  has recovered (at most {deadline:g} s); then it is undone (`webinfra recover`), the run waits until the
  cluster is healthy again (every service running, one writable primary, replicas streaming, one VIP holder,
  a read and a write through the site), and the load goes on {after:g} s more.
- **availability**: successful requests / all requests of the run; **during fault**: the same over the
  requests started while the fault was in force.
- **recovered** (time to recover): from the injection until the site served reads and writes again. The
  outage is the run of failed requests from the injection on, each starting less than 2 s after the previous
  one (or the injection); L is the start of its last failure (the injection if nothing failed). Recovery is when
  the first successful read and the first successful write started at or after L had both completed. "no"
  means that did not happen before the fault was undone: the design did not recover by itself (the time after
  the undo is shown in brackets). Failures after the outage still count in the failed requests and the
  availability. For full-restart the fault is "down, then up": the window runs to the end.
- **p50/p99**: latency of successful requests before the fault, while it was in force, and after it was undone.
- **acked writes lost**: acknowledged writes the primary does not have at the end (queried by id).
- **2 primaries**: windows in which more than one MariaDB accepted writes (`read_only = 0`), polled every
  0.2 s on every DB node over its local socket. Must be 0.
"""


def definitions(timing: Timing) -> str:
    return DEFINITIONS.format(
        rate=timing.rate,
        conc=timing.concurrency,
        wr=timing.write_ratio,
        kr=timing.keyed_ratio,
        timeout=timing.request_timeout,
        before=timing.before,
        hold=timing.hold,
        deadline=timing.deadline,
        after=timing.after,
    )


def run_design(
    text: str,
    design: str,
    *,
    cluster: tuple[str, str] = ALL_CLUSTER,
    names: Sequence[str] = NAMES,
    timing: Timing = DEFAULT_TIMING,
    png_dir: Path | None = None,
    root: Path | None = None,
    keep: bool = False,
    say: Say = print,
    done: Callable[[ChaosResult], None] = lambda r: None,
) -> list[ChaosResult]:
    """Bring up `text` as its own cluster, run `names` on it, take it down."""
    name, subnet = cluster
    return on_cluster(
        text,
        name,
        subnet,
        root,
        keep,
        say,
        lambda c: run_all(c, list(names), timing=timing, design=design, png_dir=png_dir, say=say, done=done),
    )


def _img(path: str | None, base: Path) -> str:
    return f"![]({os.path.relpath(path, base)})" if path else "—"


def report_markdown(results: Sequence[ChaosResult], timing: Timing, command: str, out_dir: Path) -> str:
    design = results[0].design if results else ""
    where = " (servers over SSH)" if results and results[0].runs_on == "servers" else ""
    lines = [
        f"# Chaos report: {design}{where}",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        report.markdown_table(results),
        "## Definitions",
        "",
        definitions(timing),
        "## Timelines",
        "",
    ]
    for r in results:
        if r.png:
            lines += [f"### {r.scenario}", "", r.target, "", _img(r.png, out_dir), ""]
    return "\n".join(lines)


def write_report(results: Sequence[ChaosResult], timing: Timing, command: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.md"
    path.write_text(report_markdown(results, timing, command, out_dir))
    (out_dir / "report.json").write_text(report.to_json(results) + "\n")
    return path


# ---- as drawn vs hardened ----
def _brief(r: ChaosResult | None) -> list[str]:
    if r is None:
        return ["—"] * 4
    if not r.applicable:
        return ["n/a", "n/a", "n/a", "n/a"]
    if r.error:
        return ["error", r.error[:60], "—", "—"]
    during = "—" if r.availability_during is None else f"{r.availability_during:.0f} %"
    failed = f"{r.reads_failed} / {r.writes_failed}"
    lost = "—" if r.acked_writes_lost is None else str(r.acked_writes_lost)
    return [during, report.recovery_text(r), failed, f"{lost} / {r.split_brain_windows}"]


# Why a scenario that the hardened design does not survive fails, when the cause is known.
KNOWN_CAUSES = {
    "app-partition": (
        "the partitioned host also holds the replica. Its replication connection stays ESTABLISHED on the "
        "primary (a partition drops packets; nothing closes the socket), so the primary still counts one "
        "semi-sync client; an agent that falls back to async only when no client is connected never does, "
        "and every commit waits for an acknowledgement that cannot come. The agent also falls back when "
        "commits wait unacknowledged: if this shows, look there first."
    ),
}


def findings(seed: Sequence[ChaosResult], hardened: Sequence[ChaosResult]) -> list[str]:
    """Bullets drawn from the results: the seed design's single points of failure, and what the hardened
    design did not survive by itself (with the known cause)."""
    out = []
    spof = [r for r in seed if r.applicable and not r.error and r.recovery_seconds is None]
    for r in spof:
        during = "—" if r.availability_during is None else f"{r.availability_during:.0f} %"
        what = (
            "nothing was served"
            if (r.availability_during or 0) < 5
            else (f"{r.writes_failed} writes and {r.reads_failed} reads failed")
        )
        out.append(f"- As drawn, **{r.scenario}**: {what} until the fault was undone (availability {during}).")
    if not spof:
        out.append("- As drawn: every scenario recovered by itself in this run.")
    bad = [r for r in hardened if r.applicable and (r.error or r.recovery_seconds is None)]
    for r in bad:
        cause = KNOWN_CAUSES.get(r.scenario, r.error or "cause not analysed yet")
        out.append(f"- Hardened, **{r.scenario}** did not recover by itself: {cause}")
    good = [r.scenario for r in hardened if r.applicable and not r.error and r.recovery_seconds is not None]
    if good:
        out.append(f"- Hardened: the site served reads and writes again by itself in {', '.join(good)}.")
    lost = sum(r.acked_writes_lost or 0 for r in [*seed, *hardened])
    acked = sum(r.acked_writes for r in [*seed, *hardened])
    brains = sum(r.split_brain_windows for r in [*seed, *hardened])
    out.append(
        f"- Acknowledged writes lost, all runs: **{lost}** of {acked}; windows with two writable primaries: "
        f"**{brains}**."
    )
    slow = next((r for r in [*hardened, *seed] if r.scenario == "replica-slow" and r.fault), None)
    if slow is not None:
        out.append(f"- replica-slow on this machine: {slow.fault}.")
    return out


def compare_markdown(
    seed: Sequence[ChaosResult], hardened: Sequence[ChaosResult], timing: Timing, command: str, docs: Path
) -> str:
    by = {"seed": {r.scenario: r for r in seed}, "hardened": {r.scenario: r for r in hardened}}
    head = ["availability during fault", "recovered", "failed reads / writes", "lost / 2 primaries"]
    lines = [
        "# Resilience: the design as drawn vs the hardened design",
        "",
        "The same faults, under the same load, on the design as drawn",
        "([examples/seed.toml](../examples/seed.toml): one LB, one primary, a replica) and on the hardened design",
        "([examples/hardened.toml](../examples/hardened.toml): an LB pair sharing a VIP, DB agents with a leader",
        "lease in etcd, semi-sync replication, HTTPS and a firewall). See [HA.md](HA.md) for how it works.",
        "",
        f"Regenerate this page (tables and plots) with one command: `{command}`",
        f"(run on {time.strftime('%Y-%m-%d')}; 2 cores shared by every emulated host, the load and the monitor).",
        "",
        "## Side by side",
        "",
        "| scenario | what breaks | "
        + " | ".join(f"as drawn: {h}" for h in head)
        + " | "
        + " | ".join(f"hardened: {h}" for h in head)
        + " |",
        "|---|---|" + "---:|" * 8,
    ]
    for s in SCENARIOS:
        cells = [s.name, s.summary, *_brief(by["seed"].get(s.name)), *_brief(by["hardened"].get(s.name))]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## What it shows", "", *findings(seed, hardened), "", "## Definitions", "", definitions(timing)]
    for design, results in (("As drawn (examples/seed.toml)", seed), ("Hardened (examples/hardened.toml)", hardened)):
        lines += [f"## {design}: every figure", "", report.markdown_table(results)]
    lines += ["## Timelines", "", "Left: as drawn. Right: hardened. Red: the fault; green: undone; purple: recovered."]
    lines += ["", "| scenario | as drawn | hardened |", "|---|---|---|"]
    for s in SCENARIOS:
        a, b = by["seed"].get(s.name), by["hardened"].get(s.name)
        lines.append(f"| {s.name} | {_img(a.png if a else None, docs)} | {_img(b.png if b else None, docs)} |")
    page = "\n".join(lines) + "\n"
    # The nemesis section is written by `webinfra chaos nemesis --out docs/`: keep it across regenerations.
    old = docs / "RESILIENCE.md"
    if old.exists() and SECTION_START in (text := old.read_text()):
        page += "\n" + text[text.index(SECTION_START) :]
    return page


def compare(
    docs: Path,
    *,
    timing: Timing = DEFAULT_TIMING,
    names: Sequence[str] = NAMES,
    root: Path | None = None,
    seed_file: Path | None = None,
    hardened_file: Path | None = None,
    command: str = "webinfra chaos compare --out docs/",
    say: Say = print,
    done: Callable[[ChaosResult], None] = lambda r: None,
) -> tuple[Path, list[ChaosResult], list[ChaosResult]]:
    """Every scenario on seed, then on hardened (one cluster at a time); writes docs/RESILIENCE.md."""
    png_dir = docs / "resilience"
    shutil.rmtree(png_dir, ignore_errors=True)
    results: dict[str, list[ChaosResult]] = {}
    for design, path in (
        ("seed", seed_file or example_file("seed.toml")),
        ("hardened", hardened_file or example_file("hardened.toml")),
    ):
        results[design] = run_design(
            path.read_text(),
            design,
            cluster=COMPARE_CLUSTERS[design],
            names=names,
            timing=timing,
            png_dir=png_dir,
            root=root,
            say=say,
            done=done,
        )
    out = docs / "RESILIENCE.md"
    out.write_text(compare_markdown(results["seed"], results["hardened"], timing, command, docs))
    (png_dir / "results.json").write_text(report.to_json(results["seed"] + results["hardened"]) + "\n")
    return out, results["seed"], results["hardened"]
