"""MariaDB: first-time init of a datadir, bootstrap of the primary (schema, users), GTID replication of
replicas, admin SQL over the local socket as root, and the status facts `webinfra status` shows.

Root logs in only through the unix socket (unix_socket auth), so admin SQL runs on the host itself;
passwords for the site and replication users are generated secrets, sent to the client on stdin so
they never appear in a process list.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from webinfra.model import Topology
from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.runtime import CommandError, Machine
from webinfra.runtime.probe import wait_until
from webinfra.services import supervisor
from webinfra.services.secrets import ensure_secret
from webinfra.sqltext import quote  # re-exported: mariadb.quote is used across the cluster side
from webinfra.state import Layout

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster, Progress

SITE_USER = "site"
REPL_USER = "repl"
# Statements the site needs, nothing more (no DDL, no UPDATE: entries are written once, deleted whole).
SITE_PRIVILEGES = "SELECT, INSERT, DELETE"


def datadir(plan: HostPlan) -> Path:
    return plan.dirs.data / "mariadb"


def socket_path(plan: HostPlan) -> Path:
    return plan.dirs.sockets / "mariadb.sock"


def defaults_file(plan: HostPlan) -> Path:
    return plan.dirs.etc / "my.cnf"


def host_pattern(subnet: ipaddress.IPv4Network) -> str:
    """MariaDB account host for every address of the cluster subnet, e.g. '198.18.0.0/255.255.255.0'."""
    return f"{subnet.network_address}/{subnet.netmask}"


def init_datadir(host: Machine, plan: HostPlan, svc: ServiceSpec) -> None:
    """Create the system tables on first start (idempotent: an initialised datadir is left alone)."""
    ddir = datadir(plan)
    # Asked of the machine: the datadir is the host's (a server's is initialised by `up`, as user mysql).
    if host.run(["test", "-d", str(ddir / "mysql")], check=False).returncode == 0:
        return
    host.run(["mkdir", "-p", str(ddir)])
    host.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={ddir}",
            # The host's own: bootstrap servers sharing /tmp (hosts initialised side by side) delete each
            # other's temporary tables.
            f"--tmpdir={plan.dirs.tmp}",
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            "--skip-name-resolve",
        ],
        timeout=120,
    )


HOOKS = supervisor.Hooks(before_start=init_datadir)


def _local_client(plan: HostPlan) -> list[str]:
    """The `mariadb` client as root over the host's own socket. Without TLS: on a unix socket it protects
    nothing, and its handshake was most of each admin query's time (~0.2 of ~0.27 s, every `status`)."""
    return ["mariadb", f"--socket={socket_path(plan)}", "--user=root", "--connect-timeout=5", "--skip-ssl"]


def admin_sql(host: Machine, plan: HostPlan, sql: str, *, mode: str = "raw", timeout: float = 30.0) -> str:
    """Run SQL as root over the local socket. mode: "raw" (values only, tab-separated), "tsv" (with a header
    line, as `mariadb -e` prints into a pipe) or "table" (boxes, as `mariadb -e` prints on a terminal)."""
    argv = _local_client(plan)
    argv += {"raw": ["--batch", "--skip-column-names"], "tsv": ["--batch"], "table": ["--table"]}[mode]
    return host.run(argv, input=sql, timeout=timeout).stdout


def query_row(host: Machine, plan: HostPlan, sql: str) -> dict[str, str]:
    """First row of a query as {column: value} (values as text, NULL as '')."""
    rows = query_first_rows(host, plan, sql)
    return rows[0] if rows else {}


def query_first_rows(host: Machine, plan: HostPlan, sql: str) -> list[dict[str, str]]:
    """The first row of each result set of `sql` (several statements, one client run). A statement with an
    empty result prints nothing, so only the last statement may return no row."""
    out = host.run([*_local_client(plan), "--batch", "--vertical"], input=sql, timeout=15).stdout
    return first_rows(out)


def first_rows(vertical: str) -> list[dict[str, str]]:
    """Parse `mariadb --vertical` output: the first row of each result set (a set starts at "1. row")."""
    rows: list[dict[str, str]] = []
    keep = False
    for line in vertical.splitlines():
        if line.startswith("*"):
            keep = " 1. row " in line
            if keep:
                rows.append({})
            continue
        if keep:
            key, _, value = line.partition(":")
            rows[-1][key.strip()] = "" if value.strip() == "NULL" else value.strip()
    return rows


def _local_hygiene_sql() -> str:
    # Not replicated: every node removes its own anonymous and non-local root accounts.
    return """
SET SESSION sql_log_bin = 0;
DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host NOT IN ('localhost'));
FLUSH PRIVILEGES;
SET SESSION sql_log_bin = 1;
"""


def require_clause(topo: Topology) -> str:
    """Network accounts must use TLS when the topology has it (root has no network account at all)."""
    return "REQUIRE SSL" if topo.tls.enabled else "REQUIRE NONE"


def replication_tls_clause(topo: Topology, layout: Layout) -> str:
    """CHANGE MASTER options for an encrypted, verified replication connection (the source's certificate
    must chain to our CA and name the address in MASTER_HOST). The HA agent needs the same options."""
    if not topo.tls.enabled:
        return "MASTER_SSL=0, MASTER_SSL_VERIFY_SERVER_CERT=0"
    return f"MASTER_SSL=1, MASTER_SSL_CA={quote(str(layout.ca_cert))}, MASTER_SSL_VERIFY_SERVER_CERT=1"


def bootstrap_primary(host: Machine, plan: HostPlan, topo: Topology, layout: Layout) -> None:
    """Schema, site user, replication user. Idempotent; replicated to every replica through the binlog."""
    site_pw = ensure_secret(layout, "db-site")
    repl_pw = ensure_secret(layout, "db-repl")
    who = host_pattern(topo.network.subnet)
    db = topo.db.database
    tls = require_clause(topo)
    sql = f"""
{_local_hygiene_sql()}
CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4;
USE `{db}`;
{_schema_sql()}
CREATE USER IF NOT EXISTS {quote(SITE_USER)}@{quote(who)} IDENTIFIED BY {quote(site_pw)} {tls};
ALTER USER {quote(SITE_USER)}@{quote(who)} IDENTIFIED BY {quote(site_pw)} {tls};
GRANT {SITE_PRIVILEGES} ON `{db}`.* TO {quote(SITE_USER)}@{quote(who)};
CREATE USER IF NOT EXISTS {quote(REPL_USER)}@{quote(who)} IDENTIFIED BY {quote(repl_pw)} {tls};
ALTER USER {quote(REPL_USER)}@{quote(who)} IDENTIFIED BY {quote(repl_pw)} {tls};
GRANT REPLICATION SLAVE ON *.* TO {quote(REPL_USER)}@{quote(who)};
"""
    admin_sql(host, plan, sql)


def _schema_sql() -> str:
    # webinfra.site's package imports its pydantic config model (~0.01-0.05 s): only the bootstrap needs it,
    # not every command that imports the daemons' registry (`status`).
    from webinfra.site import schema_sql

    return schema_sql()


def ensure_schema(host: Machine, plan: HostPlan, topo: Topology) -> None:
    """The site's schema on the primary `host` (replicated from there). Every statement is CREATE ... IF NOT
    EXISTS, so this only adds what a newer version of the schema has (the HA bootstrap runs once)."""
    admin_sql(host, plan, f"USE `{topo.db.database}`;\n{_schema_sql()}")


EXPORTER_USER = "exporter"
# What mysqld_exporter's collectors read (status, variables, replication state), and no data.
EXPORTER_PRIVILEGES = "PROCESS, REPLICATION CLIENT, REPLICA MONITOR"


def ensure_exporter_user(host: Machine, plan: HostPlan, password: str) -> None:
    """The monitoring account of this node: `exporter`@`localhost` (the local socket only), at most 3
    connections. Made on each node with the binlog off, like the hygiene above: an account written on a
    replica would otherwise be an errant transaction, and monitoring may be added to a running cluster
    (or an HA one, whose bootstrap runs once). Idempotent."""
    user = f"{quote(EXPORTER_USER)}@'localhost'"
    admin_sql(
        host,
        plan,
        f"""
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {quote(password)} WITH MAX_USER_CONNECTIONS 3;
ALTER USER {user} IDENTIFIED BY {quote(password)} WITH MAX_USER_CONNECTIONS 3;
GRANT {EXPORTER_PRIVILEGES} ON *.* TO {user};
SET SESSION sql_log_bin = 1;
""",
    )


def setup_replica(host: Machine, plan: HostPlan, topo: Topology, layout: Layout, source: str) -> None:
    """Point this replica at `source` (an address) with GTID replication, unless it already replicates
    (then only its TLS settings are brought in line with the topology)."""
    admin_sql(host, plan, _local_hygiene_sql())
    status = query_row(host, plan, "SHOW SLAVE STATUS")
    tls = replication_tls_clause(topo, layout)
    if not status.get("Master_Host"):
        repl_pw = ensure_secret(layout, "db-repl")
        admin_sql(
            host,
            plan,
            f"""
CHANGE MASTER TO MASTER_HOST={quote(source)}, MASTER_PORT={topo.db.port},
  MASTER_USER={quote(REPL_USER)}, MASTER_PASSWORD={quote(repl_pw)},
  MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, {tls};
""",
        )
    elif (status.get("Master_SSL_Allowed") == "Yes") != topo.tls.enabled:
        admin_sql(host, plan, f"STOP SLAVE;\nCHANGE MASTER TO {tls};")
    admin_sql(host, plan, "START SLAVE;")


def wait_caught_up(host: Machine, plan: HostPlan, target_gtid: str, timeout: float = 30.0) -> None:
    """Wait until this replica has applied `target_gtid` (raise with its replication error otherwise)."""
    if not target_gtid:
        return
    out = admin_sql(host, plan, f"SELECT MASTER_GTID_WAIT({quote(target_gtid)}, {timeout:g});", timeout=timeout + 10)
    if out.strip() != "0":
        status = query_row(host, plan, "SHOW SLAVE STATUS")
        raise supervisor.ServiceError(
            f"{plan.name}: replica did not catch up to {target_gtid} within {timeout:g}s "
            f"(IO={status.get('Slave_IO_Running')}, SQL={status.get('Slave_SQL_Running')}, "
            f"error={status.get('Last_IO_Error') or status.get('Last_SQL_Error') or 'none'})"
        )


def gtid_binlog_pos(host: Machine, plan: HostPlan) -> str:
    return admin_sql(host, plan, "SELECT @@GLOBAL.gtid_binlog_pos;").strip()


@dataclass(frozen=True)
class DbFacts:
    """What `status` shows of one MariaDB node."""

    reachable: bool
    read_only: bool = False
    gtid_current_pos: str = ""
    replicating_from: str = ""
    io_running: str = ""
    sql_running: str = ""
    lag_seconds: float | None = None
    last_error: str = ""


def facts(host: Machine, plan: HostPlan) -> DbFacts:
    try:
        # One client run for both (each run is a process and a connection): the SELECT always has a row.
        rows = query_first_rows(
            host, plan, "SELECT @@GLOBAL.read_only AS ro, @@GLOBAL.gtid_current_pos AS gtid;\nSHOW SLAVE STATUS;"
        )
    except CommandError:
        return DbFacts(reachable=False)
    g, s = rows[0] if rows else {}, rows[1] if len(rows) > 1 else {}
    lag = s.get("Seconds_Behind_Master", "")
    return DbFacts(
        reachable=True,
        read_only=g.get("ro") == "1",
        gtid_current_pos=g.get("gtid", ""),
        replicating_from=s.get("Master_Host", ""),
        io_running=s.get("Slave_IO_Running", ""),
        sql_running=s.get("Slave_SQL_Running", ""),
        lag_seconds=float(lag) if lag not in ("", None) else None,
        last_error=s.get("Last_IO_Error") or s.get("Last_SQL_Error") or "",
    )


def wait_replicating(host: Machine, plan: HostPlan, timeout: float = 30.0) -> bool:
    def ok() -> bool:
        f = facts(host, plan)
        return f.io_running == "Yes" and f.sql_running == "Yes"

    return wait_until(ok, timeout, interval=0.1)


# ---- what `up` does around the mariadb phase ----


def after_start(cluster: Cluster, plan: HostPlan, action: str, progress: Progress) -> None:
    """Per node, right after its start: the primary gets its schema and users; a replica is pointed at the
    primary and waits until it has caught up. With HA only until the `db-bootstrapped` marker exists: from
    then on roles are the agents' business."""
    topo = cluster.topology
    host = cluster.hosts[plan.name]
    primary = topo.db_primary
    assert primary is not None
    if topo.ha and cluster.layout.db_bootstrapped_marker.exists():
        return
    if plan.name == primary.name:
        bootstrap_primary(host, plan, topo, cluster.layout)
        progress(plan.name, "mariadb", "primary ready")
        return
    setup_replica(host, plan, topo, cluster.layout, str(topo.address_of(primary.name)))
    primary_plan = cluster.plan.host(primary.name)
    if supervisor.running(cluster.hosts[primary.name], primary_plan.service("mariadb")):
        target = gtid_binlog_pos(cluster.hosts[primary.name], primary_plan)
        wait_caught_up(host, plan, target)
    progress(plan.name, "mariadb", "replica in sync")


def after_phase(cluster: Cluster, progress: Progress) -> None:
    """With HA the bootstrap runs once: the marker says it ran."""
    if cluster.topology.ha:
        cluster.layout.db_bootstrapped_marker.touch()
