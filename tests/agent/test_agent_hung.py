"""A primary's mysqld that hangs (SIGSTOP: it still accepts connections, the kernel queues them, but it
never greets a client): the agent cannot make it read-only, lets its lease lapse, and after
`restart_hung_after` kills mysqld and starts it again read-only; the replica takes over and the old
primary rejoins it. Before: the agent retried the fence every 30 ms for 15 minutes without reading etcd
(nemesis seed 7, step 19), and the server stayed hung.

Needs root and the MariaDB and etcd binaries (as test_agent_failover.py).
"""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from agent_testlib import CLIENT, INSTALL_DB, MARIADBD, read_events, wait_for
from test_agent_failover import TwoNodes

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all((MARIADBD, INSTALL_DB, CLIENT)),
    reason="needs root and mariadbd / mariadb-install-db / mariadb",
)


def test_hung_primary_mysqld_is_restarted_and_the_replica_takes_over(two_nodes: TwoNodes) -> None:
    a, b = two_nodes.a, two_nodes.b
    two_nodes.wait_roles(a, b)
    pid = int((a.base / "mysqld.pid").read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        # The goal is restart_hung_after (3 x TTL = 6 s) after the first failed fence; bounded generously.
        wait_for(
            lambda: any(e["kind"] == "mariadb_restarted" and e["host"] == a.name for e in read_events(two_nodes.base)),
            90,
            "A's agent restarting its hung MariaDB",
        )
    except TimeoutError:
        raise AssertionError(two_nodes.logs()) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # harmless once killed; thaws it if the agent never did
    took = two_nodes.wait_roles(b, a, timeout=90)
    print(f"\nB leads and A (restarted) follows it, {took:.1f}s after the restart event was seen")
    new_pid = int((a.base / "mysqld.pid").read_text().strip())
    assert new_pid != pid
    # The agent kept its pace while the server hung: no retry storm (the old loop logged ~30 per second).
    failed = a.agent_log().count("fence failed")
    assert failed < 40, f"{failed} failed fences\n{two_nodes.logs()}"
