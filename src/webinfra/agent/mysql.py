"""This host's MariaDB, seen and steered through the `mariadb` client over its unix socket as root.

`facts()` reads everything a cycle needs in ONE client call (variables, semi-sync status, SHOW SLAVE
STATUS) and never raises: an unreachable server is a fact too. The other methods are the few changes
the agent makes; each is one short script of admin SQL, so the password of the replication user goes
in on stdin, never on a command line.
"""

from __future__ import annotations

import socket as sockets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from webinfra.agent import clock, watchdog
from webinfra.agent.mysql_facts import FACTS_SQL, int_or_0, local_db_from_rows, parse_vertical
from webinfra.agent.snapshot import GtidState, LocalDb
from webinfra.sqltext import quote

# "Forever" for rpl_semi_sync_master_timeout (ms): MariaDB must never fall back to async on its own;
# falling back is the agent's decision, taken only while it holds a fresh lease.
SEMI_SYNC_TIMEOUT_MS = 4294967295


class DbError(RuntimeError):
    """A statement failed or the server did not answer."""


class LocalMariaDB:
    """Admin SQL on this host's MariaDB through `mariadb --socket=... --user=root`.

    `fence_at` (CLOCK_BOOTTIME; None when not leading) is set by the loop every cycle: every facts call,
    and every statement that makes the server writable, first publishes it to the watchdog event
    (watchdog.py) as the wall-clock time until which the server may stay writable."""

    def __init__(
        self, socket: Path, *, client: str = "mariadb", timeout: float = 2.0, pid_file: Path | None = None
    ) -> None:
        self.socket = socket
        self.client = client
        self.timeout = timeout
        self.pid_file = pid_file
        self.fence_at: float | None = None
        self.watchdog_ready = False  # the lease row exists: the deadline may be written

    def _argv(self, *extra: str) -> list[str]:
        return [
            self.client,
            "--no-defaults",
            f"--socket={self.socket}",
            "--user=root",
            "--connect-timeout=1",
            "--batch",
            *extra,
        ]

    def run(self, sql: str, *, timeout: float | None = None, vertical: bool = False, force: bool = False) -> str:
        """Run `sql`; return stdout. Raises DbError with the server's message."""
        extra = ["--vertical"] if vertical else ["--skip-column-names"]
        if force:
            extra.append("--force")  # go on after a failing statement (e.g. KILL of a session just gone)
        try:
            proc = subprocess.run(
                self._argv(*extra),
                input=sql,
                capture_output=True,
                text=True,
                timeout=timeout or self.timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise DbError(f"no answer within {exc.timeout:g}s") from exc
        except OSError as exc:
            raise DbError(str(exc)) from exc
        if proc.returncode != 0:
            raise DbError(" | ".join(proc.stderr.strip().splitlines()[-2:]) or f"exit {proc.returncode}")
        return proc.stdout

    def _deadline_sql(self, fence_at: float | None) -> str:
        if not self.watchdog_ready:
            return ""
        return watchdog.deadline_sql(clock.wall_of(fence_at) if fence_at is not None else 0.0)

    def facts(self) -> LocalDb:
        try:
            db = local_db_from_rows(
                parse_vertical(self.run(self._deadline_sql(self.fence_at) + FACTS_SQL, vertical=True))
            )
        except DbError as exc:
            return LocalDb(reachable=False, error=str(exc), gone=self.mysqld_gone())
        self.watchdog_ready = db.watchdog_installed
        return db

    def mysqld_gone(self) -> bool:
        """Proof that no mysqld runs: nothing accepts on the socket AND the pid in its pid file (if known)
        is not a live process. A stalled or overloaded server still accepts (the kernel queues the
        connection), so it is never 'gone'."""
        probe = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(str(self.socket))
            return False
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        except OSError:
            return False  # a timeout or anything odd proves nothing
        finally:
            probe.close()
        return not _pid_alive(self.pid_file)

    def mysqld_pid(self) -> int | None:
        """The live mariadbd named by its pid file (None: none, or no pid file configured)."""
        return _live_mysqld_pid(self.pid_file)

    def publish_deadline(self) -> None:
        """Hand the current `fence_at` to the watchdog now (the leader, right after a renewal: the facts call
        of the next cycle would publish it a cycle late)."""
        sql = self._deadline_sql(self.fence_at)
        if sql:
            self.run(sql)

    def install_watchdog(self, repl_user: str) -> None:
        """Create the watchdog (binlog off; idempotent). The deadline is written from the next call on."""
        self.run(watchdog.install_sql(repl_user), timeout=10)
        self.watchdog_ready = True

    # -- leader ------------------------------------------------------------------------------------------

    def drain_relay_log(self, fence_at: float) -> None:
        """Stop receiving, then wait (until `fence_at` at most) for the SQL thread to apply everything the IO
        thread received: a promotion that reset replication before that would drop acknowledged writes
        sitting in the relay log."""
        rows = parse_vertical(self.run("STOP SLAVE IO_THREAD;\nSHOW SLAVE STATUS;", vertical=True, timeout=5))
        received = rows[0].get("Gtid_IO_Pos", "") if rows else ""
        applied = rows[0].get("Gtid_Slave_Pos", "") if rows else ""
        if not received or GtidState.parse(applied).contains(GtidState.parse(received)):
            return
        left = fence_at - clock.now()
        if left <= 0.05:
            raise DbError(f"no time left in the lease to apply the relay log up to {received}")
        out = self.run(f"SELECT MASTER_GTID_WAIT({quote(received)}, {left:.3f});", timeout=left + 1)
        if out.strip() != "0":
            raise DbError(f"relay log not applied up to {received} within {left:.1f}s (the lease would expire)")

    def promote(
        self,
        fence_at: float,
        *,
        replicating: bool = True,
        semi_sync: bool = True,
        before_writable: Callable[[LocalDb], None] | None = None,
    ) -> str:
        """Drain the relay log, forget the source, semi-sync master on (or off: `semi_sync`), publish the
        watchdog deadline, then writable (in that order: no write is ever acknowledged without a replica
        unless the caller decided so, none is lost from the relay log). `before_writable` runs with the
        promotion point (binlog tip, server_id) after the reset and before read_only=OFF; its exception
        leaves the server read-only. Bounded by the lease (`fence_at`). Returns the GTID state at that
        point."""
        if replicating:
            self.drain_relay_log(fence_at)
        reset = f"""
STOP SLAVE;
RESET SLAVE ALL;
SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC;
SET GLOBAL rpl_semi_sync_master_timeout = {SEMI_SYNC_TIMEOUT_MS};
SET GLOBAL rpl_semi_sync_master_enabled = {"ON" if semi_sync else "OFF"};
"""
        writable = f"""
{self._deadline_sql(fence_at)}
SET GLOBAL read_only = OFF;
SELECT @@global.gtid_binlog_state, @@global.gtid_current_pos;
"""
        if before_writable is None:
            out = self.run(reset + writable, timeout=max(1.0, fence_at - clock.now()))
        else:
            at = self.run(
                reset + "SELECT @@global.server_id, @@global.gtid_binlog_pos, @@global.gtid_current_pos;",
                timeout=max(1.0, fence_at - clock.now()),
            )
            fields = (at.strip().splitlines()[-1] if at.strip() else "").split("\t")
            if len(fields) != 3:
                raise DbError(f"no promotion point in {at.strip()!r}")
            before_writable(
                LocalDb(
                    reachable=True, server_id=int_or_0(fields[0]), gtid_binlog_pos=fields[1], gtid_current_pos=fields[2]
                )
            )
            if clock.now() >= fence_at:
                raise DbError("no time left in the lease to make the server writable")
            out = self.run(writable, timeout=max(1.0, fence_at - clock.now()))
        last = out.strip().splitlines()[-1] if out.strip() else ""
        return str(GtidState.parse(*last.split("\t")))

    def stop_receiving(self) -> None:
        """Stop the IO thread only (the SQL thread goes on applying the relay log). Against a cut-off
        semi-sync source this waits `rpl_semi_sync_slave_kill_conn_timeout` (1 s in my.cnf)."""
        self.run("STOP SLAVE IO_THREAD;", timeout=5)

    def resume_receiving(self) -> None:
        """After a promotion that could not finish: receive from the source again."""
        self.run("START SLAVE IO_THREAD;", timeout=5)

    def ensure_leader(self, db: LocalDb, *, semi_sync: bool, fence_at: float | None) -> list[str]:
        """Make the facts match a leader's: no replication, writable, semi-sync master as wanted.
        Returns what changed (empty when nothing did), for the log."""
        sql, changed = [], []
        if db.slave is not None:
            if fence_at is not None:
                self.drain_relay_log(fence_at)
            sql.append("STOP SLAVE; RESET SLAVE ALL;")
            changed.append("replication reset")
        if db.semi_wait_point != "AFTER_SYNC":
            sql.append("SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC;")
            changed.append("semi-sync wait point AFTER_SYNC")
        if db.semi_master_timeout != SEMI_SYNC_TIMEOUT_MS:
            sql.append(f"SET GLOBAL rpl_semi_sync_master_timeout = {SEMI_SYNC_TIMEOUT_MS};")
        if db.semi_master_enabled != semi_sync:
            sql.append(f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if semi_sync else 'OFF'};")
            changed.append(f"semi-sync {'on' if semi_sync else 'off'}")
        if db.read_only and fence_at is not None:
            sql.append(self._deadline_sql(fence_at) + "SET GLOBAL read_only = OFF;")
            changed.append("writable")
        if sql:
            self.run("\n".join(sql), timeout=10)
        return changed

    def set_semi_sync_master(self, enabled: bool) -> None:
        self.run(f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if enabled else 'OFF'};")

    def fence(self, repl_user: str, *, timeout: float = 5.0) -> list[str]:
        """read_only=ON and kill every site session, fast, even while commits wait for semi-sync acks.

        SET GLOBAL read_only waits for commits in flight, and a commit waiting for an ack that will never
        come waits forever: so the SET is sent first (new commits queue behind it), then the sessions
        are killed, which lets it through. Never touch semi-sync here: switching it off would release
        exactly the writes no replica has. Returns the killed session ids."""
        setter = subprocess.Popen(
            self._argv("--skip-column-names"),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert setter.stdin is not None
        # Bounded on the server too: a waiting SET must not outlive this call (it blocks others meanwhile).
        setter.stdin.write(f"SET SESSION lock_wait_timeout = {max(1, round(timeout))}; SET GLOBAL read_only = ON;")
        setter.stdin.close()
        killed: list[str] = []
        try:
            deadline = clock.now() + timeout
            while True:
                killed += self.kill_sessions(repl_user, timeout=min(self.timeout, timeout))
                try:
                    setter.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if clock.now() > deadline:
                        raise DbError(f"SET GLOBAL read_only = ON did not complete in {timeout:g}s") from None
        finally:
            if setter.poll() is None:
                setter.kill()
                setter.wait()
        if setter.returncode != 0:
            raise DbError(f"SET GLOBAL read_only = ON failed: {setter.stderr.read().strip() if setter.stderr else ''}")
        return killed

    def kill_sessions(self, repl_user: str, *, timeout: float | None = None) -> list[str]:
        """KILL CONNECTION every session of a non-system account (the site's users) and any session waiting
        for a semi-sync ack (watchdog.killable_sql)."""
        ids = self.run(
            "SELECT ID FROM information_schema.PROCESSLIST "
            f"WHERE {watchdog.killable_sql(repl_user)} AND ID <> CONNECTION_ID() "
            "AND COMMAND NOT IN ('Binlog Dump', 'Daemon');",
            timeout=timeout,
        ).split()
        if ids:
            self.run("".join(f"KILL CONNECTION {int(i)};" for i in ids), force=True, timeout=timeout)
        return ids

    def set_read_only(self, on: bool = True) -> None:
        self.run(f"SET GLOBAL read_only = {'ON' if on else 'OFF'};", timeout=5)

    # -- replica -----------------------------------------------------------------------------------------

    def follow(
        self,
        db: LocalDb,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        align_to_binlog: bool = False,
        tls: str = "MASTER_SSL=0",
    ) -> bool:
        """Replicate from host:port with GTIDs (slave_pos), semi-sync slave on. Returns True when the
        source changed (CHANGE MASTER ran). `align_to_binlog`: an old primary's own binlog is its real
        position, so gtid_slave_pos (stale or empty there) is set from gtid_binlog_pos first."""
        slave = db.slave
        repoint = (
            align_to_binlog
            or slave is None
            or slave.master_host != host
            or slave.master_port != port
            or slave.using_gtid != "Slave_Pos"
        )
        sql = []
        if not db.read_only:
            sql.append("SET GLOBAL read_only = ON;")
        if db.semi_master_enabled:
            # A replica acknowledges; it waits for no acks (an old primary still had this on). It is
            # read-only and its site sessions were killed first, so no client is waiting on it.
            sql.append("SET GLOBAL rpl_semi_sync_master_enabled = OFF;")
        if repoint or not db.semi_slave_enabled:
            # The IO thread reads rpl_semi_sync_slave_enabled when it starts: stop it to change it.
            sql.append("STOP SLAVE;")
            sql.append("SET GLOBAL rpl_semi_sync_slave_enabled = ON;")
        if align_to_binlog:
            sql.append("SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos;")
        if repoint:
            sql.append(
                f"CHANGE MASTER TO MASTER_HOST={quote(host)}, MASTER_PORT={int(port)}, "
                f"MASTER_USER={quote(user)}, MASTER_PASSWORD={quote(password)}, "
                f"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, {tls};"
            )
        running = slave is not None and slave.running and not repoint and db.semi_slave_enabled
        if not running:
            sql.append("START SLAVE;")
        if sql:
            self.run("\n".join(sql), timeout=10)
        return repoint

    def start_replica_at(
        self,
        gtid: str,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        tls: str = "MASTER_SSL=0",
        binlog_state: str = "",
    ) -> None:
        """After a re-clone: replicate from host:port starting right after `gtid`. `binlog_state` (the
        history up to `gtid`, per domain and server_id) becomes this node's gtid_binlog_state, on the
        clone's still empty binlog: a backup carries only its last GTID, and without the rest this node
        would publish a shorter history than it has."""
        restore = f"RESET MASTER;\nSET GLOBAL gtid_binlog_state = {quote(binlog_state)};" if binlog_state else ""
        self.run(
            f"""
SET GLOBAL read_only = ON;
STOP SLAVE;
RESET SLAVE ALL;
{restore}
SET GLOBAL gtid_slave_pos = {quote(gtid)};
SET GLOBAL rpl_semi_sync_slave_enabled = ON;
CHANGE MASTER TO MASTER_HOST={quote(host)}, MASTER_PORT={int(port)},
  MASTER_USER={quote(user)}, MASTER_PASSWORD={quote(password)},
  MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, {tls};
START SLAVE;
""",
            timeout=15,
        )

    def wait_reachable(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.facts().reachable:
                return True
            time.sleep(0.1)
        return False


def _pid_alive(pid_file: Path | None) -> bool:
    """The pid in `pid_file` is a live (not zombie) mariadbd/mysqld. No pid file configured: unknown, so
    only the socket check counts."""
    return _live_mysqld_pid(pid_file) is not None


def pid_running(pid: int) -> bool:
    """`pid` is still a live process (not gone, not a zombie waiting to be reaped): one /proc read."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _live_mysqld_pid(pid_file: Path | None) -> int | None:
    if pid_file is None:
        return None
    try:
        pid = int(pid_file.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm in ("mariadbd", "mysqld") and state != "Z" else None
