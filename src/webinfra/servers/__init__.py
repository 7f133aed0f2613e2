"""The SSH target: the same `ClusterPlan` deployed to Debian 12 servers through pyinfra's Python API
([machines] kind = "ssh"; docs/SERVERS.md). `units.py` is pure (packages, users, systemd units), `ops.py`
turns a plan into pyinfra operations, `wheels.py` builds the release's wheelhouse, `run.py` connects, runs and
reports; after the operations, `bootstrap.py` (the MariaDB bootstrap, readiness) and `hardened.py` (etcd, the
agents, the VIP) work on the servers' `Cluster`, whose machines are `SshMachine`s (control/machines.py), as
every operation on a running cluster does. `scale.py` runs `up`'s operations on some servers only (a new
server, those a topology change touches) and retires a removed one, for `webinfra scale` (ops/scale_servers.py).

May import: control, daemons, services, runtime, plan, model, state, errors; pyinfra."""

from webinfra.errors import ClusterError


class ServersError(ClusterError):
    """A server could not be reached or changed: one line naming the host and the cause (exit 1)."""
