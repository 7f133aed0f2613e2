"""What a cycle knows of this host's MariaDB, in one query: `FACTS_SQL` (variables, semi-sync status, SHOW
SLAVE STATUS), and the pure parsing of its `--vertical` answer into a `LocalDb` (agent/mysql.py runs it)."""

from __future__ import annotations

from webinfra.agent import watchdog
from webinfra.agent.snapshot import LocalDb, SlaveStatus

FACTS_SQL = f"""
SELECT @@global.read_only AS read_only, @@global.server_id AS server_id,
  @@global.gtid_binlog_pos AS gtid_binlog_pos, @@global.gtid_slave_pos AS gtid_slave_pos,
  @@global.gtid_binlog_state AS gtid_binlog_state, {watchdog.INSTALLED_SQL},
  @@global.gtid_current_pos AS gtid_current_pos,
  @@global.rpl_semi_sync_master_enabled AS semi_master_enabled,
  @@global.rpl_semi_sync_master_wait_point AS semi_wait_point,
  @@global.rpl_semi_sync_master_timeout AS semi_master_timeout,
  @@global.rpl_semi_sync_slave_enabled AS semi_slave_enabled,
  (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
    WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS') AS semi_master_clients,
  (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
    WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS') AS semi_master_status,
  (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
    WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_WAIT_SESSIONS') AS semi_master_wait_sessions,
  (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
    WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_YES_TX') AS semi_master_yes_tx;
SHOW SLAVE STATUS;
"""


def parse_vertical(text: str) -> list[dict[str, str]]:
    """Rows printed by `mariadb --batch --vertical` (any number of result sets) as dicts; NULL -> ''."""
    rows: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("*****") and line.rstrip().endswith("*"):
            rows.append({})
            continue
        if not rows or ":" not in line:
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        rows[-1][key.strip()] = "" if value == "NULL" else value
    return rows


def int_or_0(text: str | None) -> int:
    """An integer the server printed; NULL (empty) or anything else unreadable counts as 0."""
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _on(text: str | None) -> bool:
    return (text or "").strip().upper() in ("1", "ON", "YES")


def local_db_from_rows(rows: list[dict[str, str]]) -> LocalDb:
    """Build `LocalDb` from the rows of `FACTS_SQL` (variables row, then the slave row if any)."""
    var = next((r for r in rows if "gtid_binlog_pos" in r), None)
    if var is None:
        return LocalDb(reachable=False, error="no answer to the facts query")
    sl = next((r for r in rows if "Slave_IO_Running" in r), None)
    slave = None
    if sl is not None:
        lag = sl.get("Seconds_Behind_Master", "")
        slave = SlaveStatus(
            master_host=sl.get("Master_Host", ""),
            master_port=int_or_0(sl.get("Master_Port")),
            io_running=sl.get("Slave_IO_Running", ""),
            sql_running=sl.get("Slave_SQL_Running", ""),
            using_gtid=sl.get("Using_Gtid", ""),
            gtid_io_pos=sl.get("Gtid_IO_Pos", ""),
            seconds_behind=float(lag) if lag else None,
            last_io_errno=int_or_0(sl.get("Last_IO_Errno")),
            last_io_error=sl.get("Last_IO_Error", ""),
            last_sql_errno=int_or_0(sl.get("Last_SQL_Errno")),
            last_sql_error=sl.get("Last_SQL_Error", ""),
        )
    return LocalDb(
        reachable=True,
        read_only=_on(var.get("read_only")),
        server_id=int_or_0(var.get("server_id")),
        gtid_binlog_pos=var.get("gtid_binlog_pos", ""),
        gtid_binlog_state=var.get("gtid_binlog_state", ""),
        watchdog_installed=int_or_0(var.get("watchdog_installed")) > 0,
        gtid_slave_pos=var.get("gtid_slave_pos", ""),
        gtid_current_pos=var.get("gtid_current_pos", ""),
        semi_master_enabled=_on(var.get("semi_master_enabled")),
        semi_master_status=_on(var.get("semi_master_status")),
        semi_master_clients=int_or_0(var.get("semi_master_clients")),
        semi_master_wait_sessions=int_or_0(var.get("semi_master_wait_sessions")),
        semi_master_yes_tx=int_or_0(var.get("semi_master_yes_tx")),
        semi_wait_point=var.get("semi_wait_point", ""),
        semi_master_timeout=int_or_0(var.get("semi_master_timeout")),
        semi_slave_enabled=_on(var.get("semi_slave_enabled")),
        slave=slave,
    )
