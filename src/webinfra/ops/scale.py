"""`webinfra scale`: add and remove app servers and DB replicas while the site serves.

Every command edits the topology (model/edit.py keeps the file's comments), acts, then writes the new
text to the cluster's stored topology.toml and to the user's file (`-f`). A failure part-way undoes what
it can and leaves both files as they were.

- `add_server`: a new host (web + app, the cluster's current release, in HA its dbproxy too) is created
  and started; every host's firewall is re-applied (it is derived from the topology); the server is added
  to every LB through the runtime API (a dynamic server: no reload) and the new haproxy.cfg is written
  without a reload, so the next reload or restart keeps it.
- `remove_server`: drained out of every LB (then `del server`), or out of the nginx upstreams for an
  app-only host; then its services stop and the host is removed.
- `add_replica`: a new DB host, cloned with mariabackup from a running primary or replica (streamed
  between the two hosts), prepared, started, replicating with GTID from the primary (TLS when the topology
  has it); with HA its agent starts too. Then the apps' DB routing learns it (ops/refresh.py): with HA the
  dbproxy configs are rewritten and reloaded (invisible to clients); in the seed design site.json changes
  and the apps restart one at a time, each out of rotation (deploy.cycle).
- `remove_replica`: out of the routing first (HA: MAINT + sessions cut in every dbproxy, then the new
  config), then stopped and removed.
"""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from webinfra.control import events, hastate
from webinfra.control.cluster import Cluster, Progress, require_root
from webinfra.daemons import haproxy, mariadb
from webinfra.daemons.haproxy import HaproxyRuntime, RuntimeApiError
from webinfra.errors import ClusterError, UsageError
from webinfra.model import HostSpec, Role, Topology, parse_topology
from webinfra.model.edit import EditError, add_host, remove_host
from webinfra.ops import deploy, drain
from webinfra.ops.refresh import apply_firewalls, refresh
from webinfra.ops.replica_clone import clone_datadir, replicate_from
from webinfra.plan.spec import AppRelease
from webinfra.services import releases, supervisor


def _quiet(host: str, what: str, action: str) -> None:
    pass


# ---- the topology file ----


def base_text(cluster: Cluster, topology_file: str | Path | None) -> str:
    """The text to edit: the user's file (which must say what the running cluster was brought up with),
    else the stored copy."""
    stored = cluster.layout.topology_file
    # What `up` leaves: emulated, the network it made; on servers, the release venv it installed.
    made = cluster.layout.server_python_file if cluster.servers else cluster.layout.network_file
    if not stored.exists() or not made.exists():
        raise UsageError(f"cluster {cluster.topology.name} is not up: run `webinfra up` first")
    if topology_file is None:
        return stored.read_text()
    text = Path(topology_file).read_text()
    if parse_topology(text, str(topology_file)) != parse_topology(stored.read_text(), str(stored)):
        raise UsageError(f"{topology_file} differs from the topology the cluster runs: `webinfra up -f` it first")
    return text


def edit(fn: Callable[[], tuple[str, Topology]]) -> tuple[str, Topology]:
    try:
        return fn()
    except EditError as exc:
        raise UsageError(str(exc)) from None


def save_topology(cluster: Cluster, text: str, topology_file: str | Path | None) -> None:
    cluster.layout.topology_file.write_text(text)
    if topology_file is not None:
        Path(topology_file).write_text(text)


# ---- hosts ----


def _create_host(new: Cluster, name: str, progress: Progress) -> None:
    link = next(link for link in new.network.links if link.host == name)
    new.network.ensure_bridge()
    new.network.ensure_host(link)
    new.network.save(new.layout.network_file)
    for d in new.layout.host(name).all():
        d.mkdir(parents=True, exist_ok=True)
    new.hosts[name].connect()
    progress(name, "host", f"created ({link.address})")


def _bring_in(new: Cluster, name: str, new_text: str, progress: Progress) -> None:
    """A new host up to where its services can start: created, in the stored topology, its certificates
    issued, and every host's firewall re-applied (the others admit it)."""
    _create_host(new, name, progress)
    new.layout.topology_file.write_text(new_text)
    new._ensure_pki(progress)
    apply_firewalls(new, progress)


def _remove_host(cluster: Cluster, name: str, progress: Progress, *, keep_network: Cluster | None = None) -> None:
    """Stop every service of `name` (a host of `cluster`) and remove it: namespace, veth, state, sockets."""
    cluster.stop(name, progress=progress)
    link = next(link for link in cluster.network.links if link.host == name)
    cluster.hosts[name].disconnect()
    cluster.network.remove_host(link)
    if keep_network is not None:
        keep_network.network.save(cluster.layout.network_file)
    dirs = cluster.layout.host(name)
    shutil.rmtree(dirs.root, ignore_errors=True)
    shutil.rmtree(dirs.sockets, ignore_errors=True)
    releases.forget(cluster.layout, name)
    progress(name, "host", "removed")


def current_release(cluster: Cluster) -> AppRelease:
    """What a new app host should run: the release most app hosts run."""
    current = deploy.current_releases(cluster)
    if not current:
        return AppRelease(cluster.topology.app.version)
    version, _ = Counter(r.version for r in current.values()).most_common(1)[0]
    return next(r for r in current.values() if r.version == version)


# ---- app servers ----


def add_server(
    cluster: Cluster,
    name: str,
    weight: int | None = None,
    *,
    address: str | None = None,
    ssh: str | None = None,
    topology_file: str | Path | None = None,
    progress: Progress = _quiet,
) -> str:
    """Add web + app server `name` (at `address`; on servers the one reached over `ssh`) and put it into every
    LB live. Returns its address."""
    if cluster.servers:
        from webinfra.ops import scale_servers

        return scale_servers.add_server(
            cluster, name, weight, address=address, ssh=ssh, topology_file=topology_file, progress=progress
        )
    text = base_text(cluster, topology_file)
    note = f"{name}: added by `webinfra scale add-server`"
    new_text, topo = edit(
        lambda: add_host(text, name, ["web", "app"], weight=weight, address=address, ssh=ssh, note=note)
    )
    require_root()
    new = Cluster(topo, cluster.layout, new_text)
    release = current_release(cluster)
    with deploy.operation_lock(cluster, "scale"):
        events.record(cluster.layout, "scale_started", name, "add-server")
        with _undone_on_failure(cluster, new, name, text, progress):
            if release.app_dir is not None:
                dest = releases.release_dir(cluster.layout.host(name), release.version)
                releases.copy_release(release.app_dir, dest)
                releases.record(cluster.layout, name, AppRelease(release.version, dest))
                new = Cluster(topo, cluster.layout, new_text)  # its plan runs that release
            _bring_in(new, name, new_text, progress)
            new.start(name, progress=progress)
            deploy._smoke(new, name, release.version)
            progress(name, "app", f"smoke check passed ({release.version})")
            drain.add_to_lbs(new, name, progress)
        refresh(new, {name}, progress)
        save_topology(cluster, new_text, topology_file)
        address = str(topo.address_of(name))
        events.record(cluster.layout, "server_added", name, f"{address}, weight {topo.host(name).lb_weight}")
    return address


def remove_server(
    cluster: Cluster, name: str, *, topology_file: str | Path | None = None, progress: Progress = _quiet
) -> None:
    """Drain `name` (a web and/or app host) out of rotation, then stop and remove it."""
    if cluster.servers:
        from webinfra.ops import scale_servers  # it builds on this module's helpers

        return scale_servers.remove_server(cluster, name, topology_file=topology_file, progress=progress)
    spec = removable_server(cluster, name)
    text = base_text(cluster, topology_file)
    new_text, topo = edit(lambda: remove_host(text, name))
    require_root()
    new = Cluster(topo, cluster.layout, new_text)
    with deploy.operation_lock(cluster, "scale"):
        events.record(cluster.layout, "scale_started", name, "remove-server")
        if spec.has(Role.WEB):
            drain.remove_from_lbs(cluster, name, progress)
        else:
            drain.take_out_app(cluster, name, progress)
        refresh(new, set(), progress)  # new haproxy.cfg / nginx upstreams without it, firewalls
        _remove_host(cluster, name, progress, keep_network=new)
        weights = cluster.weight_overrides()
        if weights.pop(name, None) is not None:  # a live weight must not outlive its server
            haproxy.save_weights(cluster.layout, weights)
        save_topology(cluster, new_text, topology_file)
        events.record(cluster.layout, "server_removed", name, "drained, stopped, removed")


def removable_server(cluster: Cluster, name: str) -> HostSpec:
    spec = _known(cluster, name)
    if not set(spec.roles) <= {Role.WEB, Role.APP}:
        other = ", ".join(r.value for r in spec.roles if r not in (Role.WEB, Role.APP))
        raise UsageError(f"{name} also has the role(s) {other}: remove-server removes web/app hosts only")
    return spec


def removable_replica(cluster: Cluster, name: str) -> str:
    """Checks `name` is a DB-only replica; returns the primary."""
    spec = _known(cluster, name)
    if tuple(spec.roles) != (Role.DB,):
        raise UsageError(f"{name} has the roles {', '.join(spec.roles)}: remove-replica removes DB-only hosts only")
    primary = _primary(cluster)
    if name == primary:
        raise UsageError(f"{name} is the primary: switch over first (`webinfra switchover`)")
    return primary


def _known(cluster: Cluster, name: str) -> HostSpec:
    try:
        return cluster.topology.host(name)
    except KeyError:
        names = ", ".join(h.name for h in cluster.topology.hosts)
        raise UsageError(f"unknown host {name!r} (hosts: {names})") from None


@contextlib.contextmanager
def _undone_on_failure(cluster: Cluster, new: Cluster, name: str, old_text: str, progress: Progress) -> Iterator[None]:
    """An add either completes or, on any failure (an interrupt too), is undone before the error goes on."""
    try:
        yield
    except BaseException:
        _undo_add(cluster, new, name, old_text, progress)
        raise


def _undo_add(cluster: Cluster, new: Cluster, name: str, old_text: str, progress: Progress) -> None:
    """Best effort after a failed add: out of the LBs, host removed, files as they were."""
    out_of_lbs(cluster, name)
    with contextlib.suppress(Exception):
        _remove_host(new, name, progress, keep_network=cluster)
    cluster.layout.topology_file.write_text(old_text)
    with contextlib.suppress(Exception):
        apply_firewalls(cluster, progress)
    events.record(cluster.layout, "scale_failed", name, "undone")


def out_of_lbs(cluster: Cluster, name: str) -> None:
    """Best effort: a server added live deleted from every running LB again."""
    with contextlib.suppress(Exception):
        for lb in drain.running_lbs(cluster):
            for stat in lb.runtime.servers():
                if stat.name == name and stat.backend == "site":
                    lb.runtime.set_state("site", name, "maint")
                    lb.runtime.del_server("site", name)


# ---- replicas ----


def add_replica(
    cluster: Cluster,
    name: str,
    source: str | None = None,
    *,
    address: str | None = None,
    ssh: str | None = None,
    topology_file: str | Path | None = None,
    progress: Progress = _quiet,
) -> str:
    """Add DB replica `name` (at `address`; on servers the one reached over `ssh`), cloned from `source`
    (default: the primary). Returns the GTID it started at."""
    if cluster.servers:
        from webinfra.ops import scale_servers

        return scale_servers.add_replica(
            cluster, name, source, address=address, ssh=ssh, topology_file=topology_file, progress=progress
        )
    text = base_text(cluster, topology_file)
    note = f"{name}: added by `webinfra scale add-replica`"
    new_text, topo = edit(lambda: add_host(text, name, ["db"], db_role="replica", address=address, ssh=ssh, note=note))
    require_root()
    primary, source = clone_source(cluster, source)
    new = Cluster(topo, cluster.layout, new_text)
    with deploy.operation_lock(cluster, "scale"):
        events.record(cluster.layout, "scale_started", name, f"add-replica from {source}")
        with _undone_on_failure(cluster, new, name, text, progress):
            _bring_in(new, name, new_text, progress)  # the primary's firewall accepts it before it connects
            gtid = clone_datadir(new, source, name, progress)
            start_replica(new, name, primary, gtid, progress)
            new.start(name, progress=progress)  # the agent (HA) and any exporters
        refresh(new, {name}, progress)  # the apps' DB routing learns it
        save_topology(cluster, new_text, topology_file)
        events.record(cluster.layout, "replica_added", name, f"cloned from {source} at {gtid or 'empty'}")
    return gtid


def clone_source(cluster: Cluster, source: str | None) -> tuple[str, str]:
    """(the primary, the running DB host to clone from: `source`, default the primary)."""
    primary = _primary(cluster)
    source = source or primary
    if source not in {h.name for h in cluster.topology.with_role(Role.DB)}:
        raise UsageError(f"--from {source!r}: not a DB host")
    if not supervisor.running(cluster.hosts[source], cluster.plan.host(source).service("mariadb")):
        raise ClusterError(f"MariaDB on {source} is not running: cannot clone from it")
    return primary, source


def start_replica(new: Cluster, name: str, primary: str, gtid: str, progress: Progress) -> None:
    """The cloned MariaDB started, replicating from `primary` after `gtid`, caught up."""
    hp = new.plan.host(name)
    node = new.hosts[name]
    supervisor.start(node, hp, hp.service("mariadb"))
    replicate_from(new, name, primary, gtid)
    target = mariadb.gtid_binlog_pos(new.hosts[primary], new.plan.host(primary))
    mariadb.wait_caught_up(node, hp, target, timeout=60)
    progress(name, "mariadb", f"replicating from {primary}, caught up to {target or 'empty'}")


def remove_replica(
    cluster: Cluster, name: str, *, topology_file: str | Path | None = None, progress: Progress = _quiet
) -> None:
    """Take replica `name` out of the apps' DB routing, then stop and remove it."""
    if cluster.servers:
        from webinfra.ops import scale_servers

        return scale_servers.remove_replica(cluster, name, topology_file=topology_file, progress=progress)
    removable_replica(cluster, name)
    text = base_text(cluster, topology_file)
    new_text, topo = edit(lambda: remove_host(text, name))
    require_root()
    new = Cluster(topo, cluster.layout, new_text)
    with deploy.operation_lock(cluster, "scale"):
        events.record(cluster.layout, "scale_started", name, "remove-replica")
        if cluster.topology.ha:
            out_of_dbproxies(cluster, name, progress)
        refresh(new, set(), progress)  # site.json (rolling) or dbproxy configs without it
        _remove_host(cluster, name, progress, keep_network=new)
        save_topology(cluster, new_text, topology_file)
        events.record(cluster.layout, "replica_removed", name, "out of the DB routing, stopped, removed")


def _primary(cluster: Cluster) -> str:
    if cluster.topology.ha:
        leader = hastate.current_primary(cluster)
        if leader is None:
            raise ClusterError("no single writable primary right now (see `webinfra status`)")
        return leader
    primary = cluster.topology.db_primary
    assert primary is not None
    return primary.name


def out_of_dbproxies(cluster: Cluster, name: str, progress: Progress) -> None:
    """MAINT for `name` in every app host's DB routing, its sessions cut (the app retries a broken pooled
    connection once on a fresh one, which goes elsewhere)."""
    for app in cluster.topology.with_role(Role.APP):
        rt = HaproxyRuntime(cluster.hosts[app.name], cluster.plan.host(app.name).dirs.sockets / "dbproxy.sock")
        try:
            for listen in ("writer", "reader"):
                rt.set_state(listen, name, "maint")
                rt.command(f"shutdown sessions server {listen}/{name}")
        except RuntimeApiError as exc:
            progress(app.name, "dbproxy", f"not reachable ({exc}); its new config removes {name}")
            continue
        progress(app.name, "dbproxy", f"{name} in maintenance")
