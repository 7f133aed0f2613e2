"""Connect to the servers, check them, run their operations and report per host: `up`, `plan --diff` (pyinfra's
dry run) and `down` for `[machines] kind = "ssh"`."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gevent
from pyinfra.api import BaseStateCallback, Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host as PyinfraHost
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.server import Command, LinuxDistribution
from pyinfra.operations import files, systemd

from webinfra.control.cluster import Cluster
from webinfra.errors import UsageError
from webinfra.model import Topology
from webinfra.plan.build import build_plan
from webinfra.plan.spec import ClusterPlan
from webinfra.servers import ServersError, bootstrap, hardened, units
from webinfra.servers.ops import SECRET_REF, HostOps, Release, add_host_ops, referenced
from webinfra.servers.wheels import ensure_wheelhouse
from webinfra.services import releases, server_releases
from webinfra.services.pki import ensure_pki
from webinfra.services.secrets import ensure_secret
from webinfra.state import SERVER_DATA, SERVER_ETC, SERVER_LOG, Layout, ServerLayout, state_root

Say = Callable[[str, str, str], None]


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


def _inventory(topo: Topology) -> Inventory:
    m = topo.machines
    hosts = []
    for host in topo.hosts:
        ssh = m.address_of(host.name)
        data: dict[str, object] = {
            "ssh_hostname": ssh.host,
            "ssh_port": ssh.port,
            "ssh_user": ssh.user,
            "ssh_allow_agent": False,
            "ssh_connect_retries": 1,
        }
        key = _key(m.key_of(host.name))
        if key:
            data["ssh_key"] = key
            data["ssh_look_for_keys"] = False
        if m.known_hosts:
            data["ssh_known_hosts_file"] = _key(m.known_hosts)
            data["ssh_strict_host_key_checking"] = "accept-new"
        hosts.append((host.name, data))
    return Inventory((hosts, {}))


@contextmanager
def connected(topo: Topology, say: Say) -> Iterator[State]:
    """Every server connected and checked (Debian 12, root or sudo), or one line naming each that is not."""
    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
    state = State(inventory=_inventory(topo), config=Config(CONNECT_TIMEOUT=10))
    errors = _Errors()
    state.add_callback_handler(errors)
    with contextlib.suppress(PyinfraError):  # every host failed: each is named below
        connect_all(state)
    failed = sorted(h.name for h in state.failed_hosts)
    if failed:
        raise ServersError(
            "; ".join(
                f"{name}: cannot connect over SSH to {topo.machines.address_of(name)}: "
                f"{_one_line(errors.connect.get(name, 'connection failed'))}"
                for name in failed
            )
        )
    try:
        problems = [p for host in state.inventory for p in [_check_host(state, host, topo)] if p]
        if problems:
            raise ServersError("; ".join(problems))
        for host in state.inventory:
            say(host.name, "ssh", f"connected ({topo.machines.address_of(host.name)}, Debian 12)")
        yield state
    finally:
        disconnect_all(state)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _check_host(state: State, host: PyinfraHost, topo: Topology) -> str:
    with ctx_state.use(state), ctx_host.use(host):
        try:
            distro = host.get_fact(LinuxDistribution)
        except PyinfraError as exc:
            return f"{host.name}: cannot read /etc/os-release: {_one_line(str(exc))}"
        name, major = (distro or {}).get("name"), (distro or {}).get("major")
        if name != "Debian" or major != 12:
            return f"{host.name}: {name or 'unknown'} {major or ''} is not Debian 12".replace("  ", " ")
        become = topo.machines.become_of(host.name)
        try:
            uid = host.get_fact(Command, command="id -u", _sudo=become, _sudo_user=None)
        except PyinfraError as exc:
            return f"{host.name}: sudo failed (become = true needs passwordless sudo): {_one_line(str(exc))}"
        if str(uid).strip() != "0":
            user = topo.machines.address_of(host.name).user
            return f"{host.name}: {user} is not root and become = false (set become = true, with passwordless sudo)"
    return ""


def ssh_sources(state: State) -> dict[str, str]:
    """Each server's view of where its SSH connection comes from (the first field of $SSH_CONNECTION, read
    without sudo, which would drop it): the management machine's address as the firewall must admit it
    (behind NAT or a bastion, the translated address)."""
    out: dict[str, str] = {}
    for host in state.inventory:
        with ctx_state.use(state), ctx_host.use(host):
            try:
                text = str(host.get_fact(Command, command="echo $SSH_CONNECTION") or "")
            except PyinfraError as exc:
                raise ServersError(f"{host.name}: cannot read $SSH_CONNECTION: {_one_line(str(exc))}") from None
        fields = text.split()
        try:
            out[host.name] = str(ipaddress.IPv4Address(fields[0]))
        except (IndexError, ValueError):
            raise ServersError(
                f"{host.name}: $SSH_CONNECTION does not name an IPv4 client ({text.strip() or 'empty'}): "
                "set [machines] management"
            ) from None
    return out


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


def _by_name(state: State) -> dict[str, PyinfraHost]:
    return {h.name: h for h in state.inventory}


def _add_all(state: State, target: Target, dry: bool, hold: frozenset[str] = frozenset()) -> list[HostOps]:
    hosts = _by_name(state)
    topo = target.topology
    with ctx_state.use(state):
        return [
            add_host_ops(
                state,
                hosts[plan.name],
                plan,
                target.local,
                target.release,
                become=topo.machines.become_of(plan.name),
                firewall=topo.firewall,
                cluster=topo.name,
                dry=dry,
                hold=hold,
            )
            for plan in target.plan.hosts
        ]


def _run(state: State, records: list[HostOps]) -> None:
    """Each host runs its operations on its own (pyinfra's no_wait): a host's operations concern that host
    only (what spans hosts, the database bootstrap, the agents and the VIP, comes after), so no host waits
    at every operation for the slowest one. A failure stops that host; the others go on."""
    # A host whose operation fails ends its greenlet with PyinfraError, which gevent's hub would print as a
    # traceback: the failure is read from the operations below and said in one line instead.
    hub = gevent.get_hub()
    stream, hub.exception_stream = hub.exception_stream, None
    try:
        with contextlib.suppress(PyinfraError):
            run_ops(state, no_wait=True)
    finally:
        hub.exception_stream = stream
    stopped = {r.name for r in records if any(not meta.did_succeed(_raise_if_not_complete=False) for _, meta in r.ops)}
    failed = sorted({h.name for h in state.failed_hosts} | stopped)
    if failed:
        details = []
        for record in records:
            if record.name in failed:
                bad = next((name for name, meta in record.ops if meta.is_complete() and not meta.did_succeed()), "?")
                details.append(f"{record.name}: operation '{bad}' failed (run `webinfra up` again once fixed)")
        raise ServersError("; ".join(details) or f"failed: {', '.join(failed)}")


def prepare_secrets(target: Target) -> None:
    """Generate on the management machine every secret and certificate the plan names (the CA key stays)."""
    names = {n for plan in target.plan.hosts for n in referenced(plan, SECRET_REF)}
    for name in sorted(names):
        ensure_secret(target.local, name.removesuffix(".password"))
    ensure_pki(target.topology, target.local)


def up(topo: Topology, state_dir: Path | None, say: Say) -> dict[str, list[str]]:
    """Deploy: returns each host's changed operations (empty: no changes)."""
    check_usable(topo)
    release = ensure_wheelhouse(say, (state_dir or state_root()) / "_wheels")
    with connected(topo, say) as state:
        target = Target.of(with_management(topo, ssh_sources(state), say), state_dir, release)
        prepare_secrets(target)
        target.local.cluster_dir.mkdir(parents=True, exist_ok=True)
        hold = hardened.held(target.topology, target.local)
        records = _add_all(state, target, dry=False, hold=hold)
        started = time.monotonic()
        _run(state, records)
        for record in records:
            changed = record.changed()
            summary = f"{len(changed)} changes: {', '.join(changed[:6])}{' …' if len(changed) > 6 else ''}"
            say(record.name, "deploy", summary if changed else "no changes")
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
    return {r.name: r.changed() for r in records}


def diff(topo: Topology, state_dir: Path | None, say: Say) -> dict[str, list[str]]:
    """pyinfra's dry run: what `up` would change on each host (nothing is changed)."""
    check_usable(topo)
    release = ensure_wheelhouse(say, (state_dir or state_root()) / "_wheels")
    with connected(topo, say) as state:
        target = Target.of(with_management(topo, ssh_sources(state), say), state_dir, release)
        prepare_secrets(target)
        records = _add_all(state, target, dry=True)
        out: dict[str, list[str]] = {}
        hosts = _by_name(state)
        for record in records:
            with ctx_state.use(state), ctx_host.use(hosts[record.name]):
                out[record.name] = record.pending()
    return out


def down(topo: Topology, state_dir: Path | None, purge: bool, say: Say) -> None:
    """Stop and disable webinfra's services (reverse start order); `purge` also removes its files and data."""
    check_usable(topo)
    target = Target.of(topo, state_dir, None)
    with connected(topo, say) as state:
        hosts = _by_name(state)
        with ctx_state.use(state):
            for plan in target.plan.hosts:
                host, become = hosts[plan.name], topo.machines.become_of(plan.name)
                for svc in reversed(plan.services):
                    add_op(
                        state,
                        systemd.service,
                        name=f"{plan.name}: stop {svc.name}",
                        host=host,
                        _sudo=become,
                        service=units.unit_name(svc.name),
                        running=False,
                        enabled=False,
                    )
                if purge:
                    for svc in plan.services:
                        add_op(
                            state,
                            files.file,
                            name=f"{plan.name}: remove unit {svc.name}",
                            host=host,
                            _sudo=become,
                            path=f"{units.UNIT_DIR}/{units.unit_name(svc.name)}",
                            present=False,
                        )
                    for path in (SERVER_DATA, SERVER_ETC, SERVER_LOG, Path(units.RELEASES).parent, units.TMPFILES):
                        op = files.file if str(path).endswith(".conf") else files.directory
                        add_op(
                            state,
                            op,
                            name=f"{plan.name}: remove {path}",
                            host=host,
                            _sudo=become,
                            path=str(path),
                            present=False,
                        )
        _run(state, [])
        for plan in target.plan.hosts:
            say(plan.name, "down", "stopped and disabled" + (", data purged" if purge else ", data kept"))
