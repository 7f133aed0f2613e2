"""Which machines a cluster's hosts are: one factory per `[machines] kind`, so `Cluster` never builds a machine
itself.

    emulated  `EmulatedFleet`: network namespaces on this machine (the bridge, veths: `ClusterNetwork`),
              a `NetnsMachine` each; `up` and `down` build and remove them; root needed
    ssh       `SshFleet`: servers reached over SSH, an `SshMachine` each (runtime/ssh.py); they exist already,
              `webinfra up` deploys them with pyinfra (servers/); no root needed here

A new kind of machine: a class with the `Fleet` attributes, and its entry in `FLEETS`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Protocol

from webinfra.errors import UsageError
from webinfra.model import Topology
from webinfra.runtime import Machine
from webinfra.runtime.emulated import ClusterNetwork, HostLink, NetnsMachine
from webinfra.runtime.ssh import SshMachine, SshTarget
from webinfra.services.releases import CodeReleases, LocalCodeReleases
from webinfra.services.server_releases import ServerCodeReleases
from webinfra.state import Layout, ServerLayout

# The release venv `up` installed on the servers (servers/units.py RELEASES), when the state does not say.
SERVER_PYTHON = "/opt/webinfra/releases/current/bin/python"


class Fleet(Protocol):
    kind: str
    hosts: dict[str, Machine]
    needs_root: bool  # to operate these machines from here
    # The paths the plan names on a host: the emulated layout under the state dir, or a server's own.
    plan_layout: Layout
    plan_python: str
    # Where `webinfra deploy` keeps code base releases and how one becomes the app's code.
    code: CodeReleases

    def ensure_host(self, name: str) -> None:
        """Make the host exist again if it can be made (emulated: its namespace and link)."""
        ...


class EmulatedFleet:
    kind = "emulated"
    needs_root = True

    def __init__(self, topology: Topology, layout: Layout) -> None:
        self.layout = layout
        self.plan_layout = layout
        self.plan_python = sys.executable
        self.code: CodeReleases = LocalCodeReleases(layout)
        self.network = ClusterNetwork.build(
            topology.name,
            topology.network.subnet,
            topology.gateway,
            [(h.name, str(topology.address_of(h.name))) for h in topology.hosts],
            previous=ClusterNetwork.load(layout.network_file),
        )
        self.hosts: dict[str, Machine] = {link.host: self.machine(link) for link in self.network.links}

    def machine(self, link: HostLink) -> NetnsMachine:
        return NetnsMachine(link.host, link.address, link.netns, self.layout.host(link.host), link.veth)

    def ensure_host(self, name: str) -> None:
        self.network.ensure_host(next(link for link in self.network.links if link.host == name))


def ssh_target(topology: Topology, name: str) -> SshTarget:
    m = topology.machines
    address = m.address_of(name)
    key, known = m.key_of(name), m.known_hosts
    return SshTarget(
        address.user,
        address.host,
        address.port,
        os.path.expanduser(key) if key else None,
        os.path.expanduser(known) if known else None,
        m.become_of(name),
    )


def ssh_machine(topology: Topology, name: str) -> SshMachine:
    return SshMachine(name, str(topology.address_of(name)), ssh_target(topology, name))


class SshFleet:
    kind = "ssh"
    needs_root = False

    def __init__(self, topology: Topology, layout: Layout) -> None:
        self.plan_layout: Layout = ServerLayout()
        self.plan_python = _deployed_python(layout)
        self.code: CodeReleases = ServerCodeReleases(topology, layout)
        self.hosts: dict[str, Machine] = {h.name: ssh_machine(topology, h.name) for h in topology.hosts}

    def ensure_host(self, name: str) -> None:
        self.hosts[name].connect()  # a server cannot be made from here; it must answer


def _deployed_python(layout: Layout) -> str:
    """The python of the release `up` installed last (recorded next to the topology), else a stand-in:
    operations name services, not argv (the units on the servers carry the command lines)."""
    try:
        return layout.server_python_file.read_text().strip() or SERVER_PYTHON
    except OSError:
        return SERVER_PYTHON


FLEETS: dict[str, Callable[[Topology, Layout], Fleet]] = {"emulated": EmulatedFleet, "ssh": SshFleet}


def fleet_for(topology: Topology, layout: Layout) -> Fleet:
    try:
        make = FLEETS[topology.machines.kind]
    except KeyError:
        raise UsageError(f"[machines] kind = {topology.machines.kind!r}: no such kind ({', '.join(FLEETS)})") from None
    return make(topology, layout)


def not_on_servers(what: str) -> UsageError:
    """The one line for an operation that is not yet supported on SSH machines."""
    return UsageError(f'{what} is not yet supported on servers ([machines] kind = "ssh"); see docs/SERVERS.md')
