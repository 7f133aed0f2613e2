"""`webinfra deploy`: a zero-downtime rolling deploy of a code base to the app servers, one at a time.

For each app host whose code changes (`cycle`):
1. take it out of rotation (ops/drain.py): a web+app host is drained then put in MAINT on every LB
   through the runtime API; an app-only host is marked `down` in the nginx upstreams in front of it;
2. stop its app, start it on the new release (services/releases.py), and wait for `/healthz` to answer
   with the new version, from inside the host;
3. smoke-check it: `GET /api/entries` through the host's own nginx (or the app itself, app-only hosts)
   must answer 200 from the new version;
4. record the release (`deploy.json`: `up` keeps it), put the host back, wait until every LB sees it UP.

Where a release is kept and how it becomes the app's code is the fleet's `code` (services/releases.py,
`CodeReleases`): on emulated hosts a release directory the app's command line names; on servers
(services/server_releases.py) /opt/webinfra/site/<version> and a `current` symlink switched while the app
is stopped. The cycle, the checks and the rollback are the same for both.

If a host fails 2 or 3, it is switched back to the release it ran (the same cycle), and so are the hosts
already switched, in reverse order; the deploy stops with a one-line reason. Events: `deploy_started`,
`deploy_host_done`, `deploy_failed`, `deploy_rolled_back`, `deploy_done`.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from webinfra.control import events
from webinfra.control.cluster import Cluster
from webinfra.errors import ClusterError, UsageError
from webinfra.model import Role
from webinfra.ops import drain
from webinfra.plan.spec import AppRelease
from webinfra.runtime import CommandError, client_on
from webinfra.services import releases, supervisor
from webinfra.services.releases import CodeBaseError

Progress = Callable[[str, str, str], None]
HEALTH_TIMEOUT = 30.0


def _quiet(host: str, what: str, action: str) -> None:
    pass


class HostUnhealthy(ClusterError):
    """The app on a host did not come up healthy on a release (it is left out of rotation)."""


@dataclass(frozen=True)
class DeployResult:
    version: str
    switched: tuple[str, ...]
    unchanged: tuple[str, ...]
    seconds: float


@contextlib.contextmanager
def operation_lock(cluster: Cluster, what: str) -> Iterator[None]:
    """One deploy or scale operation at a time per cluster."""
    path = cluster.layout.operation_lock
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ClusterError(f"another deploy or scale operation is running on {cluster.topology.name}") from None
        yield


def current_releases(cluster: Cluster) -> dict[str, AppRelease]:
    """The release every app host runs now (the installed code base, `[app] version`, if never deployed)."""
    recorded = releases.deployed(cluster.layout)
    default = AppRelease(cluster.topology.app.version)
    return {h.name: recorded.get(h.name, default) for h in cluster.topology.with_role(Role.APP)}


def deploy(
    cluster: Cluster,
    code_base: Path | None = None,
    version: str | None = None,
    *,
    health_timeout: float = HEALTH_TIMEOUT,
    progress: Progress = _quiet,
) -> DeployResult:
    """Ship `code_base` (default: the installed site) as `version` (default: its content hash) to every app
    host, one at a time. Bad input raises `UsageError` with nothing changed; a failed host rolls back and
    raises `ClusterError`."""
    started = time.monotonic()
    base = (code_base or releases.builtin_code_base()).resolve()
    try:
        releases.check_code_base(base)
        version = version or releases.content_hash(base)
        releases.check_version(version)
    except CodeBaseError as exc:
        raise UsageError(str(exc)) from None
    cluster.require_local()
    current = current_releases(cluster)
    todo = [h for h, r in current.items() if r.version != version]
    if not todo:
        return DeployResult(version, (), tuple(current), time.monotonic() - started)
    for name in todo:
        if not supervisor.running(cluster.hosts[name], cluster.plan.host(name).service("app")):
            raise ClusterError(f"the app on {name} is not running: start it first (`webinfra start {name} app`)")
    if any(cluster.topology.host(name).has(Role.WEB) for name in todo) and not drain.running_lbs(cluster):
        raise ClusterError("no load balancer's runtime API answers: a server cannot be drained (is one running?)")
    layout, code = cluster.layout, cluster.fleet.code
    with operation_lock(cluster, "deploy"):
        new: dict[str, AppRelease] = {}
        # A failed deploy removes the releases it shipped (or gives reused ones their time back): a release's
        # time is when it was last deployed, and `rollback` goes to the one before.
        undo_ship: list[Callable[[], None]] = []
        for name in todo:
            try:
                shipped = code.ship(name, cluster.hosts[name], base, version)
            except (CodeBaseError, CommandError) as exc:
                for undo in undo_ship:  # nothing switched yet: no host keeps a release of this deploy
                    undo()
                raise UsageError(str(exc)) if isinstance(exc, CodeBaseError) else exc from None
            undo_ship.append(shipped.undo)
            new[name] = shipped.release
            progress(name, "release", f"{version} {'shipped' if shipped.copied else 'already there'}")
        events.record(layout, "deploy_started", "", f"version {version} to {', '.join(todo)} (from {base})")
        done: list[str] = []
        for name in todo:
            try:
                cycle(cluster, name, new[name], health_timeout=health_timeout, progress=progress)
            except (HostUnhealthy, supervisor.ServiceError, CommandError) as exc:
                events.record(layout, "deploy_failed", name, f"version {version}: {exc}")
                # The release going back ran before: it gets the default time to be healthy even when the new
                # one was given less (a short --health-timeout must not fail the way back on a busy machine).
                _roll_back(cluster, [name, *reversed(done)], current, max(health_timeout, HEALTH_TIMEOUT), progress)
                for undo in undo_ship:
                    undo()
                raise ClusterError(
                    f"deploy of {version} failed on {name}: {exc}; rolled back to {current[name].version}"
                ) from None
            done.append(name)
            events.record(layout, "deploy_host_done", name, f"running {version}")
        for name in todo:
            code.prune(name, cluster.hosts[name], {version, current[name].version})
        seconds = time.monotonic() - started
        events.record(layout, "deploy_done", "", f"version {version} on {', '.join(todo)} in {seconds:.1f}s")
    unchanged = tuple(h for h in current if h not in todo)
    return DeployResult(version, tuple(todo), unchanged, seconds)


@dataclass(frozen=True)
class Release:
    """A code base kept on the app hosts (services/releases.py), or the installed one (`installed`)."""

    version: str
    hosts: tuple[str, ...]  # app hosts that keep it
    running_on: tuple[str, ...]
    deployed_at: float | None  # when it was last deployed (the release directory's time); None: installed
    installed: bool = False


def list_releases(cluster: Cluster) -> list[Release]:
    """Every release kept on the app hosts, most recently deployed first, then the installed code base."""
    current = current_releases(cluster)
    kept: dict[str, list[tuple[str, float]]] = {}
    for host in current:
        for version, mtime in cluster.fleet.code.kept(host, cluster.hosts[host]).items():
            kept.setdefault(version, []).append((host, mtime))
    out = [
        Release(
            version,
            tuple(h for h, _ in found),
            tuple(h for h, r in current.items() if r.version == version and r.app_dir is not None),
            max(t for _, t in found),
        )
        for version, found in kept.items()
    ]
    out.sort(key=lambda r: r.deployed_at or 0.0, reverse=True)
    installed_on = tuple(h for h, r in current.items() if r.app_dir is None)
    if installed_on or cluster.topology.app.version not in kept:  # else a kept release has its label
        out.append(Release(cluster.topology.app.version, tuple(current), installed_on, None, installed=True))
    return out


def rollback_target(cluster: Cluster, version: str | None) -> Release:
    """The release to go back to: `version`, or the one deployed before the one running now."""
    found = list_releases(cluster)
    if version is not None:
        for release in found:
            if release.version == version:
                return release
        kept = ", ".join(r.version for r in found)
        raise UsageError(f"no release {version!r} is kept (releases: {kept}; `webinfra deploy --list`)")
    running = {r.version for r in current_releases(cluster).values()}
    earlier = [r for r in found if r.version not in running]
    if not earlier:
        raise UsageError("no earlier release is kept to roll back to (`webinfra deploy --list`)")
    return earlier[0]


def rollback(
    cluster: Cluster,
    version: str | None = None,
    *,
    health_timeout: float = HEALTH_TIMEOUT,
    progress: Progress = _quiet,
) -> DeployResult:
    """Go back to a kept release: a rolling deploy of it (same drain, health and smoke checks, same rollback
    when a host fails). The installed code base is deployed as a release labelled `[app] version`."""
    target = rollback_target(cluster, version)
    if target.installed:
        return deploy(cluster, None, target.version, health_timeout=health_timeout, progress=progress)
    source = cluster.fleet.code.source(target.hosts[0], target.version)
    if not source.is_dir():
        raise UsageError(f"release {target.version} is kept on the app servers but its code is not here ({source})")
    return deploy(cluster, source, target.version, health_timeout=health_timeout, progress=progress)


def _roll_back(
    cluster: Cluster, hosts: list[str], previous: dict[str, AppRelease], health_timeout: float, progress: Progress
) -> None:
    for name in hosts:
        try:
            cycle(cluster, name, previous[name], health_timeout=health_timeout, progress=progress)
        except (HostUnhealthy, supervisor.ServiceError, CommandError) as exc:
            events.record(cluster.layout, "deploy_rollback_failed", name, str(exc))
            raise ClusterError(
                f"rollback of {name} to {previous[name].version} failed too: {exc} (it is out of rotation)"
            ) from None
        events.record(cluster.layout, "deploy_rolled_back", name, f"running {previous[name].version} again")


def cycle(
    cluster: Cluster,
    host: str,
    release: AppRelease,
    *,
    health_timeout: float = HEALTH_TIMEOUT,
    progress: Progress = _quiet,
) -> None:
    """Run `release` on `host`'s app: out of rotation, restart, health and smoke checks, record, back in.
    Raises `HostUnhealthy` (the host stays out of rotation) if the app does not come up healthy. Also used
    to restart apps one at a time when their config changes (`webinfra scale`)."""
    topo, layout = cluster.topology, cluster.layout
    wanted = {**releases.deployed(layout), host: release}
    hp = cluster.plan_for(wanted).host(host)
    svc = hp.service("app")
    is_web = topo.host(host).has(Role.WEB)
    out = drain.take_out(cluster, host, progress) if is_web else None
    if not is_web:
        drain.take_out_app(cluster, host, progress)
    node = cluster.hosts[host]
    supervisor.stop(node, hp, svc)
    cluster.fleet.code.activate(host, node, release)
    supervisor.launch(node, hp, svc)
    progress(host, "app", f"started on {release.version}")
    _wait_healthy(cluster, host, svc, release.version, health_timeout)
    _smoke(cluster, host, release.version)
    progress(host, "app", f"healthy on {release.version}, smoke check passed")
    if release.app_dir is not None:
        releases.record(layout, host, release)
    else:
        releases.forget(layout, host)  # back on the installed code base
    if out is not None:
        drain.put_back(cluster, out, progress)
    else:
        drain.put_back_app(cluster, host, progress)


def _wait_healthy(cluster: Cluster, host: str, svc: supervisor.ServiceSpec, version: str, timeout: float) -> None:
    topo = cluster.topology
    url = f"http://{topo.address_of(host)}:{topo.app.port}/healthz"
    last = "no answer"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not supervisor.running(cluster.hosts[host], svc):
            raise HostUnhealthy(f"{host}: the app exited on {version} (see {svc.log})")

        last = _healthz_says(cluster, host, url, version)
        if last == "ok":
            return
        time.sleep(0.1)
    raise HostUnhealthy(f"{host}: not healthy on {version} within {timeout:g}s ({last})")


def _healthz_says(cluster: Cluster, host: str, url: str, version: str) -> str:
    """ "ok", or what the app's /healthz (asked from inside its host) says instead."""
    try:
        with client_on(cluster.hosts[host], timeout=1.0) as client:
            resp = client.get(url, headers={"Host": cluster.topology.site.name})
    except (httpx.HTTPError, CommandError) as exc:
        return f"no answer ({type(exc).__name__})"
    if resp.status_code != 200:
        return f"/healthz answered {resp.status_code}"
    try:
        got = resp.json().get("version")
    except ValueError:
        return "/healthz answered no JSON"
    return "ok" if got == version else f"/healthz reports version {got!r}"


def _smoke(cluster: Cluster, host: str, version: str) -> None:
    """A real request through the host's own nginx (the path the LB uses), or to the app itself."""
    topo = cluster.topology
    address = topo.address_of(host)
    ca_file: str | None = None
    if topo.host(host).has(Role.WEB):
        scheme = "https" if topo.backend_tls else "http"
        url = f"{scheme}://{address}:{topo.web.port}/api/entries?limit=1"
        if topo.backend_tls:
            ca_file = str(cluster.fleet.plan_layout.ca_cert)  # the request is made on the host: its path
    else:
        url = f"http://{address}:{topo.app.port}/api/entries?limit=1"

    def fetch() -> str:
        try:
            with client_on(cluster.hosts[host], ca_file=ca_file, timeout=5.0) as client:
                resp = client.get(url, headers={"Host": topo.site.name})
        except httpx.HTTPError as exc:
            return f"GET {url}: {type(exc).__name__}: {exc}"
        got = resp.headers.get("x-app-version")
        if resp.status_code != 200 or got != version:
            return f"GET {url}: {resp.status_code}, X-App-Version {got!r}"
        return ""

    problem = fetch()
    if problem:
        raise HostUnhealthy(f"{host}: smoke check failed on {version}: {problem}")
