"""`webinfra plan`: what `up` would change on a cluster, against what runs now (like `terraform plan`).

Read-only. "What runs" is what the cluster's state directory records: the hosts in network.json (what `up`
created), the config files on each host (read through its machine), the services' state. For each host of the new plan:
- a host not recorded is created, one recorded but no longer in the file is removed;
- a file whose content differs from the one on disk is shown as a unified diff (a missing file: created);
- a service that does not run is started; one that runs and whose configs change is reloaded (when its
  daemon re-reads them on a signal) or restarted; one still running that the plan no longer has is stopped.
With no running cluster, everything is to be created. Secrets and certificates are not configs: `up`
makes them when missing, and the plan says nothing of them.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from webinfra.control.cluster import Cluster
from webinfra.plan.spec import SERVICE_ORDER, HostPlan
from webinfra.runtime import CommandError, Machine
from webinfra.runtime.emulated import ClusterNetwork

HostAction = Literal["create", "remove", "change", "none"]
FileAction = Literal["create", "change"]
ServiceAction = Literal["start", "reload", "restart", "stop"]
DATA_SERVICES = ("mariadb", "etcd")  # stopping one of these for good takes its data out of the cluster
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FileChange:
    path: str
    action: FileAction
    diff: str  # unified diff (from the file on disk to the new content); the whole file for `create`


@dataclass(frozen=True)
class ServiceChange:
    name: str
    action: ServiceAction
    why: str


@dataclass(frozen=True)
class HostChange:
    name: str
    action: HostAction
    address: str
    files: tuple[FileChange, ...] = ()
    services: tuple[ServiceChange, ...] = ()

    @property
    def changed(self) -> bool:
        return self.action != "none" or bool(self.files or self.services)


@dataclass(frozen=True)
class PlanDiff:
    cluster: str
    running: bool  # the cluster had been brought up (network.json exists)
    hosts: tuple[HostChange, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return any(h.changed for h in self.hosts)

    def counts(self) -> dict[str, int]:
        services = [s.action for h in self.hosts for s in h.services]
        return {
            "hosts_to_create": sum(h.action == "create" for h in self.hosts),
            "hosts_to_remove": sum(h.action == "remove" for h in self.hosts),
            "files_to_change": sum(len(h.files) for h in self.hosts),
            "services_to_start": services.count("start"),
            "services_to_reload": services.count("reload"),
            "services_to_restart": services.count("restart"),
            "services_to_stop": services.count("stop"),
        }

    def summary(self) -> str:
        if not self.changed:
            return f"No changes: cluster {self.cluster} runs what the file describes."
        c = self.counts()
        return (
            f"Plan: {c['hosts_to_create']} hosts to create, {c['hosts_to_remove']} to remove; "
            f"{c['files_to_change']} files to write; services: {c['services_to_start']} to start, "
            f"{c['services_to_reload']} to reload, {c['services_to_restart']} to restart, "
            f"{c['services_to_stop']} to stop."
        )

    def removals(self) -> list[str]:
        """What `up` would take away for good: hosts removed, databases or etcd members stopped. Needs consent."""
        out = [f"remove host {h.name}" for h in self.hosts if h.action == "remove"]
        out += [
            f"stop {s.name} on {h.name} (its data leaves the cluster)"
            for h in self.hosts
            if h.action != "remove"
            for s in h.services
            if s.action == "stop" and s.name in DATA_SERVICES
        ]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "cluster": self.cluster,
            "running": self.running,
            "changes": self.changed,
            "summary": self.counts(),
            "hosts": [asdict(h) for h in self.hosts if h.changed],
        }


def _read(machine: Machine, path: Path) -> str | None:
    """The file as the host has it, asked of its machine (not read here: a server's files are its own)."""
    try:
        return machine.read_file(path)
    except (OSError, UnicodeDecodeError, CommandError) as exc:
        return f"<unreadable: {exc.__class__.__name__}>\n"


def _unified(old: str, new: str, path: Path) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"{path} (running)", f"{path} (planned)"
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def file_changes(machine: Machine, hp: HostPlan) -> tuple[FileChange, ...]:
    out = []
    for f in hp.files:
        old = _read(machine, f.path)
        if old is None:
            out.append(FileChange(str(f.path), "create", _unified("", f.content, f.path)))
        elif old != f.content:
            out.append(FileChange(str(f.path), "change", _unified(old, f.content, f.path)))
    return tuple(out)


def service_changes(machine: Machine, hp: HostPlan, changed_files: set[str]) -> tuple[ServiceChange, ...]:
    out = []
    for svc in sorted(hp.services, key=lambda s: SERVICE_ORDER.index(s.name)):
        touched = sorted(p.name for p in svc.configs if str(p) in changed_files)
        if not machine.service_status(svc.name).running:
            out.append(ServiceChange(svc.name, "start", "not running"))
        elif touched:
            action: ServiceAction = "reload" if svc.reload_signal else "restart"
            out.append(ServiceChange(svc.name, action, "config changed: " + ", ".join(touched)))
    planned = {svc.name for svc in hp.services}
    for name in machine.services():
        if name not in planned and machine.service_status(name).running:
            out.append(ServiceChange(name, "stop", "role removed"))
    return tuple(out)


def diff(cluster: Cluster) -> PlanDiff:
    """Compare `cluster.plan` (from the topology file) with what its state directory says runs."""
    recorded = ClusterNetwork.load(cluster.layout.network_file)
    known = {link.host: link for link in recorded.links} if recorded else {}
    hosts = []
    for hp in cluster.plan.hosts:
        files = file_changes(cluster.hosts[hp.name], hp)
        services = service_changes(cluster.hosts[hp.name], hp, {f.path for f in files})
        action: HostAction = "change" if hp.name in known else "create"
        if action == "change" and not (files or services) and known[hp.name].address == hp.address:
            action = "none"
        hosts.append(HostChange(hp.name, action, hp.address, files, services))
    planned = {hp.name for hp in cluster.plan.hosts}
    for name, link in known.items():
        if name not in planned:
            hosts.append(HostChange(name, "remove", link.address))
    return PlanDiff(cluster.topology.name, recorded is not None, tuple(hosts))
