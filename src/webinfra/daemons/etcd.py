"""etcd (hosts with the `etcd` role): what `up` waits for after the etcd phase. Its command line is in the
plan (plan/daemons/etcd.py); its client, the quorum check and the auth bootstrap are control/etcd_access.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from webinfra.control import etcd_access, hastate
from webinfra.errors import ClusterError
from webinfra.plan.daemons.etcd import ETCD_ROOT_SECRET, etcd_secured
from webinfra.services.secrets import ensure_secret

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster, Progress


def after_phase(cluster: Cluster, progress: Progress, timeout: float = 30.0) -> None:
    """Quorum (`timeout` at most), then users, role and auth (idempotent; prints only what it changed). Also
    `up` on servers (servers/hardened.py), with a longer timeout."""
    if not hastate.wait_etcd_quorum(cluster, timeout=timeout):
        raise ClusterError(
            f"etcd did not reach quorum within {timeout:g}s (see its members' logs: webinfra logs HOST etcd)"
        )
    progress("etcd", "quorum", "healthy")
    if etcd_secured(cluster.topology):  # root's password: only webinfra uses it, from here (never on a host)
        ensure_secret(cluster.layout, ETCD_ROOT_SECRET)
    try:
        changes = etcd_access.ensure_auth(cluster)
    except etcd_access.EtcdAuthError as exc:
        raise ClusterError(str(exc)) from None
    for change in changes:
        progress("etcd", "auth", change)
