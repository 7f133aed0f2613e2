"""Watching for the two things a failover must never do: let two databases take writes at once (split brain),
and lose a write the site acknowledged.

`SplitBrainMonitor` polls every DB node's `read_only` over its local unix socket (so it works across a
partition) and records each moment at which more than one node accepted writes; `windows()` groups those
moments into contiguous windows. `missing_writes` asks the current primary for every acknowledged id.
"""

from __future__ import annotations

import threading
import time

from webinfra.control.cluster import Cluster
from webinfra.model import Role
from webinfra.services import mariadb
from webinfra.services.supervisor import running


class SplitBrainMonitor:
    """Polls every DB node's read_only flag and records each moment at which more than one node accepted
    writes. Use as a context manager around the fault."""

    def __init__(self, cluster: Cluster, interval: float = 0.1) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples = 0
        self.violations: list[tuple[float, list[str]]] = []
        self.timeline: list[tuple[float, int]] = []  # (monotonic time, number of writable nodes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def writable_nodes(self) -> list[str]:
        out = []
        for spec in self.cluster.topology.with_role(Role.DB):
            hp = self.cluster.plan.host(spec.name)
            if not running(self.cluster.hosts[spec.name], hp.service("mariadb")):
                continue
            try:
                ro = mariadb.admin_sql(self.cluster.hosts[spec.name], hp, "SELECT @@GLOBAL.read_only;", timeout=3)
            except Exception:
                continue
            if ro.strip() == "0":
                out.append(spec.name)
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            writable = self.writable_nodes()
            self.samples += 1
            self.timeline.append((time.monotonic(), len(writable)))
            if len(writable) > 1:
                self.violations.append((time.time(), writable))
            self._stop.wait(self.interval)

    def windows(self) -> int:
        """How many separate stretches of polls saw two or more writable nodes."""
        return count_windows([n for _, n in self.timeline])

    def __enter__(self) -> SplitBrainMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def count_windows(writable_counts: list[int]) -> int:
    """Number of runs of consecutive polls with more than one writable node."""
    windows, inside = 0, False
    for n in writable_counts:
        if n > 1 and not inside:
            windows += 1
        inside = n > 1
    return windows


def missing_writes(cluster: Cluster, primary: str, ids: list[int]) -> list[int]:
    """Acknowledged entry ids that the current primary does not have."""
    if not ids:
        return []
    hp = cluster.plan.host(primary)
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        out = mariadb.admin_sql(
            cluster.hosts[primary],
            hp,
            f"SELECT id FROM {cluster.topology.db.database}.entries WHERE id IN ({','.join(map(str, chunk))});",
        )
        found |= {int(line) for line in out.split()}
    return sorted(set(ids) - found)
