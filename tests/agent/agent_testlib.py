"""Test harness of the DB agent: a throwaway etcd, throwaway MariaDB nodes on loopback addresses, and
agent processes, each tracked by the PID we started (never by name).

Lives in its own uniquely named module (not conftest.py) so test modules can import it.

Nodes get their own loopback address (127.77.0.x: all of 127/8 is loopback on Linux) and share one
MariaDB port and one agent port, as hosts of a real cluster do: the agent's config has one port for
everybody, and `Master_Host` then names the node.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
ETCD = shutil.which("etcd", path=_PATH)
MARIADBD = shutil.which("mariadbd", path=_PATH)
INSTALL_DB = shutil.which("mariadb-install-db", path=_PATH)
CLIENT = shutil.which("mariadb", path=_PATH)
MARIABACKUP = shutil.which("mariabackup", path=_PATH)
MBSTREAM = shutil.which("mbstream", path=_PATH)
CTL = Path(__file__).with_name("mariadb_ctl.py")


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def free_port_on(addresses: list[str]) -> int:
    """A port free on every one of `addresses`."""
    for _ in range(50):
        port = free_port(addresses[0])
        try:
            for address in addresses[1:]:
                with socket.socket() as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no common free port on {addresses}")


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    """Poll `check` until true; return the seconds it took; fail after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


def stop_pid(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a process we started (SIGTERM, then SIGKILL)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- etcd ------------------------------------------------------------------------------------------------------


@dataclass
class EtcdServer:
    base: Path
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 20.0) -> None:
        assert ETCD is not None
        peer = f"http://127.0.0.1:{self.peer_port}"
        log = (self.base / "etcd.log").open("ab")
        self.proc = subprocess.Popen(
            [
                ETCD,
                "--name=default",
                f"--data-dir={self.base / 'etcd-data'}",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--logger=zap",
                "--log-level=warn",
            ],
            stdout=log,
            stderr=log,
        )

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"etcd exited {self.proc.returncode}: {(self.base / 'etcd.log').read_text()[-2000:]}"
                )
            try:
                return bool(httpx.get(self.url + "/health", timeout=0.5).json().get("health") == "true")
            except (httpx.HTTPError, ValueError):
                return False

        wait_for("etcd /health", healthy, timeout)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
            self.proc = None


# -- MariaDB nodes ---------------------------------------------------------------------------------------------


@dataclass
class Node:
    """One MariaDB + agent host on a loopback address; MariaDB is started and stopped by `mariadb_ctl.py`,
    the same commands the agent gets as `mariadb_control`."""

    name: str
    address: str
    server_id: int
    base: Path
    port: int
    agent_port: int
    agent: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket(self) -> Path:
        return self.base / "mysqld.sock"

    @property
    def ctl_file(self) -> Path:
        return self.base / "ctl.json"

    @property
    def agent_config(self) -> Path:
        return self.base / "agent.json"

    def write_ctl(self, *, read_only: bool) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "tmp").mkdir(exist_ok=True)
        argv = [
            str(MARIADBD),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.address}",
            "--user=root",
            f"--server-id={self.server_id}",
            f"--log-bin={self.datadir}/binlog",
            f"--relay-log={self.datadir}/relay",
            "--gtid-strict-mode=1",
            "--binlog-format=ROW",
            "--log-slave-updates",
            "--skip-name-resolve",
            f"--pid-file={self.base / 'mysqld.pid'}",
            f"--log-error={self.base / 'error.log'}",
            f"--tmpdir={self.base / 'tmp'}",
            "--innodb-log-file-size=8M",
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--performance-schema=OFF",
            # As webinfra renders my.cnf: the initial primary starts writable, replicas read-only.
            f"--read-only={'ON' if read_only else 'OFF'}",
        ]
        self.ctl_file.write_text(json.dumps({"argv": argv, "socket": str(self.socket), "pidfile": str(self.svc_pid)}))

    @property
    def svc_pid(self) -> Path:
        return self.base / "mariadbd.svc.pid"

    def install(self) -> subprocess.Popen[bytes]:
        assert INSTALL_DB is not None
        return subprocess.Popen(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                f"--tmpdir={self.base / 'tmp'}",
                "--innodb-log-file-size=8M",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def ctl(self, verb: str) -> None:
        subprocess.run([sys.executable, str(CTL), verb, str(self.ctl_file)], check=True, timeout=60)

    def mariadbd_pid(self) -> int | None:
        try:
            return int(self.svc_pid.read_text())
        except (OSError, ValueError):
            return None

    def sql(self, sql: str, *, check: bool = True, timeout: float = 30) -> str:
        proc = subprocess.run(
            [str(CLIENT), "--no-defaults", f"--socket={self.socket}", "--user=root", "--batch", "--skip-column-names"],
            input=sql,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"SQL on {self.name} failed: {proc.stderr.strip()}\n{sql}")
        return proc.stdout.strip()

    def answers(self) -> bool:
        return self.socket.exists() and self.sql("SELECT 1", check=False, timeout=5) == "1"

    def read_only(self) -> bool:
        return self.sql("SELECT @@global.read_only") == "1"

    # -- the agent ---------------------------------------------------------------------------------------

    def start_agent(self) -> None:
        log = (self.base / "agent.log").open("ab")
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "webinfra.agent", "--config", str(self.agent_config)],
            stdout=log,
            stderr=log,
        )

    def stop_agent(self) -> None:
        if self.agent is not None:
            stop_pid(self.agent)
            self.agent = None

    def http(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://{self.address}:{self.agent_port}{path}", timeout=1.0)
        except httpx.HTTPError:
            return None

    def ok(self, path: str) -> bool:
        resp = self.http(path)
        return resp is not None and resp.status_code == 200

    def status(self) -> dict[str, Any]:
        resp = self.http("/status")
        return resp.json() if resp is not None else {}

    def agent_log(self) -> str:
        path = self.base / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""


def agent_config(
    node: Node, nodes: list[Node], *, etcd: str, prefix: str, base: Path, **overrides: Any
) -> dict[str, Any]:
    """An agent.json with the exact schema webinfra renders, for `node` in a cluster of `nodes`."""
    ctl = [sys.executable, str(CTL)]
    config = {
        "cluster": "tagent",
        "host": node.name,
        "address": node.address,
        "listen_address": node.address,
        "listen_port": node.agent_port,
        "etcd_endpoints": [etcd],
        "prefix": prefix,
        "lease_ttl": 2,
        "loop_interval": 0.5,
        "replica_max_lag": 5.0,
        "when_no_replica_acks": "fallback_async",
        "semi_sync_fallback_ms": 1000,
        "mariadb": {
            "socket": str(node.socket),
            "port": node.port,
            "datadir": str(node.datadir),
            "pid_file": str(node.base / "mysqld.pid"),
        },
        "members": {n.name: {"address": n.address} for n in nodes},
        "initial_primary": nodes[0].name,
        "repl_user": "repl",
        "repl_password_file": str(base / "repl.password"),
        "token_file": str(base / "agent-token.password"),
        "mariadb_control": {
            "stop": [*ctl, "stop", str(node.ctl_file)],
            "start": [*ctl, "start", str(node.ctl_file)],
        },
        "events_file": str(base / "events.jsonl"),
    }
    config.update(overrides)
    return config


def read_events(base: Path) -> list[dict[str, Any]]:
    path = base / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
