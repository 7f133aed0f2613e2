"""One server's `HostPlan` as pyinfra operations, added in the order `up` needs them: packages, users,
directories, secrets, configs, the Python release, the MariaDB datadir, the firewall, the units, then
each service enabled and running (reloaded or restarted only when what it reads changed)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyinfra import host as current_host
from pyinfra.api import State
from pyinfra.api.host import Host as PyinfraHost
from pyinfra.api.operation import OperationMeta, add_op, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server, systemd

from webinfra.daemons import mysqld_exporter
from webinfra.plan.daemons.exporters import EXPORTER_SECRET, MYSQLD_EXPORTER_CNF
from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.servers import units
from webinfra.services.secrets import ensure_secret
from webinfra.state import SERVER_ETC, Layout

SECRET_REF = re.compile(re.escape(str(SERVER_ETC / "secrets")) + r"/([A-Za-z0-9_.-]+)")
PKI_REF = re.compile(re.escape(str(SERVER_ETC / "pki")) + r"/([A-Za-z0-9_.-]+)")
NFTABLES_CONF = "/etc/nftables.conf"
# `apt-get update`, bounded and retried: apt can wait forever on a mirror or proxy that answers oddly (seen
# with apt-cacher-ng serving five lab machines at once: apt-get idle, its http method idle, no connection
# open). Killed after 120 s, it releases its lock, and the next attempt usually finds the files cached.
APT_UPDATE = (
    "for attempt in 1 2 3; do timeout 120 apt-get update -q >/dev/null && exit 0; sleep 2; done; "
    'echo "apt-get update failed 3 times (120 s each)" >&2; exit 1'
)


def mysqld_exporter_client(plan: HostPlan, local: Layout) -> tuple[Path, str]:
    """mysqld_exporter's client file (its password inline: the exporter reads no include), from the management
    machine's secret; the emulated start hook writes the same file (daemons/mysqld_exporter.py)."""
    password = ensure_secret(local, EXPORTER_SECRET)
    return plan.dirs.etc / MYSQLD_EXPORTER_CNF, mysqld_exporter.exporter_client_file(plan, password)


# Files a service reads that hold a password, by service: (path, content) made on the management machine.
CLIENT_FILES: dict[str, Callable[[HostPlan, Layout], tuple[Path, str]]] = {"mysqld-exporter": mysqld_exporter_client}


@operation(is_idempotent=True)
def unless_exists(path: str, commands: list[str]) -> Any:
    """Run `commands` only while `path` does not exist; the last command creates it (a marker), so an
    interrupted run leaves no marker and the next `up` repairs it."""
    if current_host.get_fact(File, path=path) is None:
        yield from commands


@dataclass
class HostOps:
    """The operations added for one host, by name, to report which changed (pyinfra's own per-op names are
    shared across hosts in API mode)."""

    name: str
    ops: list[tuple[str, OperationMeta]] = field(default_factory=list)

    def changed(self) -> list[str]:
        return [name for name, meta in self.ops if meta.is_complete() and meta.did_change()]

    def pending(self) -> list[str]:
        return [name for name, meta in self.ops if meta.will_change]


@dataclass(frozen=True)
class Release:
    """The wheelhouse built on the management machine: `ident` names the venv on the servers."""

    ident: str
    wheels: tuple[Path, ...]

    @property
    def venv(self) -> str:
        return f"{units.RELEASES}/{self.ident}"

    @property
    def python(self) -> str:
        return f"{self.venv}/bin/python"


def referenced(plan: HostPlan, pattern: re.Pattern[str]) -> dict[str, set[str]]:
    """File name -> the users of the services that name it, for every secret or PKI file this host's configs,
    command lines or environment name: a host receives only those (never the CA key: nothing names it)."""
    found: dict[str, set[str]] = {}
    for svc in plan.services:
        texts = [f.content for f in plan.files_of(svc)] + list(svc.argv) + [v for _, v in svc.env]
        for text in texts:
            for match in pattern.finditer(text):
                found.setdefault(match.group(1), set()).add(units.USER_OF.get(svc.name, "webinfra"))
    configs = {path for svc in plan.services for path in svc.configs}
    for spec in plan.files:  # files of no service (the firewall's ruleset): root reads them
        if spec.path in configs:
            continue
        for match in pattern.finditer(spec.content):
            found.setdefault(match.group(1), set()).add("root")
    return found


def ownership(name: str, users: set[str]) -> tuple[str, str, str]:
    """(owner, group, mode) of a secret or PKI file on the server: certificates are public (0644); a key or
    password is 0600 and its daemon's, or 0640 for webinfra's group when several daemons read it (a host's
    key serves nginx and MariaDB)."""
    if name.endswith((".crt", "ca.pem")):
        return "root", "root", "644"
    if len(users) == 1:
        return next(iter(users)), units.GROUP, "600"
    return "root", units.GROUP, "640"


def owner_of(plan: HostPlan, path: Path) -> str:
    for svc in plan.services:
        if path in svc.configs:
            return units.USER_OF.get(svc.name, "webinfra")
    return "root"


class Adder:
    def __init__(self, state: State, host: PyinfraHost, record: HostOps, become: bool) -> None:
        self.state, self.host, self.record, self.become = state, host, record, become

    def __call__(self, name: str, op: Callable[..., Any], **kwargs: Any) -> OperationMeta:
        meta = add_op(self.state, op, name=f"{self.record.name}: {name}", host=self.host, _sudo=self.become, **kwargs)[
            self.host
        ]
        self.record.ops.append((name, meta))
        return meta


def add_host_ops(
    state: State,
    host: PyinfraHost,
    plan: HostPlan,
    local: Layout,
    release: Release | None,
    *,
    become: bool,
    firewall: bool,
    cluster: str,
    dry: bool = False,
    hold: frozenset[str] = frozenset(),
    quiet: frozenset[str] = frozenset(),
) -> HostOps:
    """`hold`: services whose unit is written but not started by these operations (the HA agents, until the
    database is bootstrapped; servers/hardened.py starts them then). `quiet`: services whose changed config
    is written but neither reloaded nor restarted here (`webinfra scale` applies it its own way: HAProxy's
    runtime API, an app's drained restart)."""
    record = HostOps(plan.name)
    add = Adder(state, host, record, become)

    wanted = units.packages(plan, firewall)
    installed = host.get_fact(DebPackages, _sudo=become) or {}
    missing = [p for p in wanted if p not in installed]
    if missing:  # apt-get update only when something is missing: a second `up` touches nothing
        add("package lists", server.shell, commands=[APT_UPDATE])
        add("packages", apt.packages, packages=missing, no_recommends=True)

    add("group webinfra", server.group, group=units.GROUP, system=True)
    for user in units.users(plan):
        if user in units.OWN_USERS:
            add(
                f"user {user}",
                server.user,
                user=user,
                system=True,
                shell="/usr/sbin/nologin",
                home=str(units.SERVER_DATA),
                ensure_home=False,
                # Its primary group: as a supplementary one pyinfra would add it again on every run.
                group=units.GROUP,
            )
        else:
            add(f"user {user}", server.user, user=user, groups=[units.GROUP], append=True, ensure_home=False)
    # Every Debian unit of a daemon webinfra runs, whether this host runs it or not: a server with the package
    # installed (an image with every daemon, a former role) must not hold the port another daemon needs.
    for distro_unit in sorted(set(units.DISTRO_UNITS.values())):
        add(f"Debian's {distro_unit} off", systemd.service, service=distro_unit, running=False, enabled=False)

    for path, user, group, mode in units.DIRECTORIES:
        add(f"directory {path}", files.directory, path=path, user=user, group=group, mode=mode)
    add("tmpfiles", files.put, src=io.StringIO(units.tmpfiles()), dest=units.TMPFILES, mode="644")

    changed_by_service: dict[str, list[OperationMeta]] = {svc.name: [] for svc in plan.services}
    secrets = referenced(plan, SECRET_REF)
    pki = referenced(plan, PKI_REF)
    by_secret: dict[str, list[str]] = {}
    for svc in plan.services:
        text = "\n".join([f.content for f in plan.files_of(svc)] + list(svc.argv) + [v for _, v in svc.env])
        for name in [*secrets, *pki]:
            if name in text:
                by_secret.setdefault(name, []).append(svc.name)
    for directory, names, local_dir in (("secrets", secrets, local.secrets), ("pki", pki, local.pki)):
        for name, users in sorted(names.items()):
            owner, group, mode = ownership(name, users)
            meta = add(
                f"{directory}/{name}",
                files.put,
                src=str(local_dir / name),
                dest=str(SERVER_ETC / directory / name),
                user=owner,
                group=group,
                mode=mode,
            )
            for svc_name in by_secret.get(name, []):
                changed_by_service[svc_name].append(meta)

    for svc in plan.services:
        if svc.name in CLIENT_FILES:  # a file holding a password: not in the plan, written from here
            client, content = CLIENT_FILES[svc.name](plan, local)
            meta = add(
                f"file {client}",
                files.put,
                src=io.StringIO(content),
                dest=str(client),
                user=units.USER_OF[svc.name],
                group=units.GROUP,
                mode="600",
            )
            changed_by_service[svc.name].append(meta)

    for spec in plan.files:
        meta = add(
            f"file {spec.path}",
            files.put,
            src=io.StringIO(spec.content),
            dest=str(spec.path),
            user=owner_of(plan, spec.path),
            group=units.GROUP,
            mode=f"{spec.mode:o}",
        )
        for svc in plan.services:
            if spec.path in svc.configs:
                changed_by_service[svc.name].append(meta)

    if release is not None and any(units.runs_python(s) for s in plan.services):
        wheel_dir = f"{units.WHEELS}/{release.ident}"
        marker = f"{release.venv}/.installed"
        # An installed release needs none of its wheels: one fact instead of a checksum per wheel (~30), a
        # second `up` of an app server's unchanged release asks one question.
        if host.get_fact(File, path=marker, _sudo=become) is None:
            for wheel in release.wheels:
                add(f"wheel {wheel.name}", files.put, src=str(wheel), dest=f"{wheel_dir}/{wheel.name}", mode="644")
        pip = f"{release.venv}/bin/pip install -q --no-index --find-links {wheel_dir}"
        add(
            f"release {release.ident}",
            unless_exists,
            path=marker,
            commands=[
                f"rm -rf {release.venv}",
                f"python3 -m venv {release.venv}",
                f"{pip} --no-deps webinfra",
                f"{pip} -r {wheel_dir}/requirements.txt",
                f"touch {marker}",
            ],
        )

    for svc in plan.services:
        if svc.name == "mariadb":
            datadir = units.SERVER_DATA / "mariadb"
            add("mariadb datadir", files.directory, path=str(datadir), user="mysql", group="mysql", mode="750")
            add(
                "mariadb system tables",
                unless_exists,
                path=f"{datadir}/mysql",
                commands=[
                    f"mariadb-install-db --no-defaults --datadir={datadir} --tmpdir={units.SERVER_DATA / 'tmp'} "
                    "--user=mysql --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve "
                    ">/dev/null",
                ],
            )

    if firewall:
        ruleset = next((f for f in plan.files if f.path.name == "firewall.nft"), None)
        if ruleset is not None:
            conf = add(
                "nftables.conf",
                files.put,
                # No `flush ruleset`: the included file replaces only webinfra's own table (atomically), so a
                # reload keeps the fault-injection table and any table the server's owner keeps.
                src=io.StringIO(f'#!/usr/sbin/nft -f\n# Written by webinfra.\ninclude "{ruleset.path}"\n'),
                dest=NFTABLES_CONF,
                mode="755",
            )
            rules = next(m for n, m in record.ops if n == f"file {ruleset.path}")
            add("nftables", systemd.service, service="nftables.service", running=True, enabled=True)
            if not dry:
                add(
                    "nftables reload",
                    systemd.service,
                    service="nftables.service",
                    reloaded=True,
                    _if=lambda: conf.did_change() or rules.did_change(),
                )

    unit_metas: dict[str, OperationMeta] = {}
    for svc in plan.services:
        u = units.unit(svc, cluster)
        unit_metas[svc.name] = add(
            f"unit {u.name}", files.put, src=io.StringIO(u.text), dest=f"{units.UNIT_DIR}/{u.name}", mode="644"
        )
    if not dry:
        metas = list(unit_metas.values())
        add("systemctl daemon-reload", systemd.daemon_reload, _if=lambda: any(m.did_change() for m in metas))

    for svc in plan.services:
        if svc.name not in hold:
            _service_ops(
                add, svc, cluster, unit_metas[svc.name], changed_by_service[svc.name], dry or svc.name in quiet
            )
    return record


def _service_ops(
    add: Adder, svc: ServiceSpec, cluster: str, unit_meta: OperationMeta, inputs: list[OperationMeta], no_reload: bool
) -> None:
    u = units.unit(svc, cluster)
    started = add(f"{svc.name} enabled and running", systemd.service, service=u.name, running=True, enabled=True)
    if no_reload:  # a dry run, or a `quiet` service
        return
    # A daemon that was running before this `up` and whose unit, configs or secrets changed: the unit or a
    # daemon without reload restarts; the others reload in place.

    def configs_changed() -> bool:
        return not started.did_change() and any(m.did_change() for m in inputs) and not unit_meta.did_change()

    def must_restart() -> bool:
        return not started.did_change() and (unit_meta.did_change() or (not u.reloads and configs_changed()))

    if u.reloads:
        add(f"{svc.name} reload", systemd.service, service=u.name, reloaded=True, _if=configs_changed)
    add(f"{svc.name} restart", systemd.service, service=u.name, restarted=True, _if=must_restart)
