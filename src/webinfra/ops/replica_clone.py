"""A new DB replica's data and replication, for `webinfra scale add-replica` (ops/scale.py).

`clone_datadir` streams a backup of a running MariaDB into the new host's datadir and prepares it;
`replicate_from` points the copy at the primary from the GTID the backup is at.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from webinfra.agent.clone import backup_argv, backup_gtid
from webinfra.control.cluster import Cluster, Progress
from webinfra.daemons import mariadb
from webinfra.errors import ClusterError
from webinfra.runtime import CommandError
from webinfra.services.secrets import ensure_secret

CLONE_TIMEOUT = 600.0


def clone_datadir(cluster: Cluster, source: str, target: str, progress: Progress) -> str:
    """Stream `mariabackup --backup` of `source`'s running MariaDB into `target`'s datadir (xbstream
    through a pipe: both hosts are on this machine), prepare it; returns the GTID the copy is at."""
    src, dst = cluster.plan.host(source), cluster.plan.host(target)
    datadir = mariadb.datadir(dst)
    staging = datadir.with_name(".mariadb.clone")
    work = src.dirs.tmp / f"backup-for-{target}"
    for leftover in (staging, work, datadir):
        shutil.rmtree(leftover, ignore_errors=True)  # a host not in the topology yet: nothing of it is used
    staging.mkdir(parents=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    errlog = dst.dirs.log / "clone.log"
    with open(errlog, "ab") as err:
        backup = subprocess.Popen(
            cluster.hosts[source].local_argv(backup_argv(mariadb.socket_path(src), work)),
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert backup.stdout is not None
        unpack = subprocess.Popen(
            cluster.hosts[target].local_argv(["mbstream", "-x", "-C", str(staging)]), stdin=backup.stdout, stderr=err
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
            shutil.rmtree(work, ignore_errors=True)
    if rc_backup != 0 or rc_unpack != 0:
        raise ClusterError(f"clone of {source}: mariabackup exited {rc_backup}, mbstream {rc_unpack} (see {errlog})")
    try:
        cluster.hosts[target].run(["mariabackup", "--prepare", f"--target-dir={staging}"], timeout=CLONE_TIMEOUT)
    except CommandError as exc:
        raise ClusterError(f"mariabackup --prepare of the clone failed: {exc}") from None
    gtid = backup_gtid(staging)
    staging.rename(datadir)
    progress(target, "mariadb", f"cloned from {source} at {gtid or 'empty'} in {time.monotonic() - started:.1f}s")
    return gtid


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
  MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, {mariadb.replication_tls_clause(topo, cluster.layout)};
START SLAVE;
""",
    )
    if not mariadb.wait_replicating(cluster.hosts[replica], hp, timeout=30):
        status = mariadb.facts(cluster.hosts[replica], hp)
        raise ClusterError(f"{replica}: replication from {primary} did not start ({status.last_error or 'no error'})")
