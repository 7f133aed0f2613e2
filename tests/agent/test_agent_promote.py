"""`LocalMariaDB.promote()` on real MariaDB (issue 11, defect 4): a replica whose SQL thread is behind its
IO thread (MASTER_DELAY holds applied events back) is promoted. Every transaction it had received is
applied before replication is reset; and the wait is bounded by the lease (fence_at).

No etcd and no agent: two throwaway MariaDB nodes on loopback. Needs root and the MariaDB binaries.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_testlib import CLIENT, INSTALL_DB, MARIADBD, Node, free_port_on, wait_for

from webinfra.agent import clock
from webinfra.agent.mysql import DbError, LocalMariaDB

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all((MARIADBD, INSTALL_DB, CLIENT)),
    reason="needs root and mariadbd / mariadb-install-db / mariadb",
)

ADDRESSES = ["127.77.0.21", "127.77.0.22"]
DELAY = 3  # seconds the replica's SQL thread holds each event back


@pytest.fixture
def pair() -> Iterator[tuple[Node, Node]]:
    base = Path(tempfile.mkdtemp(prefix="webinfra-agent-promote-"))
    port = free_port_on(ADDRESSES)
    source = Node("src", ADDRESSES[0], 21, base / "src", port, 1)
    replica = Node("rep", ADDRESSES[1], 22, base / "rep", port, 1)
    nodes = [source, replica]
    try:
        for node in nodes:
            node.write_ctl(read_only=node is replica)
        for node, proc in [(n, n.install()) for n in nodes]:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"{node.name}: {out.decode()[-1000:]}"
        for node in nodes:
            node.ctl("start")
        source.sql(
            "CREATE USER repl@'%' IDENTIFIED BY 'r'; GRANT REPLICATION SLAVE ON *.* TO repl@'%';"
            "CREATE DATABASE site; CREATE TABLE site.t (id INT PRIMARY KEY);"
        )
        replica.sql(
            f"CHANGE MASTER TO MASTER_HOST='{source.address}', MASTER_PORT={port}, MASTER_USER='repl', "
            f"MASTER_PASSWORD='r', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;"
        )
        pos = source.sql("SELECT @@gtid_binlog_pos")
        assert replica.sql(f"SELECT MASTER_GTID_WAIT('{pos}', 30)") == "0"
        replica.sql(f"STOP SLAVE; CHANGE MASTER TO MASTER_DELAY={DELAY}; START SLAVE;")
        yield source, replica
    finally:
        for node in nodes:
            node.ctl("stop")
        shutil.rmtree(base, ignore_errors=True)


def received_not_applied(source: Node, replica: Node) -> None:
    """Wait until the replica's IO thread has all of the source's binlog while its SQL thread has not
    applied the rows yet."""
    target = source.sql("SELECT @@gtid_binlog_pos")

    def received() -> bool:
        slave = LocalMariaDB(replica.socket).facts().slave
        return slave is not None and slave.gtid_io_pos == target

    wait_for("rows in the relay log", received, 10)
    assert replica.sql("SELECT COUNT(*) FROM site.t") == "0"


def test_promote_applies_the_relay_log_before_resetting_replication(pair: tuple[Node, Node]) -> None:
    source, replica = pair
    for i in range(5):
        source.sql(f"INSERT INTO site.t VALUES ({i})")
    received_not_applied(source, replica)
    db = LocalMariaDB(replica.socket)
    state = db.promote(clock.now() + 4 * DELAY)
    assert replica.sql("SELECT COUNT(*) FROM site.t") == "5"  # before the fix: 0, the relay log reset away
    assert replica.sql("SELECT @@global.read_only") == "0"
    assert replica.sql("SHOW SLAVE STATUS") == ""
    assert source.sql("SELECT @@gtid_binlog_pos") in state.split(",")


def test_promote_is_bounded_by_the_lease(pair: tuple[Node, Node]) -> None:
    source, replica = pair
    source.sql("INSERT INTO site.t VALUES (1)")
    received_not_applied(source, replica)
    db = LocalMariaDB(replica.socket)
    started = clock.now()
    with pytest.raises(DbError, match="relay log not applied"):
        db.promote(clock.now() + 0.5)
    assert clock.now() - started < DELAY  # gave up at the lease, did not wait for the SQL thread
    assert replica.sql("SELECT @@global.read_only") == "1"  # not promoted
    db.resume_receiving()
    slave = LocalMariaDB(replica.socket).facts().slave
    assert slave is not None and slave.io_running in ("Yes", "Connecting")
