"""A fence that does not need the agent: MariaDB makes itself read-only when the agent's lease deadline
passes, even while the agent is frozen (SIGSTOP, a stall, a dead Python process).

Why an EVENT inside mysqld rather than a sidecar process: the thing that must stop taking writes is
mysqld, so the check lives in mysqld. It runs exactly as long as the server that could accept writes
runs: no extra process to supervise, to freeze along with the agent (a sidecar in the agent's cgroup or
process group is stopped by the same SIGSTOP / cgroup freeze), or to lose its connection; and it survives
an agent crash. Its cost is one mostly sleeping event thread.

How:
- table `webinfra_ha.lease` (InnoDB, one row): `writable_until`, a UNIX time (wall clock, the only clock
  SQL has) until which this node may be writable. The agent writes it right after each lease renewal,
  in every cycle's facts call, and right before it makes the server writable (promote, ensure_leader):
  its fencing time, i.e. the last
  lease renewal etcd confirmed + TTL - fence_margin (converted from CLOCK_BOOTTIME to wall time at the
  moment of writing); 0 when it does not hold the lease. Written with `sql_log_bin = 0`: it creates no
  GTID, so it is never an errant transaction, and it is never replicated.
- event `webinfra_ha.watchdog`, EVERY 1 SECOND, each run looping 10 x (check; SLEEP 0.1): while
  `read_only = 0` and `writable_until` is in the past (or the row is missing), it calls
  `webinfra_ha.fence()`: KILL every site session, SET GLOBAL read_only = ON, kill again. Detection
  latency is about 0.1 s after the deadline. The deadline is the agent's own fencing time, a full
  fence_margin (1 s at the default 3 s TTL) before etcd can expire the lease, and the replica can promote
  only after that: the fence always lands first.
- Killing comes before read_only because SET GLOBAL read_only waits for commits in flight, and a commit
  waiting for a semi-sync acknowledgement that never comes waits forever; if it still blocks (a session
  that committed in between), the next run, a second later, kills that one too. Killed: the site's
  sessions and ANY session waiting for an ack (a root write or the event's own DROP EVENT would hold the
  SET up as well). The procedure sets `lock_wait_timeout = 1`: an event has no client to time it out,
  and a SET stuck for the default year also blocks the scheduler, i.e. every later watchdog run
  (reproduced on 10.11.19).
- Everything is created with `sql_log_bin = 0` on each node by its own agent (never replicated; a
  re-cloned node gets the source's copy, which is the same). `event_scheduler = ON` is in my.cnf and
  set by the agent too.

Limits: a wall-clock step on the host moves the deadline as seen by SQL (NTP slews; a manual step of more
than the margin could fence early or late). A frozen *mysqld* runs no event, but then it takes no writes
either until it thaws, and the first thing its event thread does then is the check.
"""

from __future__ import annotations

from webinfra.sqltext import quote

SCHEMA = "webinfra_ha"

# Accounts whose sessions survive fencing: admin (root over the socket), server threads, and connections
# still authenticating ("unauthenticated user": killing those would kill the agent's own admin logins; a
# site session that logs in meanwhile meets read_only, and the kill after SET read_only).
SYSTEM_USERS = ("root", "system user", "event_scheduler", "mariadb.sys", "unauthenticated user", "")


def spared_users_sql(repl_user: str) -> str:
    return ", ".join(quote(u) for u in (*SYSTEM_USERS, repl_user))


# A commit waiting for a semi-sync acknowledgement holds up SET GLOBAL read_only whoever runs it (an
# event's own DROP EVENT, a root session): it is killed too (its client gets an error, never an ack).
WAITING_FOR_ACK = "Waiting for semi-sync ACK from slave"


def killable_sql(repl_user: str) -> str:
    """The PROCESSLIST condition of the sessions a fence kills: the site's, and any waiting for an ack."""
    return f"(USER NOT IN ({spared_users_sql(repl_user)}) OR STATE = {quote(WAITING_FOR_ACK)})"


def install_sql(repl_user: str) -> str:
    """Idempotent: create (or replace) the lease row, the fence procedure and the event, binlog off."""
    killable = killable_sql(repl_user)
    kill_loop = """
  SET done = 0;
  OPEN sessions;
  kill_loop: LOOP
    FETCH sessions INTO victim;
    IF done THEN LEAVE kill_loop; END IF;
    KILL CONNECTION victim;
  END LOOP;
  CLOSE sessions;"""
    return f"""
SET SESSION sql_log_bin = 0;
CREATE DATABASE IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.lease (
  id TINYINT PRIMARY KEY, writable_until DOUBLE NOT NULL DEFAULT 0, updated TIMESTAMP(6) NULL
) ENGINE=InnoDB;
INSERT IGNORE INTO {SCHEMA}.lease (id, writable_until) VALUES (1, 0);
DELIMITER ;;
CREATE OR REPLACE DEFINER=`root`@`localhost` PROCEDURE {SCHEMA}.fence()
BEGIN
  DECLARE done INT DEFAULT 0;
  DECLARE victim BIGINT;
  DECLARE sessions CURSOR FOR
    SELECT ID FROM information_schema.PROCESSLIST
    WHERE {killable} AND ID <> CONNECTION_ID() AND COMMAND NOT IN ('Binlog Dump', 'Daemon');
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;
  -- An event has no client to time it out: without this, a SET GLOBAL read_only stuck behind a commit
  -- waits a year and blocks the scheduler (no further watchdog run). Give up after 1 s; the next run retries.
  SET SESSION lock_wait_timeout = 1;
  {kill_loop}
  SET GLOBAL read_only = ON;
  {kill_loop}
END;;
CREATE OR REPLACE DEFINER=`root`@`localhost` EVENT {SCHEMA}.watchdog
  ON SCHEDULE EVERY 1 SECOND ON COMPLETION PRESERVE ENABLE
  COMMENT 'webinfra: read-only once the HA agent lease deadline has passed'
DO BEGIN
  DECLARE i INT DEFAULT 0;
  WHILE i < 10 DO
    IF @@global.read_only = 0 AND COALESCE(
        (SELECT writable_until FROM {SCHEMA}.lease WHERE id = 1), 0) < UNIX_TIMESTAMP(NOW(6)) THEN
      CALL {SCHEMA}.fence();
    END IF;
    DO SLEEP(0.1);
    SET i = i + 1;
  END WHILE;
END;;
DELIMITER ;
SET GLOBAL event_scheduler = ON;
SET SESSION sql_log_bin = 1;
"""


def deadline_sql(writable_until: float) -> str:
    """Publish the deadline to the event (no GTID: binlog off for this statement only)."""
    return (
        "SET SESSION sql_log_bin = 0;\n"
        f"UPDATE {SCHEMA}.lease SET writable_until = {writable_until:.6f}, updated = NOW(6) WHERE id = 1;\n"
        "SET SESSION sql_log_bin = 1;\n"
    )


# The facts query's extra column: is the watchdog installed (and the scheduler running)?
INSTALLED_SQL = (
    f"(SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{SCHEMA}' "
    "AND EVENT_NAME = 'watchdog' AND STATUS = 'ENABLED') AS watchdog_installed"
)
