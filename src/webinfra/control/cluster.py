"""A running cluster: bring it up from a plan, take it down, start/stop hosts and services, and read
its status. The CLI and the tests drive everything through `Cluster`.

`up` is idempotent: each step checks before it acts (namespace exists? service running with the same
config?), so a second `up` changes nothing that runs. `down` stops every tracked process in reverse start
order and removes exactly the namespaces, veths and bridge recorded in network.json.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from webinfra.control import etcd_access, events, hastate
from webinfra.model import Role, Topology, load_topology, parse_topology
from webinfra.parallel import map_ordered, serialized
from webinfra.plan.build import SITE_ADMIN_SECRET, SITE_SIGNING_SECRET, build_plan
from webinfra.plan.ha import AGENT_TOKEN_SECRET, ETCD_AGENT_SECRET, ETCD_ROOT_SECRET
from webinfra.plan.layout import Layout, state_root
from webinfra.plan.spec import SERVICE_ORDER, ClusterPlan, HostPlan, ServiceSpec, Step
from webinfra.runtime import Machine
from webinfra.runtime.emulated import ClusterNetwork, HostLink, NetnsMachine, foreign_overlaps
from webinfra.services import firewall, haproxy, keepalived, mariadb, pki, releases, supervisor  # noqa: F401 (hooks)
from webinfra.services import monitoring as _monitoring_hooks  # noqa: F401 (registers the exporters' start hooks)
from webinfra.services.secrets import ensure_secret

Progress = Callable[[str, str, str], None]  # (host, service or step, what happened)


def _quiet(host: str, what: str, action: str) -> None:
    pass


class ClusterError(RuntimeError):
    """An operation on a cluster that cannot proceed; the message is for the user."""


class UsageError(ClusterError):
    """The user named something that does not exist (host, service, value out of range): exit 2."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("webinfra needs root to create network namespaces and run daemons (try: sudo)")


@dataclass
class Cluster:
    topology: Topology
    layout: Layout
    source_text: str = ""

    def __post_init__(self) -> None:
        # The code each app host runs is what `deploy` recorded, so `up` never rolls a deploy back.
        self.plan: ClusterPlan = build_plan(self.topology, self.layout, releases=releases.deployed(self.layout))
        topo = self.topology
        self.network = ClusterNetwork.build(
            topo.name,
            topo.network.subnet,
            topo.gateway,
            [(h.name, str(topo.address_of(h.name))) for h in topo.hosts],
            previous=ClusterNetwork.load(self.layout.network_file),
        )
        self.hosts: dict[str, Machine] = {link.host: self._machine(link) for link in self.network.links}

    def _machine(self, link: HostLink) -> NetnsMachine:
        return NetnsMachine(link.host, link.address, link.netns, self.layout.host(link.host), link.veth)

    # ---- finding a cluster ----
    @classmethod
    def from_file(cls, path: str | Path | None, root: Path | None = None) -> Cluster:
        topo = load_topology(path)
        text = Path(path).read_text() if path else ""
        return cls(topo, Layout.for_cluster(topo.name, root), text)

    @classmethod
    def existing(cls, name: str | None = None, root: Path | None = None) -> Cluster:
        """The cluster `name` as last brought up; with no name, the only one there is."""
        base = root or state_root()
        if name is None:
            names = sorted(p.parent.name for p in base.glob("*/topology.toml")) if base.is_dir() else []
            if not names:
                raise UsageError(f"no cluster found under {base}: run `webinfra up` first")
            if len(names) > 1:
                raise UsageError(f"several clusters under {base} ({', '.join(names)}): choose one with --cluster")
            name = names[0]
        layout = Layout.for_cluster(name, base)
        if not layout.topology_file.exists():
            raise UsageError(f"no cluster named {name!r} under {base}")
        text = layout.topology_file.read_text()
        return cls(parse_topology(text, str(layout.topology_file)), layout, text)

    # ---- lookups ----
    def host_plan(self, name: str) -> HostPlan:
        try:
            return self.plan.host(name)
        except KeyError:
            names = ", ".join(h.name for h in self.topology.hosts)
            raise UsageError(f"unknown host {name!r} (hosts: {names})") from None

    def service_plan(self, host: str, service: str) -> ServiceSpec:
        hp = self.host_plan(host)
        try:
            return hp.service(service)
        except KeyError:
            names = ", ".join(s.name for s in hp.services) or "none"
            raise UsageError(f"host {host!r} runs no service {service!r} (it runs: {names})") from None

    # ---- up / down ----
    def up(self, progress: Progress = _quiet) -> None:
        require_root()
        clashes = foreign_overlaps(self.topology.network.subnet, self.network.bridge)
        if clashes:
            raise UsageError(
                f"network.subnet = {self.topology.network.subnet} overlaps addresses already on this machine "
                f"({'; '.join(clashes)}): choose another subnet"
            )
        progress = serialized(progress)  # steps of one phase report from several threads
        self.layout.cluster_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_hosts(progress)
        self.network.ensure()
        self.network.save(self.layout.network_file)
        progress(
            "network",
            "bridge",
            f"{self.network.bridge} {self.topology.gateway}/{self.topology.network.subnet.prefixlen}",
        )
        self.layout.topology_file.write_text(self.source_text or _default_text())
        map_ordered(lambda hp: self._prepare_host(hp, progress), self.plan.hosts)
        site_secrets = (SITE_SIGNING_SECRET, SITE_ADMIN_SECRET)
        for secret in ("db-site", "db-repl", AGENT_TOKEN_SECRET, *site_secrets, ETCD_ROOT_SECRET, ETCD_AGENT_SECRET):
            ensure_secret(self.layout, secret)
        self._ensure_pki(progress)
        # Every host's firewall is in place before any service listens.
        map_ordered(lambda hp: self._apply_firewall(hp, progress), self.plan.hosts)
        # Phases in order (a cluster-wide wait after some); within a phase, the steps of a wave start
        # side by side: they are one service on different hosts and do not depend on each other.
        for service, waves in self.plan.start_phases():
            for wave in waves:
                map_ordered(lambda step: self._start(step[0], step[1], progress), wave)
            self._after_phase(service, progress)

    def _prepare_host(self, hp: HostPlan, progress: Progress) -> None:
        """The host's directories and init process; services its role no longer has stopped."""
        for d in self.layout.host(hp.name).all():
            d.mkdir(parents=True, exist_ok=True)
        self.hosts[hp.name].connect()
        self._stop_unplanned(hp, progress)

    def _after_phase(self, service: str, progress: Progress) -> None:
        """Cluster-wide waits between start phases of the hardened topology."""
        if service == "etcd":
            if not hastate.wait_etcd_quorum(self):
                raise ClusterError("etcd did not reach quorum within 30s (see the hosts' log/etcd.log)")
            progress("etcd", "quorum", "healthy")
            try:
                changes = etcd_access.ensure_auth(self)
            except etcd_access.EtcdAuthError as exc:
                raise ClusterError(str(exc)) from None
            for change in changes:
                progress("etcd", "auth", change)
        elif service == "mariadb" and self.topology.ha:
            hastate.bootstrapped_marker(self).touch()
        elif service == "keepalived":
            holder = hastate.wait_for_vip(self)
            if holder is None:
                raise ClusterError("no load balancer took the virtual IP within 15s (see the LBs' log/keepalived.log)")
            progress(holder, "keepalived", f"holds the VIP {self.topology.vip}")
        elif service == "agent":
            leader = hastate.wait_for_leader(self)
            if leader is None:
                raise ClusterError("no DB leader elected within 30s (see the DB hosts' log/agent.log)")
            progress(leader, "agent", "leader (writable primary)")
            mariadb.ensure_schema(self.hosts[leader], self.plan.host(leader), self.topology)

    def _ensure_pki(self, progress: Progress) -> None:
        """Certificates for the topology's names (reused while still good). A running service whose
        certificate, or the CA, was just replaced is stopped here, so the start phase starts it on the new one."""
        changed = set(pki.ensure_pki(self.topology, self.layout))
        if not changed:
            return
        progress("pki", "certs", "issued " + ", ".join(sorted(changed)))
        for hp in self.plan.hosts:
            for svc in hp.services:
                uses = {
                    "haproxy": {"ca", pki.SITE},
                    "nginx": {"ca", hp.name},
                    "mariadb": {"ca", hp.name},
                    "etcd": {"ca", hp.name},
                    "agent": {"ca"},
                    "app": {"ca"},
                }.get(svc.name, set())
                if uses & changed and supervisor.stop(self.hosts[hp.name], hp, svc):
                    progress(hp.name, svc.name, "stopped (new certificate)")

    def _apply_firewall(self, hp: HostPlan, progress: Progress) -> None:
        action = firewall.apply(self.hosts[hp.name], hp)
        if action != "none":
            progress(hp.name, "firewall", action)

    def _stop_unplanned(self, hp: HostPlan, progress: Progress) -> None:
        """Stop services still running on a host whose topology no longer gives it their role."""
        planned = {svc.name for svc in hp.services}
        machine = self.hosts[hp.name]
        for name in machine.services():
            if name not in planned:
                machine.stop_service(name, timeout=10.0)
                progress(hp.name, name, "stopped (role removed)")

    def _start(self, hp: HostPlan, svc: ServiceSpec, progress: Progress) -> None:
        host = self.hosts[hp.name]
        action = supervisor.start(host, hp, svc)
        progress(hp.name, svc.name, action)
        if svc.name == "mariadb":
            self._after_db_start(hp, progress)
        elif svc.name == "haproxy" and action != "unchanged":
            self._apply_weights(hp)

    def _after_db_start(self, hp: HostPlan, progress: Progress) -> None:
        topo = self.topology
        host = self.hosts[hp.name]
        primary = topo.db_primary
        assert primary is not None
        if topo.ha and hastate.bootstrapped_marker(self).exists():
            return  # roles are the agents' business once the cluster is initialised
        if hp.name == primary.name:
            mariadb.bootstrap_primary(host, hp, topo, self.layout)
            progress(hp.name, "mariadb", "primary ready")
            return
        mariadb.setup_replica(host, hp, topo, self.layout, str(topo.address_of(primary.name)))
        primary_plan = self.plan.host(primary.name)
        if supervisor.running(self.hosts[primary.name], primary_plan.service("mariadb")):
            target = mariadb.gtid_binlog_pos(self.hosts[primary.name], primary_plan)
            mariadb.wait_caught_up(host, hp, target)
        progress(hp.name, "mariadb", "replica in sync")

    def down(self, purge: bool = False, progress: Progress = _quiet) -> None:
        require_root()
        recorded = ClusterNetwork.load(self.layout.network_file) or self.network
        progress = serialized(progress)

        def stop(step: Step) -> None:
            hp, svc = step
            if supervisor.stop(self.hosts[hp.name], hp, svc):
                progress(hp.name, svc.name, "stopped")

        for _service, waves in reversed(self.plan.start_phases()):  # the start order, backwards
            for wave in reversed(waves):
                map_ordered(stop, wave)
        for link in recorded.links:
            self._stop_leftovers(link)
        recorded.remove()
        progress("network", "bridge", "removed")
        self.layout.network_file.unlink(missing_ok=True)
        shutil.rmtree(self.layout.socket_dir, ignore_errors=True)
        if purge:
            shutil.rmtree(self.layout.cluster_dir, ignore_errors=True)
            progress("state", str(self.layout.cluster_dir), "purged")

    def _stop_leftovers(self, link: HostLink) -> None:
        """Stop any service of a host the current plan does not know (e.g. a role removed), then its hostd."""
        machine = self._machine(link)
        for name in machine.services():
            machine.stop_service(name, timeout=10.0)
        machine.stop_hostd()

    def _remove_stale_hosts(self, progress: Progress) -> None:
        recorded = ClusterNetwork.load(self.layout.network_file)
        if recorded is None:
            return
        wanted = {link.host for link in self.network.links}
        for link in recorded.links:
            if link.host not in wanted:
                self._stop_leftovers(link)
                recorded.remove_host(link)
                progress(link.host, "host", "removed")

    # ---- operating hosts and services ----
    def services_of(self, host: str, service: str | None) -> list[ServiceSpec]:
        hp = self.host_plan(host)
        if service is None:
            return sorted(hp.services, key=lambda s: SERVICE_ORDER.index(s.name))
        return [self.service_plan(host, service)]

    def start(self, host: str, service: str | None = None, progress: Progress = _quiet) -> None:
        require_root()
        hp = self.host_plan(host)
        if service is None:
            # A whole host: make sure it exists (its namespace may have been removed) and has its rules.
            # Starting one service needs neither, and may be asked from inside the host itself (the HA
            # agent restarting its MariaDB after a re-clone), where the bridge is not visible.
            self.network.ensure_host(next(link for link in self.network.links if link.host == host))
            self.hosts[host].connect()
            self._apply_firewall(hp, progress)  # a namespace made again has no rules yet
        else:
            self.hosts[host].connect()
        for svc in self.services_of(host, service):
            self._start(hp, svc, progress)

    def stop(self, host: str, service: str | None = None, *, kill: bool = False, progress: Progress = _quiet) -> None:
        require_root()
        hp = self.host_plan(host)
        for svc in reversed(self.services_of(host, service)):
            if supervisor.stop(self.hosts[host], hp, svc, kill=kill):
                progress(host, svc.name, "killed" if kill else "stopped")

    # ---- load balancer ----
    def lb_plan(self) -> HostPlan:
        return self.plan.host(self.topology.entry_host.name)

    def runtime(self) -> haproxy.HaproxyRuntime:
        return haproxy.runtime_for(self.hosts[self.lb_plan().name], self.lb_plan())

    def set_weight(self, server: str, weight: int) -> None:
        """Change a backend's weight live on every running load balancer (runtime API, no reload). The
        weight is also kept in weights.json and applied to an LB that starts later (e.g. the passive one
        coming back), so both LBs of a pair always agree."""
        webs = [h.name for h in self.topology.with_role(Role.WEB)]
        if server not in webs:
            raise UsageError(f"unknown server {server!r} (load-balancer backends: {', '.join(webs)})")
        if not 0 <= weight <= 256:
            raise UsageError(f"weight = {weight}: must be between 0 and 256")
        overrides = self.weight_overrides()
        overrides[server] = weight
        self._weights_file.write_text(json.dumps(overrides, indent=2))
        applied = [lb.name for lb in self.topology.with_role(Role.LB) if self._apply_weights(self.plan.host(lb.name))]
        if not applied:
            raise ClusterError(
                f"no load balancer's runtime API answered (is one running? `webinfra start {self.lb_plan().name}`)"
            )
        events.record(self.layout, "weight_changed", server, f"weight {weight} on {', '.join(applied)}")

    @property
    def _weights_file(self) -> Path:
        return self.layout.cluster_dir / "weights.json"

    def weight_overrides(self) -> dict[str, int]:
        try:
            data: dict[str, int] = json.loads(self._weights_file.read_text())
            return data
        except (FileNotFoundError, ValueError):
            return {}

    def _apply_weights(self, lb: HostPlan) -> bool:
        """Apply live weight overrides to one LB; False if its runtime API does not answer."""
        rt = haproxy.runtime_for(self.hosts[lb.name], lb)
        try:
            servers = {s.name for s in rt.servers() if s.backend == "site"}
            for name, weight in self.weight_overrides().items():
                if name in servers:
                    rt.set_weight("site", name, weight)
        except haproxy.RuntimeApiError:
            return False
        haproxy.save_server_state(self.hosts[lb.name], lb, lb.service("haproxy"))
        return True


def _default_text() -> str:
    from webinfra.model.load import DEFAULT_TOPOLOGY

    return DEFAULT_TOPOLOGY()
