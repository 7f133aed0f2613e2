"""A new DB replica's data and replication, for `webinfra scale add-replica` (ops/scale.py).

`clone_datadir` streams a backup of a running MariaDB into the new host's datadir and prepares it;
`replicate_from` points the copy at the primary from the GTID the backup is at.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from webinfra.agent.clone import BINLOG_INFO_FILES, backup_argv, gtid_in
from webinfra.control.cluster import Cluster, Progress
from webinfra.daemons import mariadb
from webinfra.errors import ClusterError
from webinfra.runtime import CommandError, Machine
from webinfra.services.secrets import ensure_secret

CLONE_TIMEOUT = 600.0


def clone_datadir(cluster: Cluster, source: str, target: str, progress: Progress, *, owner: str | None = None) -> str:
    """Stream `mariabackup --backup` of `source`'s running MariaDB into `target`'s datadir (xbstream through a
    pipe here, between the two machines' commands: namespaces of this machine, or servers over SSH), prepare
    it; returns the GTID the copy is at. Every file operation is a command on its machine, so both kinds work;
    `owner`: the user the datadir must belong to (a server's `mysql`)."""
    src, dst = cluster.plan.host(source), cluster.plan.host(target)
    src_node, dst_node = cluster.hosts[source], cluster.hosts[target]
    datadir = mariadb.datadir(dst)
    staging = datadir.with_name(".mariadb.clone")
    work = src.dirs.tmp / f"backup-for-{target}"
    # A host not in the topology yet: nothing of it is used (a server's fresh system tables go too).
    dst_node.run(["rm", "-rf", str(staging), str(datadir)])
    dst_node.run(["mkdir", "-p", str(staging)])
    src_node.run(["rm", "-rf", str(work)])
    src_node.run(["mkdir", "-p", str(work)])
    started = time.monotonic()
    # The error log on this machine, where the user reads it (a server's log directory is not here).
    errlog = cluster.layout.cluster_dir / f"clone-{target}.log" if cluster.servers else dst.dirs.log / "clone.log"
    with open(errlog, "ab") as err:
        backup = subprocess.Popen(
            src_node.local_argv(backup_argv(mariadb.socket_path(src), work)), stdout=subprocess.PIPE, stderr=err
        )
        assert backup.stdout is not None
        unpack = subprocess.Popen(
            dst_node.local_argv(["mbstream", "-x", "-C", str(staging)]), stdin=backup.stdout, stderr=err
        )
        backup.stdout.close()
        try:
            rc_unpack = unpack.wait(timeout=CLONE_TIMEOUT)
            rc_backup = backup.wait(timeout=60)
        except subprocess.TimeoutExpired:
            backup.kill()
            unpack.kill()
            raise ClusterError(f"clone of {source} into {target}: not done after {CLONE_TIMEOUT:g}s") from None
        finally:
            src_node.run(["rm", "-rf", str(work)], check=False)
    if rc_backup != 0 or rc_unpack != 0:
        raise ClusterError(f"clone of {source}: mariabackup exited {rc_backup}, mbstream {rc_unpack} (see {errlog})")
    try:
        dst_node.run(["mariabackup", "--prepare", f"--target-dir={staging}"], timeout=CLONE_TIMEOUT)
    except CommandError as exc:
        raise ClusterError(f"mariabackup --prepare of the clone failed: {exc}") from None
    gtid = _backup_gtid(dst_node, staging)
    dst_node.run(["mv", "-T", str(staging), str(datadir)])
    if owner is not None:
        dst_node.run(["chown", "-R", f"{owner}:{owner}", str(datadir)])
        dst_node.run(["chmod", "750", str(datadir)])
    progress(target, "mariadb", f"cloned from {source} at {gtid or 'empty'} in {time.monotonic() - started:.1f}s")
    return gtid


def _backup_gtid(node: Machine, staging: Path) -> str:
    for name in BINLOG_INFO_FILES:
        text = node.read_file(staging / name)
        if text is not None:
            return gtid_in(text)
    raise ClusterError(f"the clone has no {' or '.join(BINLOG_INFO_FILES)}")


def replicate_from(cluster: Cluster, replica: str, primary: str, gtid: str) -> None:
    """Start GTID replication of `replica` from `primary`, right after `gtid` (the clone's position)."""
    topo, hp = cluster.topology, cluster.plan.host(replica)
    password = ensure_secret(cluster.layout, "db-repl")
    q = mariadb.quote
    mariadb.admin_sql(
        cluster.hosts[replica],
        hp,
        f"""
SET GLOBAL read_only = ON;
STOP SLAVE;
RESET SLAVE ALL;
SET GLOBAL gtid_slave_pos = {q(gtid)};
CHANGE MASTER TO MASTER_HOST={q(str(topo.address_of(primary)))}, MASTER_PORT={topo.db.port},
  MASTER_USER={q(mariadb.REPL_USER)}, MASTER_PASSWORD={q(password)},
  MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, {mariadb.replication_tls_clause(topo, cluster.fleet.plan_layout)};
START SLAVE;
""",
    )
    if not mariadb.wait_replicating(cluster.hosts[replica], hp, timeout=30):
        status = mariadb.facts(cluster.hosts[replica], hp)
        raise ClusterError(f"{replica}: replication from {primary} did not start ({status.last_error or 'no error'})")
