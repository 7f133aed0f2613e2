"""Memory and CPU of an emulated host's daemons, read from /proc (for `NetnsMachine.usage`)."""

from __future__ import annotations

import os
from pathlib import Path


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return out


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants (workers, a daemon's children); [] for a process that is gone."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in out or not Path(f"/proc/{current}").exists():
            continue
        out.append(current)
        todo += _children(current)
    return out


def rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)
