"""Helpers for HA integration tests: the hardened topology with fast timings, a split-brain monitor, and
checks that every acknowledged write survived."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from webinfra.control.cluster import Cluster
from webinfra.model import Role
from webinfra.services import mariadb
from webinfra.services.supervisor import pid_of

ROOT = Path(__file__).resolve().parents[2]


def hardened_topology(name: str, octet: int, extra: str = "") -> str:
    """examples/hardened.toml with its own name and subnet, and fast LB health checks. TLS and the firewall
    (on by default) are off here: these tests exercise failover with plain-HTTP clients. The hardened example
    with both on is checked by test_security.py."""
    text = (ROOT / "examples" / "hardened.toml").read_text()
    plain = f'name = "{name}"\nfirewall = false\n\n[tls]\nenabled = false'
    text = re.sub(r'^name = "webinfra"$', plain, text, count=1, flags=re.M)
    text = text.replace("198.18.0.", f"198.18.{octet}.")
    text = re.sub(r'^route_writes_to = "any"$', 'route_writes_to = "any"\ncheck_interval_ms = 500', text, flags=re.M)
    return text + "\n" + extra


class SplitBrainMonitor:
    """Polls every DB node's read_only flag (over its local socket, so it works across partitions) and
    records each moment at which more than one node accepted writes."""

    def __init__(self, cluster: Cluster, interval: float = 0.1) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples = 0
        self.violations: list[tuple[float, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def writable_nodes(self) -> list[str]:
        out = []
        for spec in self.cluster.topology.with_role(Role.DB):
            hp = self.cluster.plan.host(spec.name)
            if pid_of(hp.service("mariadb")) is None:
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
            if len(writable) > 1:
                self.violations.append((time.time(), writable))
            self._stop.wait(self.interval)

    def __enter__(self) -> SplitBrainMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
