"""A running cluster: bring it up from a plan, take it down, start/stop hosts and services, and read
its status. The CLI and the tests drive everything through `Cluster`.

`up` is idempotent: each step checks before it acts (namespace exists? service running with the same
config?), so a second `up` changes nothing that runs. `down` stops every tracked process in reverse start
order and removes exactly the namespaces, veths and bridge recorded in network.json.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from webinfra.control import events, hastate, machines
from webinfra.control.machines import EmulatedFleet, Fleet
from webinfra.daemons import firewall, haproxy, registry
from webinfra.errors import ClusterError, UsageError
from webinfra.model import Role, Topology, load_topology, parse_topology
from webinfra.parallel import map_ordered, run_graph, serialized
from webinfra.plan.build import build_plan
from webinfra.plan.daemons.agent import AGENT_TOKEN_SECRET
from webinfra.plan.daemons.app import SITE_ADMIN_SECRET, SITE_SIGNING_SECRET
from webinfra.plan.daemons.etcd import ETCD_AGENT_SECRET, ETCD_ROOT_SECRET
from webinfra.plan.spec import SERVICE_ORDER, AppRelease, ClusterPlan, HostPlan, ServiceSpec, Step
from webinfra.runtime import Machine
from webinfra.runtime.emulated import ClusterNetwork, HostLink, NetnsMachine, foreign_overlaps
from webinfra.services import releases, supervisor
from webinfra.services.secrets import ensure_secret
from webinfra.state import TOPOLOGY_FILE, Layout, state_root

Progress = Callable[[str, str, str], None]  # (host, service or step, what happened)


def _quiet(host: str, what: str, action: str) -> None:
    pass


def require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("webinfra needs root to create network namespaces and run daemons (try: sudo)")


@dataclass
class Cluster:
    topology: Topology
    layout: Layout
    source_text: str = ""

    def __post_init__(self) -> None:
        registry.install_hooks()
        # The machines the hosts are, from the factory of `[machines] kind` (control/machines.py).
        self.fleet: Fleet = machines.fleet_for(self.topology, self.layout)
        self.plan: ClusterPlan = self.plan_for()
        self.hosts: dict[str, Machine] = self.fleet.hosts

    def plan_for(
        self, deployed: Mapping[str, AppRelease] | None = None, draining: frozenset[str] = frozenset()
    ) -> ClusterPlan:
        """The plan on these machines with the code each app host runs: `deployed`, default what `deploy`
        recorded, so `up` never rolls a deploy back (the fleet's `code` says how the plan names a release)."""
        recorded = releases.deployed(self.layout) if deployed is None else deployed
        return build_plan(
            self.topology,
            self.fleet.plan_layout,
            self.fleet.plan_python,
            releases=self.fleet.code.plan_releases(recorded),
            draining=draining,
        )

    @property
    def servers(self) -> bool:
        """The hosts are servers over SSH: `up`, `down` and `plan --diff` go through servers/ (pyinfra)."""
        return self.topology.machines.ssh

    @property
    def network(self) -> ClusterNetwork:
        """The emulated hosts' network (bridge, namespaces, veths)."""
        if not isinstance(self.fleet, EmulatedFleet):
            raise machines.not_on_servers("this operation (it changes the emulated network)")
        return self.fleet.network

    def _machine(self, link: HostLink) -> NetnsMachine:
        assert isinstance(self.fleet, EmulatedFleet)  # only the emulated up/down call it
        return self.fleet.machine(link)

    def require_local(self) -> None:
        """Root, where the machines are this machine's namespaces (servers need none)."""
        if self.fleet.needs_root:
            require_root()

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
            names = sorted(p.parent.name for p in base.glob(f"*/{TOPOLOGY_FILE}")) if base.is_dir() else []
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
        if self.servers:
            raise machines.not_on_servers("Cluster.up (servers are deployed by `webinfra up`, through servers/)")
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
        # Each phase (a cluster-wide wait after some) starts once the phases it waits for are done
        # (START_AFTER: the front tier comes up while the databases elect a leader); within a phase, the
        # steps of a wave start side by side: one service on different hosts, independent of each other.
        phases = dict(self.plan.start_phases())
        if self.topology.ha and self.layout.db_bootstrapped_marker.exists() and "mariadb" in phases:
            # Initialised: no replica is set up any more (roles are the agents'), so no node waits for another.
            phases["mariadb"] = [[step for wave in phases["mariadb"] for step in wave]]

        def run_phase(service: str) -> None:
            for wave in phases[service]:
                map_ordered(lambda step: self._start(step[0], step[1], progress), wave)
            self._after_phase(service, progress)

        run_graph(self.plan.phase_graph(), run_phase)

    def _prepare_host(self, hp: HostPlan, progress: Progress) -> None:
        """The host's directories and init process; services its role no longer has stopped."""
        for d in self.layout.host(hp.name).all():
            d.mkdir(parents=True, exist_ok=True)
        self.hosts[hp.name].connect()
        self._stop_unplanned(hp, progress)

    def _after_phase(self, service: str, progress: Progress) -> None:
        """The daemon's cluster-wide wait between start phases (daemons/registry.py), if it has one."""
        step = registry.daemon(service).after_phase
        if step is not None:
            step(self, progress)

    def _ensure_pki(self, progress: Progress) -> None:
        """Certificates for the topology's names (reused while still good). A running service whose
        certificate, or the CA, was just replaced is stopped here, so the start phase starts it on the new one."""
        # Imported here: it loads `cryptography` (~0.05 s), which only `up` needs, not `status` and the others.
        from webinfra.services import pki

        changed = set(pki.ensure_pki(self.topology, self.layout))
        if not changed:
            return
        progress("pki", "certs", "issued " + ", ".join(sorted(changed)))
        names = {registry.CA: "ca", registry.SITE: pki.SITE}
        for hp in self.plan.hosts:
            for svc in hp.services:
                uses = {names.get(c, hp.name) for c in registry.daemon(svc.name).certs}  # HOST: its own
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
        step = registry.daemon(svc.name).after_start
        if step is not None:
            step(self, hp, action, progress)

    def down(self, purge: bool = False, progress: Progress = _quiet) -> None:
        if self.servers:
            raise machines.not_on_servers("Cluster.down (servers are taken down by `webinfra down`, through servers/)")
        require_root()
        recorded = ClusterNetwork.load(self.layout.network_file) or self.network
        progress = serialized(progress)

        def stop(step: Step) -> None:
            hp, svc = step
            if supervisor.stop(self.hosts[hp.name], hp, svc):
                progress(hp.name, svc.name, "stopped")

        phases = dict(self.plan.start_phases())

        def stop_phase(service: str) -> None:
            waves = phases[service]
            if service == "etcd":
                waves = self._etcd_stop_waves(waves)
            for wave in reversed(waves):
                map_ordered(stop, wave)

        # The start graph backwards: a phase stops once every phase that waits for it has stopped.
        graph = self.plan.phase_graph()
        run_graph({name: tuple(o for o, deps in graph.items() if name in deps) for name in graph}, stop_phase)
        for link in recorded.links:
            self._stop_leftovers(link)
        recorded.remove()
        progress("network", "bridge", "removed")
        self.layout.network_file.unlink(missing_ok=True)
        shutil.rmtree(self.layout.socket_dir, ignore_errors=True)
        if purge:
            shutil.rmtree(self.layout.cluster_dir, ignore_errors=True)
            progress("state", str(self.layout.cluster_dir), "purged")

    def _etcd_stop_waves(self, waves: list[list[Step]]) -> list[list[Step]]:
        """The etcd members as stop waves (applied last to first): the leader alone after the others. A
        leader told to stop hands its leadership to a peer it still sees connected and waits for it to
        take over, up to ~6 s, which never happens when that peer is stopping too (measured: `down` spent
        6 s on the last etcd member). Stopped after its peers, it has none to hand over to and exits at once.
        Leader unknown: one member at a time, so a leader always hands over to a running peer."""
        steps = [step for wave in waves for step in wave]
        leader = hastate.etcd_leader(
            self, [hp.name for hp, svc in steps if supervisor.running(self.hosts[hp.name], svc)]
        )
        if leader is None:
            return [[step] for step in reversed(steps)]
        return [[step for step in steps if step[0].name == leader], [s for s in steps if s[0].name != leader]]

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
        self.require_local()
        hp = self.host_plan(host)
        if service is None:
            # A whole host: make sure it exists (its namespace may have been removed) and has its rules.
            # Starting one service needs neither, and may be asked from inside the host itself (the HA
            # agent restarting its MariaDB after a re-clone), where the bridge is not visible.
            self.fleet.ensure_host(host)
            self.hosts[host].connect()
            if not self.servers:  # a server's firewall is the nftables service `up` deployed
                self._apply_firewall(hp, progress)  # a namespace made again has no rules yet
        else:
            self.hosts[host].connect()
        for svc in self.services_of(host, service):
            self._start(hp, svc, progress)

    def stop(self, host: str, service: str | None = None, *, kill: bool = False, progress: Progress = _quiet) -> None:
        self.require_local()
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
        haproxy.save_weights(self.layout, overrides)
        applied = [
            lb.name
            for lb in self.topology.with_role(Role.LB)
            if haproxy.apply_weights(self.hosts[lb.name], self.plan.host(lb.name), self.layout)
        ]
        if not applied:
            raise ClusterError(
                f"no load balancer's runtime API answered (is one running? `webinfra start {self.lb_plan().name}`)"
            )
        events.record(self.layout, "weight_changed", server, f"weight {weight} on {', '.join(applied)}")

    def weight_overrides(self) -> dict[str, int]:
        return haproxy.weight_overrides(self.layout)


def _default_text() -> str:
    from webinfra.model.load import DEFAULT_TOPOLOGY

    return DEFAULT_TOPOLOGY()
