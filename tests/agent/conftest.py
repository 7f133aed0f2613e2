"""Fixtures of the agent's tests: one throwaway etcd per session (`etcd_server`), on 127.0.0.1 with free
ports and a temp data dir, stopped by its PID. Tests that use it get their own key prefix."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_testlib import ETCD, EtcdServer
from test_agent_failover import TwoNodes, running


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    if ETCD is None:
        pytest.skip("etcd is not installed (Debian: etcd-server)")
    base = Path(tempfile.mkdtemp(prefix="webinfra-agent-etcd-"))
    server = EtcdServer(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def prefix() -> str:
    return f"/webinfra-test/{uuid.uuid4().hex[:8]}/"


@pytest.fixture
def two_nodes(etcd_server: EtcdServer, prefix: str) -> Iterator[TwoNodes]:
    """Node A (initial primary) and node B (replica) with their agents, on loopback; torn down after."""
    with running(etcd_server, prefix) as cluster:
        yield cluster
