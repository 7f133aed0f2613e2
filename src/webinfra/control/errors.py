"""The cluster side's errors, apart from `cluster.py` so that the daemon modules (daemons/), which `Cluster`
drives, can raise them without importing `Cluster` (re-exported by control/cluster.py)."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """An operation on a cluster that cannot proceed; the message is for the user."""


class UsageError(ClusterError):
    """The user named something that does not exist (host, service, value out of range): exit 2."""
