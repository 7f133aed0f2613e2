"""One PNG per chaos run: requests/s (successful and failed) and latency (p50, p99) per 0.5 s bucket, with the
fault and its undoing marked. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from webinfra.proving.chaos.report import ChaosResult
from webinfra.proving.loadgen import Sample

BUCKET = 0.5


def buckets(
    samples: Sequence[Sample], end: float, width: float = BUCKET
) -> tuple[list[float], list[float], list[float], list[float | None], list[float | None]]:
    """Per bucket of `width` seconds (by start time): its start, ok/s, failed/s, p50 and p99 latency in ms."""
    n = max(1, math.ceil(end / width))
    ok = [0] * n
    failed = [0] * n
    lat: list[list[float]] = [[] for _ in range(n)]
    for s in samples:
        i = min(n - 1, max(0, int(s.started / width)))
        if s.ok:
            ok[i] += 1
            lat[i].append(s.latency * 1000)
        else:
            failed[i] += 1

    def pct(values: list[float], p: float) -> float | None:
        if not values:
            return None
        values = sorted(values)
        return values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))]

    return (
        [i * width for i in range(n)],
        [c / width for c in ok],
        [c / width for c in failed],
        [pct(v, 50) for v in lat],
        [pct(v, 99) for v in lat],
    )


def timeline_png(result: ChaosResult, samples: Sequence[Sample], path: Path) -> Path:
    # matplotlib is the optional [plots] extra, and heavy: loaded only when a PNG is drawn.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    end = float(result.marks.get("end") or max((s.started + s.latency for s in samples), default=1.0))
    t, ok, failed, p50, p99 = buckets(samples, end)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True, dpi=80)
    ax1.bar(t, ok, width=BUCKET, align="edge", color="#4c9a2a", label="ok/s")
    ax1.bar(t, failed, width=BUCKET, align="edge", bottom=ok, color="#d62728", label="failed/s")
    ax1.set_ylabel("requests/s")
    ax1.legend(loc="upper right", fontsize=8)
    xs = [x + BUCKET / 2 for x in t]
    ax2.plot(xs, [math.nan if v is None else v for v in p50], color="#1f77b4", label="p50")
    ax2.plot(xs, [math.nan if v is None else v for v in p99], color="#ff7f0e", label="p99")
    ax2.set_yscale("log")
    ax2.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax2.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax2.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.set_ylabel("latency ms")
    ax2.set_xlabel("seconds")
    ax2.legend(loc="upper right", fontsize=8)
    marks = [("fault", result.marks.get("fault_at"), "#d62728"), ("undone", result.marks.get("undone_at"), "#2ca02c")]
    if result.recovery_seconds is not None and result.marks.get("fault_at") is not None:
        marks.append(("recovered", result.marks["fault_at"] + result.recovery_seconds, "#9467bd"))
    for label, x, color in marks:
        if x is None:
            continue
        for ax in (ax1, ax2):
            ax.axvline(x, color=color, linestyle="--", linewidth=1)
        ax1.annotate(label, (x, 1), xycoords=("data", "axes fraction"), fontsize=8, color=color, va="bottom")
    avail = "—" if result.availability is None else f"{result.availability:.1f} %"
    fig.suptitle(f"{result.design}: {result.scenario} — {result.target} (availability {avail})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    shrink(path)
    return path


def shrink(path: Path, colors: int = 64) -> None:
    """Rewrite a PNG with a small palette: a plot has few colours, and the file becomes a quarter the size
    (these are committed under docs/resilience/)."""
    from PIL import Image  # pillow comes with the optional [plots] extra (matplotlib's dependency)

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colors)
    small.save(path, optimize=True)
