"""Real failovers on loopback: two throwaway MariaDB nodes (127.77.0.11/.12, GTID + semi-sync), the
session's etcd, and two agent processes (`python -m webinfra.agent`).

- bootstrap -> SIGKILL the primary's mariadbd -> the replica is promoted, writable, with every row
  committed before the kill -> the old primary restarted rejoins as a read-only replica;
- switchover -> a replica with an errant transaction is re-cloned from the leader (mariabackup stream);
- the replica cannot replicate, the leader falls back to async and acknowledges a write alone -> its
  agent stopped (SIGTERM), then its mariadbd killed: the replica never promotes over that write, the old
  leader leads again when it returns, and the replica catches up once it can replicate.

Needs root (mariadbd --user=root, unix-socket admin login) and the MariaDB and etcd binaries.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_testlib import (
    CLIENT,
    INSTALL_DB,
    MARIABACKUP,
    MARIADBD,
    MBSTREAM,
    EtcdServer,
    Node,
    agent_config,
    free_port_on,
    read_events,
    wait_for,
)

from webinfra.agent.dcs import EtcdClient, Keys
from webinfra.agent.records import optime_record
from webinfra.agent.snapshot import GtidState, OptimeRecord, seq_of

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all((MARIADBD, INSTALL_DB, CLIENT)),
    reason="needs root and mariadbd / mariadb-install-db / mariadb (mariadbd --user=root, socket admin login)",
)

ADDRESSES = ["127.77.0.11", "127.77.0.12"]


class TwoNodes:
    """Node A (initial primary) and node B (replica), bootstrapped the way webinfra does it."""

    def __init__(self, base: Path, etcd: EtcdServer, prefix: str, **agent_overrides: Any) -> None:
        self.base, self.etcd, self.prefix = base, etcd, prefix
        self.agent_overrides = agent_overrides  # agent.json values for both agents (e.g. lease_ttl)
        db_port, agent_port = free_port_on(ADDRESSES), free_port_on(ADDRESSES)
        self.a = Node("db-a", ADDRESSES[0], 11, base / "db-a", db_port, agent_port)
        self.b = Node("db-b", ADDRESSES[1], 12, base / "db-b", db_port, agent_port)
        self.nodes = [self.a, self.b]
        self.dcs = EtcdClient([etcd.url])
        self.keys = Keys(prefix)

    def up(self) -> None:
        repl_password = secrets.token_urlsafe(12)
        (self.base / "repl.password").write_text(repl_password + "\n")
        (self.base / "agent-token.password").write_text(secrets.token_urlsafe(16) + "\n")
        for node in self.nodes:
            node.write_ctl(read_only=node is not self.a)
        installs = [node.install() for node in self.nodes]
        for node, proc in zip(self.nodes, installs, strict=True):
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"mariadb-install-db {node.name}: {out.decode()[-2000:]}"
        for node in self.nodes:
            node.ctl("start")
        # webinfra's bootstrap_primary / setup_replica, in short.
        self.a.sql(
            f"CREATE USER repl@'%' IDENTIFIED BY '{repl_password}'; GRANT REPLICATION SLAVE ON *.* TO repl@'%';"
            "CREATE DATABASE site; CREATE TABLE site.t (id INT PRIMARY KEY, note VARCHAR(40));"
        )
        self.b.sql(
            f"CHANGE MASTER TO MASTER_HOST='{self.a.address}', MASTER_PORT={self.a.port}, MASTER_USER='repl', "
            f"MASTER_PASSWORD='{repl_password}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;"
        )
        for node in self.nodes:
            config = agent_config(node, self.nodes, etcd=self.etcd.url, prefix=self.prefix, base=self.base)
            config["switchover_timeout"] = 10.0
            config.update(self.agent_overrides)
            node.agent_config.write_text(json.dumps(config, indent=2))
            node.start_agent()

    def down(self) -> None:
        for node in self.nodes:
            node.stop_agent()
        for node in self.nodes:
            node.ctl("stop")

    def optime(self) -> OptimeRecord | None:
        return optime_record(self.dcs.get(self.keys.optime))

    def set_repl_password(self, node: Node, password: str) -> None:
        """Re-point `node`'s replication credentials (its agent paused, so it does not START SLAVE between)."""
        assert node.agent is not None
        node.agent.send_signal(signal.SIGSTOP)
        try:
            node.sql(f"STOP SLAVE; CHANGE MASTER TO MASTER_PASSWORD='{password}'; START SLAVE;")
        finally:
            node.agent.send_signal(signal.SIGCONT)

    def logs(self) -> str:
        return "\n".join(f"--- {n.name} agent.log ---\n{n.agent_log()[-4000:]}" for n in self.nodes)

    def wait_roles(self, primary: Node, replica: Node, timeout: float = 20.0) -> float:
        def settled() -> bool:
            return (
                primary.ok("/primary")
                and replica.ok("/replica")
                and not replica.ok("/primary")
                and not primary.ok("/replica")
            )

        try:
            return wait_for(settled, timeout, f"{primary.name} primary, {replica.name} replica")
        except TimeoutError:
            raise AssertionError(
                f"{primary.name}: {primary.status()}\n{replica.name}: {replica.status()}\n{self.logs()}"
            ) from None


@contextlib.contextmanager
def running(etcd: EtcdServer, prefix: str, **agent_overrides: Any) -> Iterator[TwoNodes]:
    base = Path(tempfile.mkdtemp(prefix="webinfra-agent-ha-"))
    cluster = TwoNodes(base, etcd, prefix, **agent_overrides)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
        if os.environ.get("AGENT_TEST_LOGS"):  # AGENT_TEST_LOGS=1 pytest -s ...: show what the agents said
            print(cluster.logs())
        shutil.rmtree(base, ignore_errors=True)


def test_failover_and_rejoin(two_nodes: TwoNodes) -> None:
    a, b = two_nodes.a, two_nodes.b
    took = two_nodes.wait_roles(a, b)
    print(f"\nbootstrap: {a.name} leader, {b.name} replica after {took:.2f}s")
    assert not a.read_only() and b.read_only()
    # Reads go to the healthy replica; the primary serves them only when no replica can.
    # (A learns that B is a healthy replica from B's member key, one cycle later.)
    wait_for(lambda: b.ok("/read") and not a.ok("/read"), 3.0, "reads on the replica only")
    assert a.ok("/health")
    status = a.status()
    assert status["role"] == "primary" and status["leader"] == a.name and status["dcs_reachable"]
    # A bootstraps acknowledging alone (no replica yet) and turns semi-sync on once B has reached its
    # "not sync" optime mark (B's member key shows it, up to a cycle after B streams).
    wait_for(lambda: a.status().get("semi_sync") == "on", 5.0, "semi-sync on")
    initialized = two_nodes.dcs.get(two_nodes.keys.initialized)
    assert initialized is not None and initialized.value == a.name.encode()

    # Rows committed on A (semi-sync: each one acknowledged by B before the commit returns).
    for i in range(50):
        a.sql(f"INSERT INTO site.t VALUES ({i}, 'before the kill')")

    pid = a.mariadbd_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    def b_writable() -> bool:
        return b.ok("/primary") and not b.read_only()

    try:
        wait_for(b_writable, 10.0, "B promoted and writable", interval=0.02)
    except TimeoutError:
        raise AssertionError(f"{b.status()}\n{two_nodes.logs()}") from None
    failover = time.monotonic() - killed_at
    print(f"failover (mariadbd SIGKILL, agent alive): {b.name} writable after {failover:.2f}s")
    assert failover <= 10.0
    assert not a.ok("/primary")
    assert b.sql("SELECT COUNT(*) FROM site.t") == "50"  # nothing acknowledged was lost

    # B takes writes (semi-sync falls back to async after 1 s: no replica is connected).
    start = time.monotonic()
    b.sql("INSERT INTO site.t VALUES (100, 'after the failover')")
    print(f"first write on {b.name} with no replica connected took {time.monotonic() - start:.2f}s")

    # A comes back (writable, as its my.cnf says) and must rejoin as a read-only replica of B.
    a.ctl("start")
    restarted = time.monotonic()
    two_nodes.wait_roles(b, a)
    print(f"rejoin: {a.name} replica of {b.name} {time.monotonic() - restarted:.2f}s after its restart")
    assert a.read_only()
    b_pos = b.sql("SELECT @@gtid_binlog_pos")
    assert a.sql(f"SELECT MASTER_GTID_WAIT('{b_pos}', 10)") == "0"
    assert a.sql("SELECT COUNT(*) FROM site.t") == "51"
    b.sql("INSERT INTO site.t VALUES (101, 'replicated with semi-sync again')")
    wait_for(lambda: b.status().get("semi_sync") == "on", 5, "semi-sync back on")

    kinds = [(e["host"], e["kind"]) for e in read_events(two_nodes.base)]
    assert ("db-a", "promoted") in kinds and ("db-a", "released") in kinds and ("db-b", "promoted") in kinds
    assert ("db-a", "following") in kinds
    history_kv = two_nodes.dcs.get(two_nodes.keys.history)
    assert history_kv is not None
    history = json.loads(history_kv.value)
    assert [(h["from"], h["to"]) for h in history] == [(None, "db-a"), ("db-a", "db-b")]

    # The whole host B dies (agent and mariadbd SIGKILLed): nobody releases, the lease must expire.
    assert b.agent is not None
    b.agent.kill()
    b.agent.wait()
    b_pid = b.mariadbd_pid()
    assert b_pid is not None
    os.kill(b_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: a.ok("/primary") and not a.read_only(), 10.0, "A promoted again", interval=0.02)
    failover = time.monotonic() - killed_at
    print(f"failover (host killed, agent too; lease_ttl 2): {a.name} writable after {failover:.2f}s")
    assert failover <= 10.0
    assert a.sql("SELECT COUNT(*) FROM site.t") == "52"


@pytest.mark.skipif(not (MARIABACKUP and MBSTREAM), reason="mariabackup / mbstream not installed")
def test_switchover_then_errant_replica_is_recloned(two_nodes: TwoNodes) -> None:
    a, b = two_nodes.a, two_nodes.b
    two_nodes.wait_roles(a, b)
    for i in range(20):
        a.sql(f"INSERT INTO site.t VALUES ({i}, 'on a')")

    # Switchover to B, as `webinfra switchover` asks for it.
    asked = time.monotonic()
    two_nodes.dcs.put(two_nodes.keys.switchover, json.dumps({"to": b.name, "requested_at": "now"}))
    two_nodes.wait_roles(b, a)
    print(f"\nswitchover: {b.name} leads, {a.name} follows after {time.monotonic() - asked:.2f}s")
    assert two_nodes.dcs.get(two_nodes.keys.switchover) is None
    assert b.sql("SELECT COUNT(*) FROM site.t") == "20"

    # Make A diverge: with its agent paused, write on A itself (root passes read_only).
    assert a.agent is not None
    a.agent.send_signal(signal.SIGSTOP)
    try:
        a.sql("STOP SLAVE; INSERT INTO site.t VALUES (999, 'errant'); START SLAVE;")
        b.sql("INSERT INTO site.t VALUES (20, 'on b')")  # B's next GTID clashes with A's errant one
    finally:
        a.agent.send_signal(signal.SIGCONT)
    resumed = time.monotonic()

    def recloned() -> bool:
        kinds = [e["kind"] for e in read_events(two_nodes.base) if e["host"] == a.name]
        return "reclone_done" in kinds or "reclone_failed" in kinds

    try:
        wait_for(recloned, 30, "A re-cloned")
    except TimeoutError:
        raise AssertionError(f"{a.status()}\n{two_nodes.logs()}") from None
    events = [e for e in read_events(two_nodes.base) if e["host"] == a.name and e["kind"].startswith("reclone")]
    assert [e["kind"] for e in events] == ["reclone_started", "reclone_done"], events
    print(f"re-clone of {a.name}: done {time.monotonic() - resumed:.2f}s after the divergence ({events[-1]['detail']})")
    two_nodes.wait_roles(b, a)
    assert a.read_only()
    b_pos = b.sql("SELECT @@gtid_binlog_pos")
    assert a.sql(f"SELECT MASTER_GTID_WAIT('{b_pos}', 10)") == "0"
    assert a.sql("SELECT COUNT(*) FROM site.t WHERE id = 999") == "0"  # the errant row is gone
    # The clone has the whole history (per server_id), not only the backup's last GTID.
    a_state = GtidState.parse(a.sql("SELECT @@global.gtid_binlog_state"))
    assert a_state == GtidState.parse(b.sql("SELECT @@global.gtid_binlog_state")), a_state
    assert a_state.server_seq(a.server_id) > 0, a_state
    assert a.sql("SELECT COUNT(*) FROM site.t") == "21"
    # Nothing erased silently: the old datadir is kept aside, the errant transaction exported and named.
    assert not any(p.name.startswith(".data.") for p in a.base.iterdir())  # no staging left
    kept = [p for p in a.base.iterdir() if p.name.startswith("data.diverged-") and p.is_dir()]
    assert len(kept) == 1, kept
    surfaced = [e for e in read_events(two_nodes.base) if e["host"] == a.name and e["kind"] == "errant_transactions"]
    assert len(surfaced) == 1, surfaced
    detail = surfaced[0]["detail"]
    errant_gtid = f"0-{a.server_id}-"
    assert errant_gtid in detail and str(kept[0]) in detail, detail
    exported = Path(detail.split("exported to ", 1)[1].split(";")[0].strip())
    assert exported.exists() and "@1=999" in exported.read_text(), detail
    print(f"errant transactions surfaced: {detail}")


def test_dcs_outage_fences_the_primary_and_replicas_keep_serving_reads(prefix: str) -> None:
    """etcd frozen (SIGSTOP: requests hang, as in a partition): the leader cannot renew and makes itself
    read-only before its lease could expire; the replica keeps replicating and never promotes."""
    base = Path(tempfile.mkdtemp(prefix="webinfra-agent-etcd-private-"))
    etcd = EtcdServer(base)
    try:
        etcd.start()
        with running(etcd, prefix) as cluster:
            a, b = cluster.a, cluster.b
            cluster.wait_roles(a, b)
            a.sql("INSERT INTO site.t VALUES (1, 'before the outage')")
            assert etcd.proc is not None
            etcd.proc.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                wait_for(lambda: a.read_only(), 5.0, "A fenced", interval=0.02)
                fenced_after = time.monotonic() - frozen
                print(f"\nDCS frozen: {a.name} read-only after {fenced_after:.2f}s (lease_ttl 2, margin 0.5)")
                assert fenced_after <= 2.0  # before etcd could have expired the lease
                assert not a.ok("/primary")
                time.sleep(2.5)  # well past the lease TTL: still nobody writable, reads still served
                assert not b.ok("/primary") and b.read_only() and a.read_only()
                assert b.ok("/replica") and b.ok("/read")
                assert a.status()["dcs_reachable"] is False and a.status()["fenced"] is True
            finally:
                etcd.proc.send_signal(signal.SIGCONT)
            thawed = time.monotonic()

            def one_writable_leader() -> bool:
                return [n.ok("/primary") for n in cluster.nodes].count(True) == 1

            wait_for(one_writable_leader, 15.0, "one writable leader again")
            print(f"DCS back: one writable leader {time.monotonic() - thawed:.2f}s later")
            leader = a if a.ok("/primary") else b
            other = b if leader is a else a
            cluster.wait_roles(leader, other)
            assert other.sql("SELECT COUNT(*) FROM site.t") == "1"
            kinds = [(e["host"], e["kind"]) for e in read_events(cluster.base)]
            assert ("db-a", "fenced") in kinds
    finally:
        etcd.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_write_acknowledged_without_a_replica_is_never_lost(two_nodes: TwoNodes) -> None:
    """The incident: the replica cannot replicate (a bad credential here, TLS there), the leader falls back
    to async and acknowledges a write no replica has. Neither stopping its agent nor killing its mariadbd
    lets the replica take over without that write; the old leader leads again when it returns."""
    a, b = two_nodes.a, two_nodes.b
    two_nodes.wait_roles(a, b)
    a.sql("INSERT INTO site.t VALUES (1, 'acknowledged by a replica')")

    def optime_is(sync: bool, at: str | None = None) -> bool:
        record = two_nodes.optime()
        return (
            record is not None
            and record.leader == a.name
            and record.sync is sync
            and (at is None or record.gtid_seq == seq_of(at))
        )

    # Semi-sync with B as its client (the 1 s fallback may have run before B's agent turned it on).
    wait_for(
        lambda: a.status().get("semi_sync") == "on" and a.status().get("semi_sync_clients") == 1 and optime_is(True),
        10,
        "A semi-sync with a client, optime sync",
    )

    # B's replication breaks for good; A falls back to async after 1 s without a semi-sync replica.
    two_nodes.set_repl_password(b, "wrong")
    try:
        wait_for(lambda: a.status().get("semi_sync") == "fallback" and optime_is(False), 10, "A async")
    except TimeoutError:
        raise AssertionError(f"{a.status()}\n{two_nodes.logs()}") from None
    a.sql("INSERT INTO site.t VALUES (2, 'acknowledged by A alone')")  # returned: acknowledged
    wait_for(lambda: optime_is(False, a.sql("SELECT @@gtid_binlog_pos")), 5, "optime at A's position")
    assert b.sql("SELECT COUNT(*) FROM site.t WHERE id = 2") == "0"

    def b_never_promotes(what: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert not b.ok("/primary") and b.read_only(), f"{what}: B took over\n{two_nodes.logs()}"
            time.sleep(0.1)
        reason = b.status().get("reason") or ""
        assert "not promoting: the last leader db-a acknowledged writes without a replica" in reason, reason

    def a_leads_again(what: str) -> None:
        try:
            wait_for(lambda: a.ok("/primary") and not a.read_only(), 15, what)
        except TimeoutError:
            raise AssertionError(f"{a.status()}\n{b.status()}\n{two_nodes.logs()}") from None

    # 1. A's agent stopped (SIGTERM): read-only, final position recorded, lease released at once.
    a.stop_agent()
    assert a.read_only() and two_nodes.dcs.get(two_nodes.keys.leader) is None
    assert optime_is(False, a.sql("SELECT @@gtid_binlog_pos"))
    b_never_promotes("A's agent stopped", 3 * 2.0)  # 3 lease TTLs
    a.start_agent()
    a_leads_again("A re-acquires after its agent restarted")
    assert a.sql("SELECT COUNT(*) FROM site.t WHERE id = 2") == "1"

    # 2. Still async: another write acknowledged by A alone, then A's mariadbd dies (its agent releases).
    wait_for(lambda: a.status().get("semi_sync") == "fallback", 10, "A async again")
    a.sql("INSERT INTO site.t VALUES (3, 'acknowledged by A alone, then killed')")
    wait_for(lambda: optime_is(False, a.sql("SELECT @@gtid_binlog_pos")), 5, "optime at A's position")
    pid = a.mariadbd_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: two_nodes.dcs.get(two_nodes.keys.leader) is None, 5, "A released")
    b_never_promotes("A's mariadbd killed", 3 * 2.0)
    a.ctl("start")
    a_leads_again("A re-acquires after its mariadbd restarted")
    assert a.sql("SELECT id FROM site.t ORDER BY id").split() == ["1", "2", "3"]

    # 3. A's agent SIGKILLed (no step-down: its leader key and lease live on) and restarted at once: it
    # resumes that lease, or re-acquires if the lease ran out first; B still never takes over.
    assert a.agent is not None
    a.agent.kill()
    a.agent.wait()
    log_before = len(a.agent_log())
    a.start_agent()
    a_leads_again("A leads again after its agent was SIGKILLed")
    restarted_log = a.agent_log()[log_before:]
    print(f"\nagent SIGKILLed and restarted: {'resumed' if 'resume:' in restarted_log else 're-acquired'} the lead")
    assert "resume:" in restarted_log or "acquire:" in restarted_log, restarted_log

    # The replication is fixed: B catches up, A restores semi-sync and, once B has all A acknowledged
    # alone, the optime says sync again.
    wait_for(lambda: a.status().get("semi_sync") == "fallback" and optime_is(False), 10, "A async again")
    two_nodes.set_repl_password(b, (two_nodes.base / "repl.password").read_text().strip())
    two_nodes.wait_roles(a, b)
    a_pos = a.sql("SELECT @@gtid_binlog_pos")
    assert b.sql(f"SELECT MASTER_GTID_WAIT('{a_pos}', 10)") == "0"
    assert b.sql("SELECT id FROM site.t ORDER BY id").split() == ["1", "2", "3"]
    wait_for(lambda: a.status().get("semi_sync") == "on" and optime_is(True), 10, "semi-sync on, optime sync")
    kinds = [(e["host"], e["kind"]) for e in read_events(two_nodes.base)]
    assert ("db-b", "promoted") not in kinds
    assert kinds.count(("db-a", "promoted")) >= 3  # bootstrap and the returns (a resume is no promotion)
