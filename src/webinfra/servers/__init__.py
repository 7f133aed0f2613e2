"""The SSH target: the same `ClusterPlan` deployed to Debian 12 servers through pyinfra's Python API
([machines] kind = "ssh"; docs/SERVERS.md). `units.py` is pure (packages, users, systemd units), `ops.py`
turns a plan into pyinfra operations, `run.py` connects, runs and reports, `remote.py` gives a server as a
`Machine` (runtime/ssh.py; the MariaDB bootstrap and every operation on a running cluster use it)."""

from webinfra.control.cluster import ClusterError


class ServersError(ClusterError):
    """A server could not be reached or changed: one line naming the host and the cause (exit 1)."""
