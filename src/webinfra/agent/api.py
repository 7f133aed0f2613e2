"""The agent's HTTP API (threaded `http.server`). Answers come from the last published cycle
(`Published`), so a request never waits for MariaDB or etcd; only `/clone` does real work.

GET or HEAD:
  /primary  200 iff I lead, my lease renewal is fresh and MariaDB is writable   (HAProxy: writes)
  /replica  200 iff I replicate from the current leader, both threads running, lag <= replica_max_lag
  /read     200 iff /replica would be, or I am the writable leader and no member is a healthy replica
  /health   200 iff local MariaDB answers
  /status   JSON of the last cycle
  /metrics  the same as Prometheus gauges (metrics.py)
  /clone    token-protected xbstream of this node's data (mariabackup), chunked; leader or healthy replica

Connections are bounded: every socket has a timeout (`IO_TIMEOUT`; an idle keep-alive or a slow client
is dropped after it), and at most `MAX_CONNECTIONS` are open at once. At the bound, a new connection
evicts the oldest one that is idle (waiting for a request line), so idle or slow-loris connections can
never keep HAProxy's /primary checks out; only when every slot is busy serving is a connection refused.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from webinfra.agent import clock
from webinfra.agent import metrics as agent_metrics
from webinfra.agent.clone import GTID_STATE_HEADER, backup_stream
from webinfra.agent.decision import Action, Decision
from webinfra.agent.mysql import DbError, LocalMariaDB
from webinfra.agent.snapshot import ClusterView, DbRole, Snapshot

log = logging.getLogger("webinfra.agent")


@dataclass(frozen=True)
class Published:
    """What the loop publishes after each cycle for the API (replaced whole, never mutated)."""

    snapshot: Snapshot | None = None
    decision: Decision | None = None
    role: str = DbRole.UNKNOWN
    leader: str | None = None  # current leader (last known while the DCS is unreachable)
    cluster: ClusterView | None = None  # the last view the DCS gave (may be older than this cycle)
    decided_at: str = ""  # wall-clock ISO time of `decision`
    semi_sync: str = "off"  # on / off / fallback
    # Set (between cycles) just before the leader lets its lease go or fences: /primary is 503 from then.
    stepping_down: bool = False

    def lease_fresh(self, now: float) -> bool:
        """Evaluated at request time: a renewal 'fresh' at the end of the cycle can go stale before the
        next one, and /primary must turn 503 no later than the leader fences."""
        s = self.snapshot
        if s is None or not s.me.holds_lease or s.me.last_renewal_sent is None:
            return False
        return now < s.me.last_renewal_sent + s.settings.lease_ttl - s.settings.fence_margin

    def primary_ok(self, now: float) -> bool:
        s = self.snapshot
        return (
            s is not None
            and not self.stepping_down
            and s.db.reachable
            and not s.db.read_only
            and not s.me.fenced
            and self.lease_fresh(now)
        )

    def replica_ok(self) -> bool:
        s = self.snapshot
        if s is None or not s.db.reachable or s.me.holds_lease or s.me.cloning or self.leader is None:
            return False
        slave = s.db.slave
        address = s.settings.members.get(self.leader)
        if slave is None or address is None or slave.master_host != address:
            return False
        if self.decision is not None and self.decision.action is Action.STOP_RECEIVING:
            # IO thread stopped on purpose (the leader's lease is about to expire): still serve what was
            # applied, as a replica of a cut-off source did before; reads stay up until the takeover.
            return slave.sql_running == "Yes"
        return slave.running and slave.seconds_behind is not None and slave.seconds_behind <= s.settings.replica_max_lag

    def read_ok(self, now: float) -> bool:
        if self.replica_ok():
            return True
        if not self.primary_ok(now) or self.snapshot is None:
            return False
        s = self.snapshot
        members = self.cluster.members if self.cluster else {}
        my_address = s.settings.members.get(s.settings.host)
        return not any(
            m.name != s.settings.host
            and m.role == DbRole.REPLICA
            and m.healthy
            and m.replicating_from == my_address
            and m.lag_seconds is not None
            and m.lag_seconds <= s.settings.replica_max_lag
            for m in members.values()
        )

    def status(self, now: float) -> dict[str, Any]:
        s = self.snapshot
        if s is None:
            return {"role": self.role, "decision": None}
        slave = s.db.slave
        ttl_left: float | None = None
        if s.me.holds_lease and s.me.last_renewal_sent is not None:
            ttl_left = round(max(0.0, s.me.last_renewal_sent + s.settings.lease_ttl - now), 2)
        elif s.cluster is not None:
            ttl_left = s.cluster.leader_ttl_left
        return {
            "host": s.settings.host,
            "role": self.role,
            "gtid": s.db.gtid_current_pos,
            "gtid_seq": s.db.gtid_seq,
            "lag_seconds": slave.seconds_behind if slave else None,
            "read_only": s.db.read_only if s.db.reachable else None,
            "mariadb_reachable": s.db.reachable,
            "leader": self.leader,
            "lease_ttl_left": ttl_left,
            "lease_fresh": self.lease_fresh(now),
            "dcs_reachable": s.cluster is not None,
            "semi_sync": self.semi_sync,
            "semi_sync_clients": s.db.semi_master_clients,
            "replicating_from": slave.master_host if slave else None,
            "replication_error": (slave.last_io_error or slave.last_sql_error) if slave else None,
            "fenced": s.me.fenced,
            "watchdog": s.db.watchdog_installed if s.db.reachable else None,
            "gtid_state": str(s.db.gtid_state),
            "action": self.decision.action.value if self.decision else None,
            "reason": self.decision.reason if self.decision else None,
            "decided_at": self.decided_at,
        }


IO_TIMEOUT = 5.0  # seconds a socket may sit idle or stall mid-request (a /clone stream gets CLONE_IO_TIMEOUT)
CLONE_IO_TIMEOUT = 120.0
MAX_CONNECTIONS = 32


class AgentHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    # Open connections in arrival order -> idle (waiting for a request line) or busy. Declared here, where
    # `socket` is the module: in __init__ the name is the MariaDB socket path parameter.
    _open: dict[socket.socket, bool]

    def __init__(
        self,
        address: tuple[str, int],
        published: Callable[[], Published],
        *,
        token: Callable[[], str],
        socket: Path,
        workdir: Path,
    ) -> None:
        super().__init__(address, _Handler)
        self.published = published
        self.token = token
        self.mariadb_socket = socket
        self.workdir = workdir
        self.clone_slot = threading.Semaphore(1)  # one backup at a time: it is heavy on the source
        self.max_connections = MAX_CONNECTIONS
        self._lock = threading.Lock()
        self._open = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._open) >= self.max_connections and not self._evict_idle():
                log.warning("http: %d connections busy; refusing %s", len(self._open), client_address)
                self.shutdown_request(request)
                return
            self._open[request] = True
        super().process_request(request, client_address)

    def _evict_idle(self) -> bool:
        """Shut the oldest idle connection down (its thread then ends); False when none is idle."""
        for conn, idle in self._open.items():
            if idle:
                del self._open[conn]
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                return True
        return False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (HAProxy's checks reset the connection once they have the status
        line; an evicted idle connection) is routine: one debug line, not a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("http %s: %s", client_address, exc)
            return
        super().handle_error(request, client_address)

    def mark(self, conn: socket.socket, *, idle: bool) -> None:
        with self._lock:
            if conn in self._open:
                self._open[conn] = idle

    def close_request(self, request: Any) -> None:
        with self._lock:
            self._open.pop(request, None)
        super().close_request(request)

    @property
    def open_connections(self) -> int:
        return len(self._open)


class _Handler(BaseHTTPRequestHandler):
    server: AgentHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = IO_TIMEOUT  # socketserver sets it on the connection: no read or write blocks longer

    def handle_one_request(self) -> None:
        self.server.mark(self.connection, idle=True)  # waiting for the request line
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers: a client stalling there is still "idle"
        self.server.mark(self.connection, idle=False)
        return parsed

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch(body=True)

    def do_HEAD(self) -> None:
        self._dispatch(body=False)

    def _dispatch(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        pub = self.server.published()
        now = clock.now()
        if path == "/clone":
            self._clone(pub, body=body)
            return
        checks: dict[str, Callable[[], bool]] = {
            "/primary": lambda: pub.primary_ok(now),
            "/replica": pub.replica_ok,
            "/read": lambda: pub.read_ok(now),
            "/health": lambda: pub.snapshot is not None and pub.snapshot.db.reachable,
        }
        if path in checks:
            ok = checks[path]()
            self._send(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, {"ok": ok, "role": pub.role}, body)
        elif path == "/status":
            self._send(HTTPStatus.OK, pub.status(now), body)
        elif path == "/metrics":  # Prometheus: the same facts as gauges (metrics.py)
            agent_metrics.send(self, pub.status(now), body)
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": "not found"}, body)

    def _send(self, status: HTTPStatus, payload: dict[str, Any], body: bool) -> None:
        data = (json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _clone(self, pub: Published, *, body: bool) -> None:
        given = self.headers.get("X-Webinfra-Token", "")
        expected = self.server.token()
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            self._send(HTTPStatus.FORBIDDEN, {"error": "bad or missing X-Webinfra-Token"}, body)
            return
        if not (pub.primary_ok(clock.now()) or pub.replica_ok()):
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "not the leader nor a healthy replica"}, body)
            return
        if not body:
            self._send(HTTPStatus.OK, {"ok": True}, body)
            return
        if not self.server.clone_slot.acquire(blocking=False):
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "a clone is already streaming"}, body)
            return
        try:
            self._stream_backup()
        finally:
            self.server.clone_slot.release()

    def _stream_backup(self) -> None:
        # The history before the backup point, per (domain, server_id): the receiver restores it as its
        # gtid_binlog_state (a backup carries only the last GTID), so its published history stays whole.
        try:
            state = LocalMariaDB(self.server.mariadb_socket).run("SELECT @@global.gtid_binlog_state;").strip()
        except DbError:
            state = ""
        self.send_response(HTTPStatus.OK)
        self.send_header(GTID_STATE_HEADER, state.replace("\n", ","))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.connection.settimeout(CLONE_IO_TIMEOUT)
        started, sent = clock.now(), 0
        try:
            with backup_stream(self.server.mariadb_socket, self.server.workdir) as (chunks, proc):
                for chunk in chunks:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                if proc.returncode != 0:
                    # No terminating chunk: the client sees a truncated stream, never a complete-looking one.
                    log.warning("clone: mariabackup exited %s after %d bytes; stream cut", proc.returncode, sent)
                    return
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            log.warning("clone: the receiver went away after %d bytes (mariabackup stopped)", sent)
            return
        log.info("clone: streamed %.1f MB in %.1fs", sent / 1e6, clock.now() - started)


def start_api(server: AgentHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="agent-http", daemon=True)
    thread.start()
    return thread
