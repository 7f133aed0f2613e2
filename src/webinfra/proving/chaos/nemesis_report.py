"""Showing a nemesis run: a rich table of the steps and the verdict, Markdown for docs/RESILIENCE.md, and a
PNG timeline (write attempts answered/unanswered per second, faults shaded, writable DB nodes)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from rich.table import Table

from webinfra.proving.chaos.nemesis_run import NemesisReport

BUCKET = 1.0


def verdict_rows(report: NemesisReport) -> list[tuple[str, str]]:
    v = report.verdict
    return [
        ("faults injected", str(sum(len(s.injected) for s in report.steps))),
        ("steps (overlapping)", f"{len(report.steps)} ({sum(' + ' in s.label for s in report.steps)})"),
        ("writes sent", str(v.writes)),
        ("acknowledged (keyed; after a retry)", f"{v.acked} ({v.acked_keyed}; {v.keyed_retried})"),
        ("acknowledged writes lost", str(len(v.lost))),
        ("duplicated (keyed / acknowledged)", f"{len(v.duplicated_keyed)} / {len(v.duplicated_acked)}"),
        (
            "unkeyed, outcome unknown: applied / not / twice",
            f"{v.unknown_unkeyed}: {v.unknown_unkeyed_applied} / {v.unknown_unkeyed_not_applied}"
            f" / {v.unknown_unkeyed_duplicated}",
        ),
        ("keyed, unanswered after the retry budget (applied)", f"{v.unknown_keyed} ({v.unknown_keyed_applied})"),
        ("refused (4xx)", str(v.failed)),
        ("checksums equal on every DB node", "yes" if v.checksums_equal else f"NO {v.checksums}"),
        ("max writable nodes (polls)", f"{v.max_writable} ({v.writable_polls})"),
        ("writable nodes at the end", str(v.final_writable)),
        ("errant transactions surfaced", f"{len(v.errant_events)} events, {len(v.errant_unsurfaced)} without a file"),
        ("verdict", "ok" if report.ok else "; ".join([*([report.error] if report.error else []), *v.problems])),
    ]


def rich_tables(report: NemesisReport) -> tuple[Table, Table]:
    steps = Table(title=f"nemesis on {report.cluster}: seed {report.seed}, {report.duration:.0f} s")
    for col in ("#", "faults", "injected", "healthy after undo", "error"):
        steps.add_column(col)
    for s in report.steps:
        healthy = f"{s.healthy_after:.1f} s" if s.healthy_after is not None else "no"
        steps.add_row(str(s.index + 1), s.label, "\n".join(s.injected), healthy, s.error)
    verdict = Table(title="what the data says", show_header=False)
    verdict.add_column()
    verdict.add_column()
    for name, value in verdict_rows(report):
        verdict.add_row(name, value)
    return steps, verdict


SECTION_START, SECTION_END = "<!-- nemesis: start -->", "<!-- nemesis: end -->"


def markdown(report: NemesisReport, command: str, png: str | None = None) -> str:
    """The nemesis section of docs/RESILIENCE.md: the command, the verdict, the steps, the timeline."""
    kinds = sorted({k for s in report.steps for k in s.label.split(" + ")})
    lines = [
        "## Nemesis: overlapping faults, checked from the data",
        "",
        f"Command: `{command}` (run on {time.strftime('%Y-%m-%d')}, {report.duration / 60:.0f} minutes, "
        f"{len(report.steps)} steps; fault kinds: {', '.join(kinds)}). How it works: "
        "[proving/chaos/nemesis_plan.py](../src/webinfra/proving/chaos/nemesis_plan.py) (the faults) and "
        "[nemesis_check.py](../src/webinfra/proving/chaos/nemesis_check.py) (what is checked).",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value.replace('|', '/')} |" for name, value in verdict_rows(report)]
    healthy = sorted(s.healthy_after for s in report.steps if s.healthy_after is not None)
    if healthy:
        lines += ["", f"Healthy again after each step's undo: median {healthy[len(healthy) // 2]:.1f} s, "
                  f"worst {healthy[-1]:.1f} s."]  # fmt: skip
    if png:
        lines += ["", f"![nemesis timeline]({png})"]
    return "\n".join(lines) + "\n"


def splice(page: str, section: str) -> str:
    """`page` with its nemesis section replaced by `section` (appended when it has none)."""
    block = f"{SECTION_START}\n{section}{SECTION_END}\n"
    if SECTION_START in page and SECTION_END in page:
        head, _, rest = page.partition(SECTION_START)
        _, _, tail = rest.partition(SECTION_END)
        return head + block + tail.lstrip("\n")
    return page.rstrip("\n") + "\n\n" + block


def write_docs(report: NemesisReport, docs: Path, command: str) -> Path:
    """docs/nemesis/{timeline.png,result.json} and the nemesis section of docs/RESILIENCE.md."""
    out = docs / "nemesis"
    out.mkdir(parents=True, exist_ok=True)
    timeline_png(report, out / "timeline.png")
    (out / "result.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    page = docs / "RESILIENCE.md"
    text = page.read_text() if page.exists() else "# Resilience\n"
    page.write_text(splice(text, markdown(report, command, "nemesis/timeline.png")))
    return page


def timeline_png(report: NemesisReport, path: Path) -> Path:
    # matplotlib is the optional [plots] extra, and heavy: loaded only when a PNG is drawn.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max(report.duration, 1.0)
    n = max(1, math.ceil(end / BUCKET))
    ok, failed = [0] * n, [0] * n
    for t, answered in report.attempts:
        i = min(n - 1, max(0, int(t / BUCKET)))
        (ok if answered else failed)[i] += 1
    xs = [i * BUCKET for i in range(n)]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True, dpi=80, height_ratios=(3, 1))
    ax1.bar(xs, ok, width=BUCKET, align="edge", color="#4c9a2a", label="write acknowledged")
    ax1.bar(xs, failed, width=BUCKET, align="edge", bottom=ok, color="#d62728", label="write attempt failed")
    for s in report.steps:
        ax1.axvspan(s.started, s.undone, color="#ff7f0e", alpha=0.15)
        ax1.text(s.started, ax1.get_ylim()[1] * 0.92, s.label, fontsize=6, rotation=90, va="top")
    ax1.set_ylabel("writes/s")
    ax1.legend(loc="upper right", fontsize=8)
    times = [t for t, _ in report.writable_timeline]
    counts = [c for _, c in report.writable_timeline]
    ax2.step(times, counts, where="post", color="#1f77b4")
    ax2.axhline(1, color="#999", linewidth=0.5)
    ax2.set_ylim(-0.2, max(2, max(counts, default=1)) + 0.2)
    ax2.set_ylabel("writable\nDB nodes")
    ax2.set_xlabel("seconds")
    fig.suptitle(f"nemesis on {report.cluster}, seed {report.seed}: {'ok' if report.ok else 'PROBLEMS'}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
