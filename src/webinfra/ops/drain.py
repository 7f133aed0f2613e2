"""Taking a server out of rotation and putting it back, without a reload anywhere clients would see it.

- A web server (a load-balancer backend): DRAIN then MAINT on every running LB through HAProxy's runtime
  API (`take_out`), `ready` and wait until every LB sees it UP (`put_back`). When it is the only server of
  the write backend (`site_writes`, the seed design's primary web server), the other web servers stand in
  for it there as dynamic *backup* servers while it is out, so writes keep flowing (their apps write to the
  same primary).
- An app-only server (split topologies): every nginx in front of it marks it `down` in its upstream and
  reloads (nginx's reload is graceful: old workers finish their requests), then we wait until no
  connection from nginx is left on the app's port (`take_out_app` / `put_back_app`).
- Dynamic servers (`add_to_lbs`, `remove_from_lbs`): `webinfra scale` adds and removes web servers live.
  A dynamic server does not inherit `default-server`, so its arguments come from the plan's value of the
  LB's server lines (`HostPlan.lb_servers`): exactly what a reload of its haproxy.cfg would give it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from webinfra.daemons import haproxy
from webinfra.daemons.haproxy import HaproxyRuntime, RuntimeApiError, ServerStat
from webinfra.errors import ClusterError
from webinfra.model import Role
from webinfra.plan.spec import BackendServer
from webinfra.services import supervisor

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster

Progress = Callable[[str, str, str], None]
WRITES = "site_writes"
DRAIN_TIMEOUT = 15.0  # bound on waiting for a server's sessions to end
UP_TIMEOUT = 20.0


def _quiet(host: str, what: str, action: str) -> None:
    pass


def _error(message: str) -> Exception:
    return ClusterError(message)


@dataclass(frozen=True)
class Lb:
    name: str
    runtime: HaproxyRuntime


def running_lbs(cluster: Cluster) -> list[Lb]:
    """The LBs whose runtime API answers (a stopped LB is brought in line by its saved state at start)."""
    out = []
    for spec in cluster.topology.with_role(Role.LB):
        rt = haproxy.runtime_for(cluster.hosts[spec.name], cluster.plan.host(spec.name))
        try:
            rt.servers()
        except RuntimeApiError:
            continue
        out.append(Lb(spec.name, rt))
    return out


def _require_lbs(cluster: Cluster) -> list[Lb]:
    lbs = running_lbs(cluster)
    if not lbs:
        raise _error("no load balancer's runtime API answers (is one running?)")
    return lbs


def _stats(lb: Lb, server: str) -> list[ServerStat]:
    return [s for s in lb.runtime.servers() if s.name == server and s.backend in haproxy.SITE_BACKENDS]


def _wait(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _sessions(lbs: list[Lb], server: str, backends: tuple[str, ...] = haproxy.SITE_BACKENDS) -> int:
    return sum(s.current_sessions for lb in lbs for s in _stats(lb, server) if s.backend in backends)


# ---- a web server: the LBs' runtime API ----


@dataclass
class OutOfRotation:
    """What `take_out` did: the server taken out, and the write backend's stand-ins it added, per LB."""

    server: str
    stand_ins: dict[str, list[str]] = field(default_factory=dict)


def take_out(
    cluster: Cluster, server: str, progress: Progress = _quiet, timeout: float = DRAIN_TIMEOUT
) -> OutOfRotation:
    """DRAIN the web server on every running LB, wait (bounded) until its sessions end, then MAINT."""
    lbs = _require_lbs(cluster)
    out = OutOfRotation(server)
    for lb in lbs:
        out.stand_ins[lb.name] = _write_stand_ins(cluster, lb, server, progress)
    for lb in lbs:
        for stat in _stats(lb, server):
            lb.runtime.set_state(stat.backend, server, "drain")
    progress(server, "lb", f"drain on {', '.join(lb.name for lb in lbs)}")
    if not _wait(lambda: _sessions(lbs, server) == 0, timeout):
        progress(server, "lb", f"{_sessions(lbs, server)} sessions still open after {timeout:g}s")
    for lb in lbs:
        for stat in _stats(lb, server):
            lb.runtime.set_state(stat.backend, server, "maint")
    progress(server, "lb", "maint (no traffic)")
    return out


def put_back(cluster: Cluster, out: OutOfRotation, progress: Progress = _quiet, timeout: float = UP_TIMEOUT) -> None:
    """`ready` on every running LB; wait until each sees the server UP; then remove any stand-ins."""
    lbs = _require_lbs(cluster)
    server = out.server
    for lb in lbs:
        for stat in _stats(lb, server):
            lb.runtime.set_state(stat.backend, server, "ready")

    def all_up() -> bool:
        return all(s.status == "UP" for lb in lbs for s in _stats(lb, server))

    if not _wait(all_up, timeout):
        raise _error(f"{server}: not UP on every load balancer {timeout:g}s after being put back")
    progress(server, "lb", f"ready, UP on {', '.join(lb.name for lb in lbs)}")
    for lb in lbs:
        # Every stand-in, also those of an earlier take_out of the same server (a rollback takes it out twice).
        extra = sorted(_runtime_names(lb, WRITES) - _configured_names(_servers(cluster, lb.name), WRITES))
        for name in extra:
            _remove_dynamic(lb, WRITES, name)
        if extra:
            progress(server, "lb", f"{lb.name}: write stand-ins {', '.join(extra)} removed")


def _write_stand_ins(cluster: Cluster, lb: Lb, server: str, progress: Progress) -> list[str]:
    """When `server` is the only usable server of the write backend, add the other UP web servers there as
    dynamic backups (seed design: writes go to the primary's web server). Not with HA: there the write
    backend checks the DB agents' /primary, which other web servers cannot pass."""
    if cluster.topology.ha:
        return []
    stats = lb.runtime.servers()
    writes = {s.name: s for s in stats if s.backend == WRITES}
    if server not in writes or any(n != server and s.status.startswith("UP") for n, s in writes.items()):
        return []
    added, configured = [], _servers(cluster, lb.name)
    for s in stats:
        if s.backend != "site" or s.name == server or s.name in writes or s.status != "UP":
            continue
        lb.runtime.add_server(WRITES, s.name, dynamic_server_args(configured, "site", s.name) + " backup")
        lb.runtime.enable_server(WRITES, s.name)
        added.append(s.name)
    if added:
        ok = _wait(lambda: all(_status(lb, WRITES, n) == "UP" for n in added), UP_TIMEOUT)
        if not ok:
            raise _error(f"{lb.name}: write stand-ins {added} not UP within {UP_TIMEOUT:g}s")
        progress(server, "lb", f"{lb.name}: {', '.join(added)} stand in for writes")
    return added


def _runtime_names(lb: Lb, backend: str) -> set[str]:
    return {s.name for s in lb.runtime.servers() if s.backend == backend}


def _configured_names(servers: tuple[BackendServer, ...], backend: str) -> set[str]:
    return {s.name for s in servers if s.backend == backend}


def _status(lb: Lb, backend: str, server: str) -> str:
    return next((s.status for s in lb.runtime.servers() if s.backend == backend and s.name == server), "")


def _servers(cluster: Cluster, lb: str) -> tuple[BackendServer, ...]:
    return cluster.plan.host(lb).lb_servers


# ---- dynamic servers (scale) ----


def dynamic_server_args(servers: tuple[BackendServer, ...], backend: str, server: str) -> str:
    """`add server` arguments giving `server` of `backend` what a reload of the LB's haproxy.cfg would
    (`servers`: the LB's `HostPlan.lb_servers`)."""
    for s in servers:
        if s.backend == backend and s.name == server:
            return s.args
    raise KeyError(f"no server {server} in backend {backend}")


def add_to_lbs(cluster: Cluster, server: str, progress: Progress = _quiet, timeout: float = UP_TIMEOUT) -> list[str]:
    """Add web server `server` (in `cluster`'s topology) to the `site` backend of every running LB, live;
    wait until each sees it UP. The caller writes the new haproxy.cfg, so a later reload keeps it."""
    lbs = _require_lbs(cluster)
    for lb in lbs:
        if _status(lb, "site", server):
            continue  # already there (an earlier attempt)
        lb.runtime.add_server("site", server, dynamic_server_args(_servers(cluster, lb.name), "site", server))
        lb.runtime.enable_server("site", server)
    if not _wait(lambda: all(_status(lb, "site", server) == "UP" for lb in lbs), timeout):
        raise _error(f"{server}: not UP on every load balancer within {timeout:g}s of being added")
    progress(server, "lb", f"added live, UP on {', '.join(lb.name for lb in lbs)}")
    return [lb.name for lb in lbs]


def remove_from_lbs(cluster: Cluster, server: str, progress: Progress = _quiet) -> None:
    """Drain `server` out of every running LB, then delete it there (no reload)."""
    take_out(cluster, server, progress)
    for lb in _require_lbs(cluster):
        for stat in _stats(lb, server):
            _remove_dynamic(lb, stat.backend, server, drain=False)
    progress(server, "lb", "deleted from the load balancers")


def _remove_dynamic(lb: Lb, backend: str, server: str, *, drain: bool = True) -> None:
    if not _status(lb, backend, server):
        return
    if drain:
        lb.runtime.set_state(backend, server, "drain")
        _wait(lambda: sum(s.current_sessions for s in _stats(lb, server) if s.backend == backend) == 0, DRAIN_TIMEOUT)
        lb.runtime.set_state(backend, server, "maint")
    # HAProxy refuses while connections (even idle ones) are attached; they go within moments in MAINT.
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        try:
            lb.runtime.del_server(backend, server)
            return
        except RuntimeApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---- an app-only server: nginx upstreams ----


def fronting_webs(cluster: Cluster, app_host: str) -> list[str]:
    """Web hosts whose nginx proxies to `app_host`."""
    topo = cluster.topology
    return [w.name for w in topo.with_role(Role.WEB) if app_host in {a.name for a in topo.app_upstreams_of(w.name)}]


def _reload_nginx(cluster: Cluster, app_host: str, draining: frozenset[str], progress: Progress) -> None:
    plan = cluster.plan_for(draining=draining)
    for web in fronting_webs(cluster, app_host):
        hp = plan.host(web)
        action = supervisor.start(cluster.hosts[web], hp, hp.service("nginx"))
        progress(web, "nginx", f"{action} ({app_host} {'down' if draining else 'back'} in its upstream)")


def app_connections(cluster: Cluster, app_host: str) -> int:
    """Established TCP connections on the app's port of `app_host` (nginx's, proxied requests)."""
    port = cluster.topology.app.port
    out = cluster.hosts[app_host].run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"], check=False)
    return len([line for line in out.stdout.splitlines() if line.strip()])


def take_out_app(cluster: Cluster, app_host: str, progress: Progress = _quiet, timeout: float = DRAIN_TIMEOUT) -> None:
    _reload_nginx(cluster, app_host, frozenset({app_host}), progress)
    if not _wait(lambda: app_connections(cluster, app_host) == 0, timeout, interval=0.1):
        progress(app_host, "app", f"connections still open after {timeout:g}s")
    progress(app_host, "app", "out of every nginx upstream")


def put_back_app(cluster: Cluster, app_host: str, progress: Progress = _quiet) -> None:
    _reload_nginx(cluster, app_host, frozenset(), progress)
