"""A lab of N Debian 12 machines on this machine: validation, where it lives on disk, up / status / down.

    <state>/_lab/images/bookworm-<hash>/   the cached root file system (shared by every lab; --image-dir)
    <state>/_lab/apt-cache/<lab>/          apt-cacher-ng's cache, kept by `down` so the next lab is warm
    <state>/_lab/<lab>/lab.json            the record `status` and `down` work from
    <state>/_lab/<lab>/network.json        bridge, namespaces, veths (runtime/emulated/network.py's ClusterNetwork)
    <state>/_lab/<lab>/ssh/                the lab's key pair, known_hosts, ssh_config
    <state>/_lab/<lab>/proxy/              apt-cacher-ng's config, logs and pid file
    <state>/_lab/<lab>/machines/<m>/       rootfs/, console.log, nspawn.json (PID + start time)

`_lab` cannot clash with a cluster's state directory: cluster names start with a letter.
Machines are node-01 … node-NN at .11 … of the subnet; the gateway (.1) is this machine's side.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from webinfra.plan.layout import state_root
from webinfra.runtime.emulated.network import ClusterNetwork, bridge_name, foreign_overlaps, link_exists
from webinfra.testbed import LabError, LabUsageError
from webinfra.testbed.image import (
    LAB_USER,
    PACKAGES,
    ImageSpec,
    debian_mirror_lines,
    ensure_image,
    mirror_lines_for,
    read_system_sources,
)
from webinfra.testbed.machine import Machine, keypair, ssh_config
from webinfra.testbed.proxy import PackageProxy, check_port_free

DEFAULT_LAB = "lab"
DEFAULT_SUBNET = "198.18.250.0/24"
MAX_MACHINES = 16
FIRST_HOST = 11  # node-01 is .11: low addresses stay free for a topology's VIPs and the gateway
IMAGES_ENV = "WEBINFRA_LAB_IMAGES"
# Never: the user's default cluster, and this machine's uplink.
FORBIDDEN = (ipaddress.IPv4Network("198.18.0.0/24"), ipaddress.IPv4Network("192.0.2.0/24"))
Say = Callable[[str], None]


@dataclass(frozen=True)
class LabSpec:
    name: str
    count: int
    subnet: ipaddress.IPv4Network
    include: tuple[str, ...] = ()  # Debian packages baked into the image on top of PACKAGES

    @classmethod
    def parse(cls, name: str, count: int, subnet: str, include: str = "") -> LabSpec:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", name):
            raise LabUsageError(f"--name {name!r}: 1-8 lowercase letters or digits, starting with a letter")
        if not 1 <= count <= MAX_MACHINES:
            raise LabUsageError(f"N = {count}: a lab has 1 to {MAX_MACHINES} machines")
        try:
            net = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as exc:
            raise LabUsageError(f"--subnet {subnet!r}: {exc}") from None
        for forbidden in FORBIDDEN:
            if net.overlaps(forbidden):
                raise LabUsageError(f"--subnet {net} overlaps {forbidden}, which the lab must never use")
        if net.num_addresses < FIRST_HOST + count + 1:
            raise LabUsageError(f"--subnet {net} is too small for {count} machines from .{FIRST_HOST}")
        extra = tuple(sorted({p.strip() for p in include.split(",") if p.strip()}))
        for package in extra:
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", package):
                raise LabUsageError(f"--include {package!r}: not a Debian package name")
        return cls(name, count, net, extra)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def machines(self) -> list[tuple[str, str]]:
        return [
            (f"node-{i:02d}", str(self.subnet.network_address + FIRST_HOST + i - 1)) for i in range(1, self.count + 1)
        ]


@dataclass(frozen=True)
class LabPaths:
    root: Path  # <state>/_lab
    images: Path

    @classmethod
    def under(cls, state_dir: Path | None, image_dir: Path | None = None) -> LabPaths:
        root = (state_dir or state_root()) / "_lab"
        env_images = os.environ.get(IMAGES_ENV)
        return cls(root, image_dir or (Path(env_images) if env_images else root / "images"))

    def lab(self, name: str) -> Path:
        return self.root / name

    def labs(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/lab.json")) if self.root.is_dir() else []

    def pick(self, name: str | None) -> str | None:
        """The lab `name`, or with no name the only lab there is (None if there is none)."""
        if name is not None:
            return name
        labs = self.labs()
        if len(labs) > 1:
            raise LabUsageError(f"several labs under {self.root} ({', '.join(labs)}): choose one with --name")
        return labs[0] if labs else None


@dataclass(frozen=True)
class Lab:
    """A lab as recorded on disk: enough for `status`, `ssh` and `down`, whatever the command line says."""

    name: str
    subnet: str
    gateway: str
    image: str
    mirror_lines: tuple[str, ...]
    machines: tuple[tuple[str, str], ...]
    directory: Path
    cache: Path

    @property
    def ssh_dir(self) -> Path:
        return self.directory / "ssh"

    @property
    def network(self) -> ClusterNetwork:
        return ClusterNetwork.build(
            self.name,
            ipaddress.IPv4Network(self.subnet),
            ipaddress.IPv4Address(self.gateway),
            self.machines,
            previous=ClusterNetwork.load(self.directory / "network.json"),  # a lab up before keeps its veth names
        )

    @property
    def proxy(self) -> PackageProxy:
        return PackageProxy(self.directory / "proxy", self.cache, self.gateway)

    def machine_list(self) -> list[Machine]:
        net = self.network
        return [
            Machine(link.host, link.address, link.netns, self.directory / "machines" / link.host) for link in net.links
        ]

    def machine(self, name: str) -> Machine:
        for machine in self.machine_list():
            if name in (machine.name, machine.address):
                return machine
        names = ", ".join(m for m, _ in self.machines)
        raise LabUsageError(f"lab {self.name!r} has no machine {name!r} (machines: {names})")

    def save(self) -> None:
        data = asdict(self)
        data["directory"], data["cache"] = str(self.directory), str(self.cache)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "lab.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, paths: LabPaths, name: str) -> Lab | None:
        record = paths.lab(name) / "lab.json"
        try:
            data = json.loads(record.read_text())
            data["mirror_lines"] = tuple(data["mirror_lines"])
            data["machines"] = tuple(tuple(m) for m in data["machines"])
            data["directory"], data["cache"] = Path(data["directory"]), Path(data["cache"])
            return cls(**data)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"{record}: unreadable lab record ({exc})") from None


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabUsageError("webinfra lab needs root (network namespaces, systemd-nspawn): try sudo")


def require_tools(*tools: tuple[str, str]) -> None:
    for binary, package in tools:
        if shutil.which(binary) is None:
            raise LabUsageError(f"{binary} is not installed (Debian package {package}; scripts/install-deps.sh --lab)")


def check_free(spec: LabSpec, paths: LabPaths) -> Lab | None:
    """Refuse (exit 2, nothing changed) what `up` must not do; returns the lab's record if it exists."""
    require_root()
    require_tools(
        ("systemd-nspawn", "systemd-container"), ("apt-cacher-ng", "apt-cacher-ng"), ("ssh", "openssh-client")
    )
    for path in (paths.root, paths.images):
        if re.search(r"[\s,:]", str(path)):
            # overlayfs mount options and apt-cacher-ng's config cannot carry them
            raise LabUsageError(f"{path}: the lab needs a state/image path without spaces, commas or colons")
    state = paths.root.parent
    if (state / spec.name / "topology.toml").exists():
        raise LabUsageError(f"a cluster named {spec.name!r} exists under {state}: choose another --name")
    existing = Lab.load(paths, spec.name)
    if existing is not None and (existing.subnet, len(existing.machines)) != (str(spec.subnet), spec.count):
        raise LabUsageError(
            f"lab {spec.name!r} is up with {len(existing.machines)} machines on {existing.subnet}: "
            "`webinfra lab down` it first"
        )
    if existing is None and link_exists(bridge_name(spec.name)):
        raise LabUsageError(f"interface {bridge_name(spec.name)} exists and is not this lab's: choose another --name")
    clashes = foreign_overlaps(spec.subnet, bridge_name(spec.name))
    if clashes:
        raise LabUsageError(f"--subnet {spec.subnet} overlaps addresses of this machine: {', '.join(clashes)}")
    if existing is None:
        check_port_free(spec.gateway)
    return existing


def ensure_client_key(ssh_dir: Path, lab_name: str) -> str:
    """The lab's key pair (made once per lab; root's, 0600); returns the public key line."""
    if not (ssh_dir / "id_ed25519").exists():
        private, public = keypair(f"webinfra-lab-{lab_name}")
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (ssh_dir / "id_ed25519").write_bytes(private)
        (ssh_dir / "id_ed25519").chmod(0o600)
        (ssh_dir / "id_ed25519.pub").write_text(public + "\n")
    return (ssh_dir / "id_ed25519.pub").read_text().strip()


def up(spec: LabSpec, paths: LabPaths, mirror: str | None, say: Say, boot_timeout: float = 180.0) -> Lab:
    """Create the lab, or start what of it is not running (idempotent for the same spec)."""
    existing = check_free(spec, paths)
    if existing is not None:
        # A lab keeps the image it was created with: its machines' overlays sit on it.
        lab, image = existing, paths.images / existing.image
        if not image.is_dir():
            raise LabUsageError(f"lab {spec.name!r} was made from image {image}, which is gone: `webinfra lab down` it")
    else:
        lines = mirror_lines_for(mirror) if mirror else debian_mirror_lines(read_system_sources())
        image, built = ensure_image(paths.images, ImageSpec(lines, packages=(*PACKAGES, *spec.include)), say)
        say(f"image {image.name} {'built' if built else 'cached'} ({image})")
        lab = Lab(
            spec.name,
            str(spec.subnet),
            spec.gateway,
            image.name,
            lines,
            tuple(spec.machines()),
            paths.lab(spec.name),
            paths.root / "apt-cache" / spec.name,
        )
    lab.save()  # before anything is created: `down` can always remove what a failed `up` left
    ssh_dir = lab.ssh_dir
    authorized = ensure_client_key(ssh_dir, lab.name)
    network = lab.network
    network.save(lab.directory / "network.json")
    network.ensure()
    say(f"bridge {network.bridge} {lab.gateway}/{spec.subnet.prefixlen}, {len(network.links)} namespaces")
    if lab.proxy.start(lab.mirror_lines):
        say(f"apt-cacher-ng listening on {lab.gateway}:{lab.proxy.port}")

    machines = lab.machine_list()
    for machine in machines:
        if machine.process() is None:
            machine.ensure_rootfs(image, authorized, lab.machines, lab.gateway)
    (ssh_dir / "known_hosts").write_text("".join(m.known_hosts_line() + "\n" for m in machines))
    (ssh_dir / "config").write_text(ssh_config(lab.machines, ssh_dir))
    say(f"{len(machines)} root file systems ready")
    for machine in machines:
        machine.start()
    for machine in machines:
        state_now = machine.wait_booted(ssh_dir, boot_timeout)
        failed = machine.failed_units(ssh_dir) if state_now == "degraded" else []
        why = f": failed {', '.join(failed)}" if failed else ""
        say(f"{machine.name} {machine.address} booted ({state_now}{why}), ssh ok")
    return lab


def status(lab: Lab) -> dict[str, Any]:
    """Machines, addresses, booted state and ssh reachability, probed in parallel."""

    def probe(machine: Machine) -> dict[str, Any]:
        running = machine.process() is not None
        state = machine.system_state(lab.ssh_dir) if running else None
        failed = machine.failed_units(lab.ssh_dir) if state == "degraded" else []
        return {
            "name": machine.name,
            "address": machine.address,
            "netns": machine.netns,
            "container": "running" if running else "stopped",
            "systemd": state or "-",
            "ssh": state is not None,
            "failed_units": failed,
        }

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(probe, lab.machine_list()))
    return {
        "lab": lab.name,
        "subnet": lab.subnet,
        "gateway": lab.gateway,
        "image": lab.image,
        "proxy": {"address": f"{lab.gateway}:{lab.proxy.port}", "running": lab.proxy.process() is not None},
        "ssh_config": str(lab.ssh_dir / "config"),
        # what a topology's SSH machines need: root (or the sudo user) at each address, this key, these host keys
        "ssh_key": str(lab.ssh_dir / "id_ed25519"),
        "known_hosts": str(lab.ssh_dir / "known_hosts"),
        "users": ["root", LAB_USER],
        "machines": rows,
    }


def down(lab: Lab, say: Say) -> None:
    """Power the machines off (all at once, then wait), remove the network, stop the proxy, delete the
    machines' trees and the lab's record. The image and the package cache stay for the next lab."""
    require_root()
    started = time.monotonic()
    machines = lab.machine_list()
    with ThreadPoolExecutor(max_workers=max(1, len(machines))) as pool:
        stopped = list(pool.map(lambda m: m.stop(), machines))
    say(f"{sum(stopped)} machines powered off in {time.monotonic() - started:.1f}s")
    network = ClusterNetwork.load(lab.directory / "network.json") or lab.network
    network.remove()
    if lab.proxy.stop():
        say("apt-cacher-ng stopped")
    for machine in machines:
        machine.remove()  # unmounts its overlay first: the image below is never touched
    shutil.rmtree(lab.directory, ignore_errors=True)
    say(f"lab {lab.name} removed ({network.bridge}, {len(network.links)} namespaces, machines' trees)")
