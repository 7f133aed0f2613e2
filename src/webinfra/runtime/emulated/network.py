"""The emulated network of a cluster: one Linux bridge in the machine's namespace (which plays the client
side and holds the gateway address), and per host a network namespace joined to it by a veth pair.

Names are derived from the cluster name so that `down` removes exactly what `up` created:
    bridge    wib-<cluster>                        (<= 15 chars: cluster names are at most 8)
    namespace wi-<cluster>-<host>
    veth      wh<cluster><host number, 5 digits>   (the peer inside the namespace is called eth0)
The host number is the host's offset in the subnet (its address minus the network address; < 65536 since a
subnet is at least /16), so two hosts of a cluster can never get the same veth: their addresses differ.
Clusters brought up before this scheme used `wv<cluster><4 hex of a hash of the host name>`, which could
clash (w99 and w201); their recorded veths keep their names (`ClusterNetwork.build`).
No default route is set inside the namespaces and no NAT is added: the cluster subnet never leaves the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from webinfra.parallel import map_ordered
from webinfra.runtime.machine import CommandError


def bridge_name(cluster: str) -> str:
    return f"wib-{cluster}"


def netns_name(cluster: str, host: str) -> str:
    return f"wi-{cluster}-{host}"


def veth_name(cluster: str, host_number: int) -> str:
    return f"{VETH_PREFIX}{cluster}{host_number:05d}"


VETH_PREFIX = "wh"
LEGACY_VETH_PREFIX = "wv"  # 4 hex of sha1(host name): still removed by `sweep_cluster`


def host_number(subnet: ipaddress.IPv4Network, address: str) -> int:
    return int(ipaddress.IPv4Address(address)) - int(subnet.network_address)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise CommandError("localhost", argv, proc.returncode, proc.stderr)
    return proc


def existing_namespaces() -> set[str]:
    out = _ip("-o", "netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link_in_place(brief_addresses: str, cidr: str) -> bool:
    """From `ip -br -4 addr show` inside a host: its loopback is up and eth0 is up with `cidr`."""
    states = {}
    for line in brief_addresses.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            states[fields[0].split("@")[0]] = (fields[1], fields[2:])
    lo, eth0 = states.get("lo"), states.get("eth0")
    return lo is not None and lo[0] != "DOWN" and eth0 is not None and eth0[0] == "UP" and cidr in eth0[1]


def link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def foreign_overlaps(subnet: ipaddress.IPv4Network, own_bridge: str) -> list[str]:
    """Interfaces of the machine (other than our bridge) with an address inside `subnet`."""
    out = _ip("-o", "-4", "addr", "show", check=False).stdout
    clashes = []
    for line in out.splitlines():
        parts = line.split()
        dev, cidr = parts[1], parts[3]
        if dev != own_bridge and ipaddress.IPv4Interface(cidr).network.overlaps(subnet):
            clashes.append(f"{dev} {cidr}")
    return clashes


def namespace_pids(netns: str) -> list[int]:
    """PIDs of the processes inside a namespace: all ours, since the namespace is."""
    out = _ip("netns", "pids", netns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def set_link(dev: str, *, up: bool) -> None:
    _ip("link", "set", dev, "up" if up else "down", check=False)


def kill_namespace(netns: str) -> None:
    """SIGKILL whatever still runs inside one of our namespaces, then delete it."""
    for pid in namespace_pids(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _ip("netns", "del", netns, check=False)


def sweep_cluster(cluster: str) -> list[str]:
    """Remove every namespace, veth and bridge named after `cluster`, even without a record of them
    (a crashed run whose state directory is gone). Returns what was removed."""
    removed = []
    for ns in sorted(existing_namespaces()):
        if ns.startswith(f"wi-{cluster}-"):
            kill_namespace(ns)
            removed.append(ns)
    out = _ip("-o", "link", "show", check=False).stdout
    for line in out.splitlines():
        dev = line.split(":")[1].strip().split("@")[0]
        if _is_veth_of(dev, cluster):
            _ip("link", "del", dev, check=False)
            removed.append(dev)
    if link_exists(bridge_name(cluster)):
        _ip("link", "del", bridge_name(cluster), check=False)
        removed.append(bridge_name(cluster))
    return removed


def _is_veth_of(dev: str, cluster: str) -> bool:
    new, legacy = f"{VETH_PREFIX}{cluster}", f"{LEGACY_VETH_PREFIX}{cluster}"
    if dev.startswith(new) and len(dev) == len(new) + 5:
        return dev[len(new) :].isdigit()
    return dev.startswith(legacy) and len(dev) == len(legacy) + 4


@dataclass(frozen=True)
class HostLink:
    host: str
    netns: str
    veth: str
    address: str


@dataclass(frozen=True)
class ClusterNetwork:
    cluster: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    links: tuple[HostLink, ...]

    @property
    def bridge(self) -> str:
        return bridge_name(self.cluster)

    @classmethod
    def build(
        cls,
        cluster: str,
        subnet: ipaddress.IPv4Network,
        gateway: ipaddress.IPv4Address,
        hosts: Sequence[tuple[str, str]],
        previous: ClusterNetwork | None = None,
    ) -> ClusterNetwork:
        """`previous`: what `up` created before (network.json); hosts recorded there with a legacy veth name
        keep it (the interface exists under that name)."""
        # Only legacy names are kept: they can never equal a new one (other prefix), nor each other (they ran).
        kept = {
            link.host: link.veth
            for link in (previous.links if previous else ())
            if _is_veth_of(link.veth, cluster) and link.veth.startswith(LEGACY_VETH_PREFIX)
        }
        links = tuple(
            HostLink(h, netns_name(cluster, h), kept.get(h) or veth_name(cluster, host_number(subnet, a)), a)
            for h, a in hosts
        )
        return cls(cluster, subnet, gateway, links)

    # ---- creation (idempotent) ----
    def ensure_bridge(self) -> None:
        if not link_exists(self.bridge):
            _ip("link", "add", self.bridge, "type", "bridge")
        cidr = f"{self.gateway}/{self.subnet.prefixlen}"
        if cidr not in _ip("-o", "-4", "addr", "show", "dev", self.bridge).stdout:
            _ip("addr", "add", cidr, "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def ensure_host(self, link: HostLink) -> None:
        if link.netns not in existing_namespaces():
            _ip("netns", "add", link.netns)
        _ip("-n", link.netns, "link", "set", "lo", "up")
        if _ip("-n", link.netns, "link", "show", "dev", "eth0", check=False).returncode != 0:
            if link_exists(link.veth):
                _ip("link", "del", link.veth)
            _ip("link", "add", link.veth, "type", "veth", "peer", "name", "eth0", "netns", link.netns)
        _ip("link", "set", link.veth, "master", self.bridge, "up")
        cidr = f"{link.address}/{self.subnet.prefixlen}"
        if cidr not in _ip("-n", link.netns, "-o", "-4", "addr", "show", "dev", "eth0").stdout:
            _ip("-n", link.netns, "addr", "add", cidr, "dev", "eth0")
        _ip("-n", link.netns, "link", "set", "eth0", "up")

    def ensure(self) -> None:
        self.ensure_bridge()
        namespaces = existing_namespaces()
        for link in self.links:  # one at a time: the first `ip netns add` of a machine sets up /run/netns
            if link.netns not in namespaces:
                _ip("netns", "add", link.netns)
        # A host whose link is already as wanted costs one `ip` call (the unchanged `up`), not seven.
        enslaved = self._veths_up_on_bridge()
        map_ordered(lambda link: None if self._in_place(link, enslaved) else self.ensure_host(link), self.links)

    def _veths_up_on_bridge(self) -> set[str]:
        out = _ip("-br", "link", "show", "master", self.bridge, check=False).stdout
        return {line.split()[0].split("@")[0] for line in out.splitlines() if line.split()[1:2] == ["UP"]}

    def _in_place(self, link: HostLink, veths_up: set[str]) -> bool:
        if link.veth not in veths_up:
            return False
        brief = _ip("-n", link.netns, "-br", "-4", "addr", "show", check=False).stdout
        return link_in_place(brief, f"{link.address}/{self.subnet.prefixlen}")

    # ---- removal ----
    def remove_host(self, link: HostLink) -> None:
        if link.netns in existing_namespaces():
            kill_namespace(link.netns)
        if link_exists(link.veth):
            _ip("link", "del", link.veth, check=False)

    def remove(self) -> None:
        for link in self.links:
            self.remove_host(link)
        if link_exists(self.bridge):
            _ip("link", "del", self.bridge, check=False)

    # ---- record of what was created, so `down` works even if the topology file changed ----
    def save(self, path: Path) -> None:
        data = {
            "cluster": self.cluster,
            "subnet": str(self.subnet),
            "gateway": str(self.gateway),
            "links": [link.__dict__ for link in self.links],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: Path) -> ClusterNetwork | None:
        try:
            data = json.loads(path.read_text())
            return cls(
                data["cluster"],
                ipaddress.IPv4Network(data["subnet"]),
                ipaddress.IPv4Address(data["gateway"]),
                tuple(HostLink(**link) for link in data["links"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):  # not written by `save`: nothing known was created
            return None
