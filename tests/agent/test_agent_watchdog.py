"""The watchdog on loopback (issue 11, defect 7): the primary's agent frozen with SIGSTOP for ~10 s under
a write load. MariaDB's own event fences it (read-only, site sessions killed) before the replica can be
promoted; a monitor polling `read_only` on both nodes every 0.3 s never sees two writable nodes; every
acknowledged write is on the new primary. Two writers, each pinned to one node (a client that never asks
/primary: the harshest case), insert numbered rows as a non-admin user.

Needs root and the MariaDB and etcd binaries (as test_agent_failover.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest
from agent_testlib import CLIENT, INSTALL_DB, MARIADBD, EtcdServer, Node, read_events, wait_for
from test_agent_failover import TwoNodes, running

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all((MARIADBD, INSTALL_DB, CLIENT)),
    reason="needs root and mariadbd / mariadb-install-db / mariadb",
)

SITE_PASSWORD = "site-pw-watchdog"
FREEZE_SECONDS = 10.0
POLL = 0.3


@dataclass
class Writer:
    """Inserts rows id = base + n into one node as the site user; keeps the ids that were acknowledged."""

    node: Node
    base: int
    acked: list[int] = field(default_factory=list)
    failed: int = 0

    def run(self, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set() and n < 5000:
            n += 1
            row = self.base + n
            try:
                proc = subprocess.run(
                    [
                        str(CLIENT),
                        "--no-defaults",
                        f"--host={self.node.address}",
                        f"--port={self.node.port}",
                        "--user=site",
                        f"--password={SITE_PASSWORD}",
                        "--connect-timeout=1",
                        "-e",
                        f"INSERT INTO site.t VALUES ({row}, 'w')",
                    ],
                    capture_output=True,
                    timeout=5,
                )
                ok = proc.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            if ok:
                self.acked.append(row)
            else:
                self.failed += 1
                time.sleep(0.05)


def writable(node: Node) -> bool | None:
    out = node.sql("SELECT @@global.read_only", check=False, timeout=2)
    return None if out not in ("0", "1") else out == "0"


def test_frozen_primary_agent_is_fenced_by_mariadb_before_the_replica_promotes(two_nodes: TwoNodes) -> None:
    a, b = two_nodes.a, two_nodes.b
    two_nodes.wait_roles(a, b)
    a.sql(f"CREATE USER site@'%' IDENTIFIED BY '{SITE_PASSWORD}'; GRANT SELECT, INSERT ON site.* TO site@'%';")
    assert a.sql("SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'webinfra_ha'") == "1"
    wait_for(lambda: b.sql("SELECT @@global.event_scheduler") == "ON", 10, "B's watchdog installed")

    stop = threading.Event()
    writers = [Writer(a, 1_000_000), Writer(b, 2_000_000)]
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in writers]
    for t in threads:
        t.start()
    samples: list[tuple[float, bool | None, bool | None]] = []
    assert a.agent is not None
    try:
        wait_for(lambda: len(writers[0].acked) >= 5, 20, "writes acknowledged")
        a.agent.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        while time.monotonic() - frozen < FREEZE_SECONDS:
            samples.append((time.monotonic() - frozen, writable(a), writable(b)))
            time.sleep(POLL)
    finally:
        a.agent.send_signal(signal.SIGCONT)
    try:
        two_nodes.wait_roles(b, a, timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)

    table = " ".join(f"{t:.1f}:{'A' if wa else '-'}{'B' if wb else '-'}" for t, wa, wb in samples)
    print(f"\nwritable per 0.3 s sample after SIGSTOP: {table}")
    both = [t for t, wa, wb in samples if wa and wb]
    assert not both, f"two writable nodes at {both}\n{table}\n{two_nodes.logs()}"
    fenced_at = next((t for t, wa, _ in samples if wa is False), None)
    promoted_at = next((t for t, _, wb in samples if wb), None)
    assert fenced_at is not None and promoted_at is not None, f"{table}\n{two_nodes.logs()}"
    print(f"A fenced by its watchdog {fenced_at:.1f}s after the freeze, B writable from {promoted_at:.1f}s")
    assert fenced_at < promoted_at
    # "None writable" only between the fence and the promotion: a bounded gap (goal ~1 s at TTL 2 s).
    assert promoted_at - fenced_at < 6.0, table
    events = [e["kind"] for e in read_events(two_nodes.base) if e["host"] == a.name]
    print(f"A's agent events after it thawed: {events[-4:]}")

    acked = writers[0].acked + writers[1].acked
    assert writers[1].acked, "B never acknowledged a write after its promotion"
    b_pos = b.sql("SELECT @@gtid_binlog_pos")
    present = set(b.sql("SELECT id FROM site.t WHERE id >= 1000000").split())
    lost = [row for row in acked if str(row) not in present]
    on_a, on_b = len(writers[0].acked), len(writers[1].acked)
    print(f"acknowledged {len(acked)} writes ({on_a} on A, {on_b} on B), lost {len(lost)}")
    assert not lost, f"acknowledged writes missing on the new primary: {lost[:20]}"
    # A converges on B (rejoined or re-cloned) with every row.
    wait_for(lambda: a.sql(f"SELECT MASTER_GTID_WAIT('{b_pos}', 1)", check=False) == "0", 60, "A caught up")
    assert set(a.sql("SELECT id FROM site.t WHERE id >= 1000000").split()) >= present


def test_a_stalled_mariadb_keeps_the_lease_instead_of_being_released(etcd_server: EtcdServer, prefix: str) -> None:
    """The primary's mariadbd frozen (SIGSTOP) for 2.5 s: every facts call fails, but the server is alive
    (its socket accepts). Before: the agent released the lease at the first failed call, the replica
    promoted, and the thawed server was writable next to it. Now it keeps the lease (the production TTL of
    3 s leaves room for the failed calls), nobody promotes, and it leads on once MariaDB answers."""
    with running(etcd_server, prefix, lease_ttl=3) as two_nodes:
        a, b = two_nodes.a, two_nodes.b
        two_nodes.wait_roles(a, b)
        pid = a.mariadbd_pid()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        samples: list[bool | None] = []
        try:
            frozen = time.monotonic()
            while time.monotonic() - frozen < 2.5:
                samples.append(writable(b))
                time.sleep(POLL)
        finally:
            os.kill(pid, signal.SIGCONT)
        two_nodes.wait_roles(a, b, timeout=30)
        kinds = {(e["host"], e["kind"]) for e in read_events(two_nodes.base)}
        assert (a.name, "released") not in kinds and (b.name, "promoted") not in kinds, kinds
        assert not any(samples), samples  # the replica never became writable
        log = a.agent_log()
        assert "did not answer" in log and "keeping the lease" in log, log[-3000:]
