"""Connect to the servers, check them, run their operations and report per host: `up`, `plan --diff` (pyinfra's
dry run) and `down` for `[machines] kind = "ssh"`."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import gevent
from pyinfra.api import BaseStateCallback, Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host as PyinfraHost
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.server import Command, LinuxDistribution

from webinfra.control.cluster import Cluster
from webinfra.errors import UsageError
from webinfra.model import Topology
from webinfra.plan.build import build_plan
from webinfra.plan.spec import ClusterPlan
from webinfra.servers import ServersError, bootstrap, fanout, hardened, units
from webinfra.servers.ops import SECRET_REF, HostOps, Release, add_host_ops, referenced
from webinfra.servers.wheels import ensure_wheelhouse
from webinfra.services import releases, server_releases
from webinfra.services.pki import ensure_pki
from webinfra.services.secrets import ensure_secret
from webinfra.state import Layout, ServerLayout, state_root

Say = Callable[[str, str, str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    topology: Topology
    local: Layout  # the management machine's state: secrets, PKI (the CA key stays here), the topology
    plan: ClusterPlan  # rendered for the servers' paths (ServerLayout)
    release: Release | None

    @classmethod
    def of(cls, topo: Topology, state_dir: Path | None, release: Release | None) -> Target:
        python = release.python if release else f"{units.RELEASES}/none/bin/python"
        local = Layout.for_cluster(topo.name, state_dir)
        # The app runs the release `webinfra deploy` recorded (site.json's version), so `up` keeps it.
        code = server_releases.plan_releases(topo, releases.deployed(local))
        return cls(topo, local, build_plan(topo, ServerLayout(), python, releases=code), release)


def _key(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else None


def check_usable(topo: Topology) -> None:
    """Bad input before any connection: one line, exit 2."""
    if not topo.machines.ssh:
        raise UsageError('not an SSH topology: [machines] kind = "ssh" is missing')
    for host in topo.hosts:
        key = _key(topo.machines.key_of(host.name))
        if key and not Path(key).is_file():
            raise UsageError(f"{host.name}: SSH key {key} does not exist")


# ---- pyinfra ----


class _Errors(BaseStateCallback):
    def __init__(self) -> None:
        self.connect: dict[str, str] = {}

    def host_connect_error(self, state: State, host: PyinfraHost, error: object) -> None:  # type: ignore[override]
        self.connect[host.name] = str(error)


def _inventory(topo: Topology, name: str) -> Inventory:
    m = topo.machines
    ssh = m.address_of(name)
    data: dict[str, object] = {
        "ssh_hostname": ssh.host,
        "ssh_port": ssh.port,
        "ssh_user": ssh.user,
        "ssh_allow_agent": False,
        "ssh_connect_retries": 1,
    }
    key = _key(m.key_of(name))
    if key:
        data["ssh_key"] = key
        data["ssh_look_for_keys"] = False
    if m.known_hosts:
        data["ssh_known_hosts_file"] = _key(m.known_hosts)
        data["ssh_strict_host_key_checking"] = "accept-new"
    return Inventory(([(name, data)], {}))


@contextmanager
def _connected(topo: Topology, name: str) -> Iterator[tuple[State, PyinfraHost]]:
    """One server, connected (inside the process `fanout` gives it): a State of that server alone."""
    state = State(inventory=_inventory(topo, name), config=Config(CONNECT_TIMEOUT=10))
    errors = _Errors()
    state.add_callback_handler(errors)
    with contextlib.suppress(PyinfraError):  # said below, in one line
        connect_all(state)
    if state.failed_hosts:
        cause = _one_line(errors.connect.get(name, "connection failed"))
        raise ServersError(f"cannot connect over SSH to {topo.machines.address_of(name)}: {cause}")
    try:
        yield state, next(iter(state.inventory))
    finally:
        disconnect_all(state)


def _each(topo: Topology, work: Callable[[str], T], only: frozenset[str] | None = None) -> dict[str, T]:
    """`work(host)` on every server (of `only`) at once (servers/fanout.py), or one line naming each that
    failed."""
    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
    names = [h.name for h in topo.hosts if only is None or h.name in only]
    return fanout.values(fanout.each_host(names, work), ServersError)


def check_servers(topo: Topology, say: Say, only: frozenset[str] | None = None) -> dict[str, str]:
    """Every server (of `only`) connected and checked (Debian 12, root or sudo), all at once; returns where
    each sees its SSH come from. One line naming each server that is not usable."""

    def check(name: str) -> str:
        with _connected(topo, name) as (state, host):
            problem = _check_host(state, host, topo)
            if problem:
                raise ServersError(problem)
            return _ssh_source(state, host)

    sources = _each(topo, check, only)
    for name in sources:
        say(name, "ssh", f"connected ({topo.machines.address_of(name)}, Debian 12)")
    return sources


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _check_host(state: State, host: PyinfraHost, topo: Topology) -> str:
    with ctx_state.use(state), ctx_host.use(host):
        try:
            distro = host.get_fact(LinuxDistribution)
        except PyinfraError as exc:
            return f"cannot read /etc/os-release: {_one_line(str(exc))}"
        name, major = (distro or {}).get("name"), (distro or {}).get("major")
        if name != "Debian" or major != 12:
            return f"{name or 'unknown'} {major or ''} is not Debian 12".replace("  ", " ")
        become = topo.machines.become_of(host.name)
        try:
            uid = host.get_fact(Command, command="id -u", _sudo=become, _sudo_user=None)
        except PyinfraError as exc:
            return f"sudo failed (become = true needs passwordless sudo): {_one_line(str(exc))}"
        if str(uid).strip() != "0":
            user = topo.machines.address_of(host.name).user
            return f"{user} is not root and become = false (set become = true, with passwordless sudo)"
    return ""


def _ssh_source(state: State, host: PyinfraHost) -> str:
    """The server's view of where its SSH connection comes from (the first field of $SSH_CONNECTION, read
    without sudo, which would drop it): the management machine's address as the firewall must admit it
    (behind NAT or a bastion, the translated address)."""
    with ctx_state.use(state), ctx_host.use(host):
        try:
            text = str(host.get_fact(Command, command="echo $SSH_CONNECTION") or "")
        except PyinfraError as exc:
            raise ServersError(f"cannot read $SSH_CONNECTION: {_one_line(str(exc))}") from None
    fields = text.split()
    try:
        return str(ipaddress.IPv4Address(fields[0]))
    except (IndexError, ValueError):
        raise ServersError(
            f"$SSH_CONNECTION does not name an IPv4 client ({text.strip() or 'empty'}): set [machines] management"
        ) from None


def with_management(topo: Topology, sources: dict[str, str], say: Say) -> Topology:
    """The topology whose firewall admits the management SSH: `[machines] management` as given (refused when
    it leaves out an address the SSH connections come from now: loading it would lock this `up` out), or
    derived from those addresses."""
    if not topo.firewall:
        return topo
    machines = topo.machines
    if machines.management:
        outside = sorted(f"{host} (from {addr})" for host, addr in sources.items() if not machines.admits(addr))
        if outside:
            raise UsageError(
                f"[machines] management does not cover where SSH comes from: {', '.join(outside)}; the "
                "firewall would lock this machine out (add the address, or leave management unset)"
            )
        return topo
    derived = tuple(ipaddress.IPv4Network(a) for a in sorted(set(sources.values())))
    say("all", "firewall", f"management SSH admitted from {', '.join(str(n) for n in derived)} (derived)")
    return topo.model_copy(update={"machines": machines.model_copy(update={"management": derived})})


def _host_ops(
    state: State,
    host: PyinfraHost,
    target: Target,
    dry: bool,
    hold: frozenset[str],
    quiet: frozenset[str] = frozenset(),
) -> HostOps:
    topo = target.topology
    plan = next(p for p in target.plan.hosts if p.name == host.name)
    with ctx_state.use(state):
        return add_host_ops(
            state,
            host,
            plan,
            target.local,
            target.release,
            become=topo.machines.become_of(plan.name),
            firewall=topo.firewall,
            cluster=topo.name,
            dry=dry,
            hold=hold,
            quiet=quiet,
        )


def _run(state: State, record: HostOps | None) -> None:
    """The server's operations, in order; a failed one is said in one line (pyinfra's error is read from the
    operation's meta rather than printed)."""
    # A failed operation ends the host's greenlet with PyinfraError, which gevent's hub would print as a
    # traceback: the failure is read from the operations below and said in one line instead.
    hub = gevent.get_hub()
    stream, hub.exception_stream = hub.exception_stream, None
    try:
        with contextlib.suppress(PyinfraError):
            run_ops(state, no_wait=True)
    finally:
        hub.exception_stream = stream
    failed = bool(state.failed_hosts)
    if record is not None:
        bad = next((name for name, meta in record.ops if meta.is_complete() and not meta.did_succeed()), None)
        stopped = any(not meta.did_succeed(_raise_if_not_complete=False) for _, meta in record.ops)
        if failed or stopped:
            raise ServersError(f"operation '{bad or '?'}' failed (run `webinfra up` again once fixed)")
    elif failed:
        raise ServersError("an operation failed (run the command again once fixed)")


def prepare_secrets(target: Target) -> None:
    """Generate on the management machine every secret and certificate the plan names (the CA key stays)."""
    names = {n for plan in target.plan.hosts for n in referenced(plan, SECRET_REF)}
    for name in sorted(names):
        ensure_secret(target.local, name.removesuffix(".password"))
    ensure_pki(target.topology, target.local)


def _plan_target(topo: Topology, state_dir: Path | None, say: Say, only: frozenset[str] | None = None) -> Target:
    """Check every server (of `only`), then the plan for them (the firewall admitting where SSH comes from)
    and the secrets it names, made here on the management machine before any server receives them."""
    check_usable(topo)
    release = ensure_wheelhouse(say, (state_dir or state_root()) / "_wheels")
    target = Target.of(with_management(topo, check_servers(topo, say, only), say), state_dir, release)
    prepare_secrets(target)
    return target


def up(topo: Topology, state_dir: Path | None, say: Say) -> dict[str, list[str]]:
    """Deploy: returns each host's changed operations (empty: no changes)."""
    target = _plan_target(topo, state_dir, say)
    release = target.release
    assert release is not None
    target.local.cluster_dir.mkdir(parents=True, exist_ok=True)
    hold = hardened.held(target.topology, target.local)

    def deploy(name: str) -> list[str]:
        with _connected(target.topology, name) as (state, host):
            record = _host_ops(state, host, target, dry=False, hold=hold)
            _run(state, record)
            return record.changed()

    started = time.monotonic()
    changes = _each(target.topology, deploy)
    for host in target.topology.hosts:
        changed = changes[host.name]
        summary = f"{len(changed)} changes: {', '.join(changed[:6])}{' …' if len(changed) > 6 else ''}"
        say(host.name, "deploy", summary if changed else "no changes")
    say("all", "deploy", f"operations done in {time.monotonic() - started:.1f}s")
    # Operations (status, start …) build the plan with the release venv's python the units name.
    target.local.server_python_file.write_text(f"{release.python}\n")
    # The servers as every other command sees them: SshMachines from the machine factory.
    cluster = Cluster(target.topology, target.local)
    if not target.topology.ha:
        bootstrap.bootstrap_database(cluster, say)
    else:
        hardened.etcd_ready(cluster, say)
        if not hardened.bootstrapped(target.topology, target.local):
            bootstrap.bootstrap_database(cluster, say)  # once: from then on roles are the agents' business
            target.local.db_bootstrapped_marker.touch()
        hardened.agents_ready(cluster, hold, say)
        hardened.vip_ready(cluster, say)
    bootstrap.exporter_accounts(cluster, say)
    bootstrap.wait_ready(cluster, say)
    return changes


def apply(
    topo: Topology,
    state_dir: Path | None,
    names: frozenset[str],
    say: Say,
    *,
    quiet: Mapping[str, frozenset[str]] | None = None,
    hold: frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """`up`'s operations on the servers `names` only (`webinfra scale`): a new server's whole `up`, and the
    others' changed files; `quiet`: per server, services whose changed config is written but neither
    reloaded nor restarted (servers/ops.py). Returns each one's changed operations."""
    target = _plan_target(topo, state_dir, say, names)
    quiet = quiet or {}

    def deploy(name: str) -> list[str]:
        with _connected(target.topology, name) as (state, host):
            record = _host_ops(state, host, target, dry=False, hold=hold, quiet=quiet.get(name, frozenset()))
            _run(state, record)
            return record.changed()

    return _each(target.topology, deploy, names)


def diff(topo: Topology, state_dir: Path | None, say: Say) -> dict[str, list[str]]:
    """pyinfra's dry run: what `up` would change on each host (nothing is changed)."""
    target = _plan_target(topo, state_dir, say)

    def pending(name: str) -> list[str]:
        with _connected(target.topology, name) as (state, host):
            record = _host_ops(state, host, target, dry=True, hold=frozenset())
            with ctx_state.use(state), ctx_host.use(host):
                return record.pending()

    return _each(target.topology, pending)
