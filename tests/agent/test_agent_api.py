"""The HTTP API on loopback, fed a `Published` value directly (the seam the loop uses): status codes of
/primary /replica /read /health, HEAD, /status JSON, and /clone's token check."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from webinfra.agent import api as agent_api
from webinfra.agent import clock
from webinfra.agent.api import AgentHTTPServer, Published, start_api
from webinfra.agent.decision import Action, Decision
from webinfra.agent.snapshot import (
    AgentState,
    ClusterView,
    DbRole,
    LocalDb,
    MemberRecord,
    Settings,
    SlaveStatus,
    Snapshot,
)

ADDR = {"web-01": "10.0.0.1", "web-02": "10.0.0.2"}
TOKEN = "s3cret-token"


def leader(renewed_ago: float = 0.1, *, read_only: bool = False, replica_healthy: bool = True) -> Published:
    db = LocalDb(reachable=True, read_only=read_only, gtid_current_pos="0-1-9", semi_master_enabled=True)
    me = AgentState(holds_lease=True, lease_id=5, last_renewal_sent=clock.now() - renewed_ago)
    replica = MemberRecord(
        "web-02", role=DbRole.REPLICA, healthy=replica_healthy, replicating_from="10.0.0.1", lag_seconds=0.0
    )
    view = ClusterView(members={"web-02": replica})
    s = Snapshot(clock.now(), Settings("web-01", "web-01", members=ADDR), db, view, me)
    return Published(s, Decision(Action.LEAD, "holding the leader lease"), DbRole.PRIMARY, "web-01", view, "t", "on")


def replica(lag: float | None = 0.0, source: str = "10.0.0.1", running: str = "Yes") -> Published:
    slave = SlaveStatus(source, 3306, running, "Yes", "Slave_Pos", "0-1-9", lag)
    db = LocalDb(reachable=True, read_only=True, gtid_current_pos="0-1-9", slave=slave)
    s = Snapshot(clock.now(), Settings("web-02", "web-01", members=ADDR), db, ClusterView(), AgentState())
    return Published(s, Decision(Action.FOLLOW, "following web-01", "web-01"), DbRole.REPLICA, "web-01", None, "t")


class Api:
    def __init__(self, tmp: Path) -> None:
        self.current = Published()
        self.server = AgentHTTPServer(
            ("127.0.0.1", 0),
            lambda: self.current,
            token=lambda: TOKEN,
            socket=tmp / "no.sock",
            workdir=tmp,
        )
        start_api(self.server)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def code(self, path: str, method: str = "GET", **kw: object) -> int:
        return httpx.request(method, self.url + path, timeout=2, **kw).status_code  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    a = Api(tmp_path_factory.mktemp("api"))
    yield a
    a.server.shutdown()
    a.server.server_close()


@pytest.fixture
def api(server: Api) -> Api:
    server.current = Published()
    return server


def codes(api: Api) -> dict[str, int]:
    return {p: api.code(p) for p in ("/primary", "/replica", "/read", "/health")}


def test_before_the_first_cycle_everything_is_503(api: Api) -> None:
    assert codes(api) == {"/primary": 503, "/replica": 503, "/read": 503, "/health": 503}
    assert api.code("/status") == 200


def test_leader(api: Api) -> None:
    api.current = leader()
    # The replica is healthy, so reads go there, not to the primary.
    assert codes(api) == {"/primary": 200, "/replica": 503, "/read": 503, "/health": 200}
    api.current = leader(replica_healthy=False)
    assert api.code("/read") == 200  # no healthy replica: the primary serves reads too
    assert api.code("/primary", "HEAD") == 200


def test_leader_with_a_stale_renewal_or_read_only_is_not_primary(api: Api) -> None:
    api.current = leader(renewed_ago=1.6)  # past lease_ttl - margin (2 - 0.5)
    assert api.code("/primary") == 503
    api.current = leader(read_only=True)  # e.g. during a switchover
    assert api.code("/primary") == 503


def test_replica(api: Api) -> None:
    api.current = replica()
    assert codes(api) == {"/primary": 503, "/replica": 200, "/read": 200, "/health": 200}
    assert api.code("/replica", "HEAD") == 200
    for bad in (replica(lag=6.0), replica(lag=None), replica(source="10.0.0.9"), replica(running="Connecting")):
        api.current = bad
        assert api.code("/replica") == 503 and api.code("/read") == 503


def test_status_json(api: Api) -> None:
    api.current = leader()
    status = httpx.get(api.url + "/status", timeout=2).json()
    assert status["host"] == "web-01" and status["role"] == "primary" and status["leader"] == "web-01"
    assert status["gtid"] == "0-1-9" and status["gtid_seq"] == 9 and status["read_only"] is False
    assert status["dcs_reachable"] is True and status["semi_sync"] == "on"
    assert 1.5 < status["lease_ttl_left"] <= 2.0
    assert status["reason"] == "holding the leader lease" and status["action"] == "lead"


def test_clone_needs_the_token(api: Api) -> None:
    api.current = replace(replica(), snapshot=None)
    assert api.code("/clone") == 403
    assert api.code("/clone", headers={"X-Webinfra-Token": "wrong"}) == 403
    # Right token, but this node is neither the leader nor a healthy replica.
    assert api.code("/clone", headers={"X-Webinfra-Token": TOKEN}) == 503
    assert api.code("/nope") == 404


def test_stepping_down_leader_is_not_primary(api: Api) -> None:
    """The loop sets `stepping_down` before it revokes the lease: /primary is 503 from that moment."""
    api.current = replace(leader(), stepping_down=True)
    assert api.code("/primary") == 503


def test_idle_connections_neither_pin_the_api_nor_keep_primary_out(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twice the connection bound of idle sockets (some with half a request): /primary still answers at
    once (the oldest idle one is evicted), and an idle socket is closed after the I/O timeout."""
    monkeypatch.setattr(agent_api._Handler, "timeout", 1.0)
    api.current = leader()
    port = api.server.server_address[1]
    idle = []
    try:
        for i in range(2 * agent_api.MAX_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            if i % 2:
                sock.sendall(b"GET /primary HTTP/1.1\r\nHost: x\r\n")  # slow-loris: headers never end
            idle.append(sock)
        api.current = leader()  # a fresh renewal (opening the sockets may take a while on a busy machine)
        started = time.monotonic()
        assert api.code("/primary") == 200
        assert time.monotonic() - started < 1.0
        assert api.server.open_connections <= agent_api.MAX_CONNECTIONS
        # The survivors are closed by the server after the I/O timeout: recv sees EOF (b"") or a reset.
        last = idle[-1]
        last.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert last.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
    api.current = leader()
    assert api.code("/primary") == 200
