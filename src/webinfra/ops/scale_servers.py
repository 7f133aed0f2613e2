"""`webinfra scale` on servers (`[machines] kind = "ssh"`): the same operations as ops/scale.py, where a host is
a server given by its SSH address instead of a namespace made here.

- `add_server`: the topology gets the host and its `[machines.hosts.<name>]` entry; the new server and every
  server the change touches must answer over SSH before anything changes (else one line, exit 1). The
  cluster's current release is shipped to it (services/server_releases.py), then pyinfra runs `up`'s
  operations on it (packages, users, units, configs, the release venv, its services started) and on the
  touched servers (their firewalls; the LBs' haproxy.cfg written without a reload). Once its app answers
  the smoke check, the LBs get it through the runtime API (no reload) and save their state.
- `remove_server`: drained out of every LB (then `del server`), or out of the nginx upstreams for an
  app-only server; its units stopped and disabled (its data is kept); then the others' configs.
- `remove_replica`: out of the DB routing first (as on emulated hosts), its units stopped, then the others.
- `add_replica`: the new server provisioned with its services held, its datadir cloned with mariabackup from
  a running node (xbstream piped through this machine between the two servers' SSH commands; mariabackup
  installed where missing), its MariaDB started replicating from the primary, caught up; then the apps'
  DB routing learns it (site.json: each app restarted out of rotation; HA: the dbproxies reloaded).

A failed add is undone as on emulated hosts: out of the LBs, its units stopped, the touched servers' files
as they were, both topology files unchanged.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from webinfra.control import events, hastate
from webinfra.control.cluster import Cluster, Progress
from webinfra.daemons import haproxy, registry
from webinfra.daemons.registry import Refresh
from webinfra.errors import UsageError
from webinfra.model import Role
from webinfra.model.edit import add_host, remove_host
from webinfra.model.machines import parse_ssh_address
from webinfra.ops import deploy, drain, scale
from webinfra.ops.replica_clone import clone_datadir
from webinfra.plan.spec import AppRelease, ClusterPlan
from webinfra.servers import scale as servers
from webinfra.servers import units
from webinfra.servers.ops import APT_UPDATE
from webinfra.services import releases, supervisor

BACKUP_PACKAGE = "mariadb-backup"
HEALTH_TIMEOUT = 60.0  # a new server's app: the first start of a release venv on a cold cache is slow


def _written_only(plan: ClusterPlan, hosts: set[str]) -> dict[str, frozenset[str]]:
    """Per touched host, the services pyinfra must not reload or restart: all but those whose registry entry
    says a plain reload or restart is invisible to clients (`Refresh.APPLY`)."""
    return {
        hp.name: frozenset(s.name for s in hp.services if registry.daemon(s.name).refresh is not Refresh.APPLY)
        for hp in plan.hosts
        if hp.name in hosts
    }


def _server_address(address: str | None, ssh: str | None) -> str | None:
    """The new server's address in the subnet: `--address`, else the host of `--ssh` when it is an IPv4 one."""
    if address is not None or ssh is None:
        return address
    target = parse_ssh_address(ssh)
    if target is None:
        raise UsageError(f"--ssh {ssh}: must be user@host:port (user, port optional)")
    try:
        return str(ipaddress.IPv4Address(target.host))
    except ValueError:
        raise UsageError(f"--ssh {ssh} names no IPv4 address: give the server's address with --address") from None


def _ship_current(new: Cluster, name: str, release: AppRelease, progress: Progress) -> None:
    """The release the other app servers run, on the new server and `current` (its app starts on it)."""
    if release.app_dir is None:
        return  # the installed code base: the release venv's own site
    code = new.fleet.code
    source = code.source(name, release.version)
    if not source.is_dir():
        raise UsageError(f"release {release.version} runs on the app servers but its code is not here ({source})")
    shipped = code.ship(name, new.hosts[name], source, release.version)
    code.activate(name, new.hosts[name], shipped.release)
    releases.record(new.layout, name, shipped.release)
    progress(name, "release", f"{release.version} shipped")


def _after(new: Cluster, touched: dict[str, set[str]], progress: Progress) -> None:
    """Each service of a touched server whose config pyinfra wrote without a reload or restart, applied the
    way clients do not see (as ops/refresh.py does on emulated hosts)."""
    leader = hastate.current_primary(new) if new.topology.ha else None
    for hp, svc in new.plan.start_order():
        if svc.name not in touched.get(hp.name, set()):
            continue
        node, daemon = new.hosts[hp.name], registry.daemon(svc.name)
        how = daemon.refresh
        if how is Refresh.LEADER_KEEPS:
            how = Refresh.NEXT_START if leader is None or hp.name == leader else Refresh.RESTART
        if how is Refresh.APPLY:
            continue  # pyinfra reloaded or restarted it
        if how is Refresh.LIVE:
            if daemon.hooks.before_reload is not None:  # what a reload would keep (HAProxy: its state)
                daemon.hooks.before_reload(node, hp, svc)
            progress(hp.name, svc.name, "config written (changed live; no reload)")
        elif how is Refresh.NEXT_START or not supervisor.running(node, svc):
            progress(hp.name, svc.name, "config written (read at its next start)")
        elif how is Refresh.CYCLE:
            deploy.cycle(new, hp.name, deploy.current_releases(new)[hp.name], progress=progress)
        else:
            supervisor.stop(node, hp, svc)
            progress(hp.name, svc.name, supervisor.start(node, hp, svc))


def _with_new_server(
    cluster: Cluster,
    topology_file: str | Path | None,
    name: str,
    roles: list[str],
    address: str | None,
    ssh: str | None,
    command: str,
    **spec: Any,
) -> tuple[str, Cluster, dict[str, set[str]]]:
    """The edited topology's text, the cluster with the new server, and the servers the change touches."""
    text = scale.base_text(cluster, topology_file)
    at = _server_address(address, ssh)
    note = f"{name}: added by `webinfra scale {command}`"
    new_text, topo = scale.edit(lambda: add_host(text, name, roles, address=at, ssh=ssh, note=note, **spec))
    new = Cluster(topo, cluster.layout, new_text)
    return new_text, new, servers.touched(cluster.plan, new.plan)


def add_server(
    cluster: Cluster,
    name: str,
    weight: int | None,
    *,
    address: str | None,
    ssh: str | None,
    topology_file: str | Path | None,
    progress: Progress,
) -> str:
    new_text, new, touched = _with_new_server(
        cluster, topology_file, name, ["web", "app"], address, ssh, "add-server", weight=weight
    )
    topo, at = new.topology, new.topology.address_of(name)
    involved = frozenset({name, *touched})
    release = scale.current_release(cluster)
    with deploy.operation_lock(cluster, "scale"):
        servers.reachable(topo, involved, progress)  # nothing changed yet: an unreachable server is one line
        events.record(cluster.layout, "scale_started", name, "add-server")
        with _undone_on_failure(cluster, new, name, touched, progress):
            _ship_current(new, name, release, progress)
            new = Cluster(topo, cluster.layout, new_text)  # its plan names that release
            servers.apply(topo, cluster.layout, involved, progress, quiet=_written_only(new.plan, set(touched)))
            hp = new.plan.host(name)
            deploy._wait_healthy(new, name, hp.service("app"), release.version, HEALTH_TIMEOUT)
            deploy._smoke(new, name, release.version)
            progress(name, "app", f"smoke check passed ({release.version})")
            drain.add_to_lbs(new, name, progress)
            _after(new, touched, progress)
        scale.save_topology(cluster, new_text, topology_file)
        events.record(cluster.layout, "server_added", name, f"{at}, weight {topo.host(name).lb_weight}")
    return str(topo.address_of(name))


@contextlib.contextmanager
def _undone_on_failure(
    cluster: Cluster, new: Cluster, name: str, touched: dict[str, set[str]], progress: Progress
) -> Iterator[None]:
    try:
        yield
    except BaseException:
        _undo_add(cluster, new, name, touched, progress)
        raise


def _undo_add(cluster: Cluster, new: Cluster, name: str, touched: dict[str, set[str]], progress: Progress) -> None:
    """Best effort after a failed add: out of the LBs, its units stopped, the touched servers' files as they
    were (`cluster`: the topology before the add, `new`: with the new server)."""
    scale.out_of_lbs(cluster, name)
    with contextlib.suppress(Exception):
        servers.retire(new.topology, cluster.layout, frozenset({name}), progress)
    with contextlib.suppress(Exception):
        _update(cluster, touched, progress)
    releases.forget(cluster.layout, name)
    events.record(cluster.layout, "scale_failed", name, "undone")


def remove_server(cluster: Cluster, name: str, *, topology_file: str | Path | None, progress: Progress) -> None:
    spec = scale.removable_server(cluster, name)
    new_text, new, touched = _without_server(cluster, topology_file, name)
    with deploy.operation_lock(cluster, "scale"):
        servers.reachable(cluster.topology, frozenset({name, *touched}), progress)
        events.record(cluster.layout, "scale_started", name, "remove-server")
        if spec.has(Role.WEB):
            drain.remove_from_lbs(cluster, name, progress)
        else:
            drain.take_out_app(cluster, name, progress)
        servers.retire(cluster.topology, cluster.layout, frozenset({name}), progress)
        _update(new, touched, progress)
        releases.forget(cluster.layout, name)
        weights = cluster.weight_overrides()
        if weights.pop(name, None) is not None:  # a live weight must not outlive its server
            haproxy.save_weights(cluster.layout, weights)
        scale.save_topology(cluster, new_text, topology_file)
        events.record(cluster.layout, "server_removed", name, "drained, stopped, disabled")


def _without_server(
    cluster: Cluster, topology_file: str | Path | None, name: str
) -> tuple[str, Cluster, dict[str, set[str]]]:
    """The edited topology's text, the cluster without `name`, and the servers its removal touches."""
    text = scale.base_text(cluster, topology_file)
    new_text, topo = scale.edit(lambda: remove_host(text, name))
    new = Cluster(topo, cluster.layout, new_text)
    return new_text, new, servers.touched(cluster.plan, new.plan)


def _update(new: Cluster, touched: dict[str, set[str]], progress: Progress) -> None:
    """The touched servers' configs as `new` renders them, each applied the way clients do not see."""
    if touched:
        quiet = _written_only(new.plan, set(touched))
        servers.apply(new.topology, new.layout, frozenset(touched), progress, quiet=quiet)
        _after(new, touched, progress)


def remove_replica(cluster: Cluster, name: str, *, topology_file: str | Path | None, progress: Progress) -> None:
    primary = scale.removable_replica(cluster, name)
    new_text, new, touched = _without_server(cluster, topology_file, name)
    with deploy.operation_lock(cluster, "scale"):
        servers.reachable(cluster.topology, frozenset({name, *touched}), progress)
        events.record(cluster.layout, "scale_started", name, f"remove-replica (primary {primary})")
        if cluster.topology.ha:
            scale.out_of_dbproxies(cluster, name, progress)
        _update(new, touched, progress)  # the apps' DB routing without it (site.json: drained restarts)
        servers.retire(cluster.topology, cluster.layout, frozenset({name}), progress)
        scale.save_topology(cluster, new_text, topology_file)
        events.record(cluster.layout, "replica_removed", name, "out of the DB routing, stopped, disabled")


def add_replica(
    cluster: Cluster,
    name: str,
    source: str | None,
    *,
    address: str | None,
    ssh: str | None,
    topology_file: str | Path | None,
    progress: Progress,
) -> str:
    new_text, new, touched = _with_new_server(
        cluster, topology_file, name, ["db"], address, ssh, "add-replica", db_role="replica"
    )
    topo = new.topology
    primary, source = scale.clone_source(cluster, source)
    involved = frozenset({name, *touched})
    with deploy.operation_lock(cluster, "scale"):
        servers.reachable(topo, involved | {source}, progress)
        events.record(cluster.layout, "scale_started", name, f"add-replica from {source}")
        with _undone_on_failure(cluster, new, name, touched, progress):
            _ensure_mariabackup(new, [source, name], progress)
            # Its services' units are written but held (not started): its MariaDB starts on the clone.
            held = frozenset(s.name for s in new.plan.host(name).services)
            quiet = _written_only(new.plan, set(touched))
            servers.apply(topo, cluster.layout, involved, progress, quiet=quiet, hold=held)
            gtid = clone_datadir(new, source, name, progress, owner=units.USER_OF["mariadb"])
            scale.start_replica(new, name, primary, gtid, progress)
            new.start(name, progress=progress)  # the agent (HA)
            units_of = [units.unit_name(s) for s in held]
            new.hosts[name].run(["systemctl", "enable", "--quiet", *units_of])  # and at every boot
            _after(new, touched, progress)  # the apps' DB routing learns it
        scale.save_topology(cluster, new_text, topology_file)
        events.record(cluster.layout, "replica_added", name, f"cloned from {source} at {gtid or 'empty'}")
    return gtid


def _ensure_mariabackup(cluster: Cluster, hosts: list[str], progress: Progress) -> None:
    """mariabackup on the clone's two ends (a design without the HA agents does not install it)."""
    for name in hosts:
        node = cluster.hosts[name]
        if node.run(["sh", "-c", "command -v mariabackup"], check=False).returncode == 0:
            continue
        # APT_UPDATE ends with `exit`: a subshell of its own.
        install = f"({APT_UPDATE}) && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {BACKUP_PACKAGE}"
        node.run(["sh", "-c", install], timeout=600)
        progress(name, "packages", "mariadb-backup installed (for the clone)")
