"""etcd (hosts with the `etcd` role): what `up` waits for after the etcd phase. Its command line is in the
plan (plan/daemons/etcd.py); its client, the quorum check and the auth bootstrap are control/etcd_access.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from webinfra.control import etcd_access, hastate
from webinfra.errors import ClusterError

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster, Progress


def after_phase(cluster: Cluster, progress: Progress) -> None:
    """Quorum (30 s at most), then users, role and auth (idempotent; prints only what it changed)."""
    if not hastate.wait_etcd_quorum(cluster):
        raise ClusterError("etcd did not reach quorum within 30s (see the hosts' log/etcd.log)")
    progress("etcd", "quorum", "healthy")
    try:
        changes = etcd_access.ensure_auth(cluster)
    except etcd_access.EtcdAuthError as exc:
        raise ClusterError(str(exc)) from None
    for change in changes:
        progress("etcd", "auth", change)
