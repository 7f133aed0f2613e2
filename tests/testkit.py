"""What every test directory shares (tests/ is on sys.path through tests/conftest.py: `from testkit import …`):
the one polling helper, free ports, and the one way to launch a throwaway MariaDB (its argv, its install,
its client), used by the site's harness (tests/site/site_testlib.py) and the agent's (tests/agent/
agent_testlib.py, through mariadb_ctl.py). Only processes a test started are ever stopped, by their handle.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from webinfra.runtime.probe import wait_until

REPO = Path(__file__).resolve().parents[1]  # the source tree: examples/, src/, pyproject.toml
EXAMPLES = REPO / "examples"

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
MARIADBD = shutil.which("mariadbd", path=SBIN_PATH)
INSTALL_DB = shutil.which("mariadb-install-db", path=SBIN_PATH)
CLIENT = shutil.which("mariadb", path=SBIN_PATH)


class WaitTimeout(TimeoutError, AssertionError):
    """`wait_for` gave up: a failed test (AssertionError) and a timeout (TimeoutError), for callers that
    catch either."""


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll `condition` until true and return the seconds it took; fail naming `what` after `timeout`
    (the polling itself is webinfra's own, runtime.probe.wait_until)."""
    start = time.monotonic()
    if not wait_until(condition, timeout, interval):
        raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
    return time.monotonic() - start


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now on `address` (so also usable as a "closed" port)."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


# ---- a throwaway MariaDB ----


@dataclass(frozen=True)
class MariaDBFiles:
    """Where one private mariadbd keeps everything: under `base`."""

    base: Path

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket(self) -> Path:
        return self.base / "mysqld.sock"

    @property
    def tmpdir(self) -> Path:
        # Private tmpdir: two bootstraps sharing /tmp collide on temp-table names.
        return self.base / "tmp"

    @property
    def log_error(self) -> Path:
        return self.base / "error.log"


class OnMariaDBFiles:
    """For a harness class with a `base` directory: its MariaDB's files, data directory and socket."""

    base: Path

    @property
    def files(self) -> MariaDBFiles:
        return MariaDBFiles(self.base)

    @property
    def datadir(self) -> Path:
        return self.files.datadir

    @property
    def socket(self) -> Path:
        return self.files.socket


def install(files: MariaDBFiles) -> subprocess.Popen[bytes]:
    """Start `mariadb-install-db` for `files` (root by socket, no test db); the caller waits for it."""
    assert INSTALL_DB is not None
    files.tmpdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            INSTALL_DB,
            "--no-defaults",
            f"--datadir={files.datadir}",
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            f"--tmpdir={files.tmpdir}",
            "--innodb-log-file-size=8M",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def mariadbd_argv(
    files: MariaDBFiles,
    *,
    port: int,
    server_id: int,
    read_only: bool,
    address: str = "127.0.0.1",
    report_host: str | None = None,
) -> list[str]:
    """The command line of a test mariadbd: GTID replication as webinfra configures it, speed over durability
    (these instances live for one test run)."""
    assert MARIADBD is not None
    argv = [
        MARIADBD,
        "--no-defaults",
        f"--datadir={files.datadir}",
        f"--socket={files.socket}",
        f"--port={port}",
        f"--bind-address={address}",
        "--user=root",
        f"--server-id={server_id}",
        f"--log-bin={files.datadir}/binlog",
        f"--relay-log={files.datadir}/relay",
        "--gtid-strict-mode=1",
        "--binlog-format=ROW",
        "--log-slave-updates",
        "--skip-name-resolve",
        f"--pid-file={files.base / 'mysqld.pid'}",
        f"--log-error={files.log_error}",
        f"--tmpdir={files.tmpdir}",
        "--innodb-log-file-size=8M",
        "--innodb-buffer-pool-size=32M",
        "--innodb-flush-log-at-trx-commit=2",
        "--sync-binlog=0",
        "--performance-schema=OFF",
        # As webinfra renders my.cnf: the initial primary starts writable, replicas read-only.
        f"--read-only={'ON' if read_only else 'OFF'}",
    ]
    if report_host is not None:  # what the site's identify_servers reads back as the server's own name
        argv.append(f"--report-host={report_host}")
    return argv


def run_sql(socket_path: Path, sql: str, *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`sql` as root over the unix socket (tab-separated, no column names); the caller checks the result."""
    assert CLIENT is not None
    return subprocess.run(
        [
            CLIENT,
            "--no-defaults",
            f"--socket={socket_path}",
            "--user=root",
            "--batch",
            "--skip-column-names",
            "--connect-timeout=2",
        ],
        input=sql,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
