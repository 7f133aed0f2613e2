"""How the topology's hosts are reached: `[machines]`. Pure.

`kind = "emulated"` (the default): every host is a network namespace on this machine. `kind = "ssh"`: every
host is a Debian 12 server reached over SSH, and the topology's addresses are the servers' own:

    [machines]
    kind = "ssh"
    key = "~/.ssh/webinfra"        # default for every host
    vip_interface = "ens3"         # the interface keepalived puts the VIP on
    management = ["203.0.113.5"]   # where SSH comes from (the firewall admits it); default: derived at `up`
    [machines.hosts.lb-01]
    ssh = "admin@203.0.113.10:22"
    become = true                  # sudo (needed unless the user is root)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints
from pydantic_core import PydanticCustomError

# user@host:port; the user and the port may be left out (root, 22). The host is a name or an IPv4 address.
SSH_ADDRESS = re.compile(
    r"^(?:(?P<user>[a-z_][a-z0-9_.-]{0,31})@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252})(?::(?P<port>[0-9]{1,5}))?$"
)
InterfaceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")]
KeyPath = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Bool = Annotated[bool, Strict()]


def _network_text(value: Any) -> Any:
    # A bare integer would otherwise become an address (`management = [5]` -> 0.0.0.5/32).
    if isinstance(value, str | ipaddress.IPv4Network):
        return value
    raise PydanticCustomError("ip_type", "Input should be a string")


Network = Annotated[ipaddress.IPv4Network, BeforeValidator(_network_text)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class SshAddress:
    user: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def parse_ssh_address(text: str) -> SshAddress | None:
    """`user@host:port` -> SshAddress, None when it is not one (the caller names the field)."""
    match = SSH_ADDRESS.fullmatch(text)
    if match is None:
        return None
    port = int(match["port"] or 22)
    if not 1 <= port <= 65535:
        return None
    return SshAddress(match["user"] or "root", match["host"], port)


class SshMachine(Frozen):
    ssh: str
    key: KeyPath | None = None  # the machine's private key; default [machines] key, then ssh's own defaults
    become: Bool | None = None  # sudo; default [machines] become


class MachinesSpec(Frozen):
    kind: Literal["emulated", "ssh"] = "emulated"
    key: KeyPath | None = None
    become: Bool = False
    vip_interface: InterfaceName = "eth0"
    # SSH's known_hosts file for the servers (new keys are accepted and kept). Default: ssh's own.
    known_hosts: KeyPath | None = None
    # The management machine's addresses or networks: with `firewall = true` every server's ruleset accepts
    # its SSH port from them. Empty: `up` derives them from where its SSH connections come from
    # ($SSH_CONNECTION on each server), so the ruleset never locks out the machine that loads it.
    management: tuple[Network, ...] = ()
    hosts: dict[str, SshMachine] = Field(default_factory=dict)

    def __hash__(self) -> int:  # Topology is hashed (plans are cached by it); a dict field is not hashable
        return hash(
            (
                self.kind,
                self.key,
                self.known_hosts,
                self.become,
                self.vip_interface,
                self.management,
                *self.hosts.items(),
            )
        )

    @property
    def ssh(self) -> bool:
        return self.kind == "ssh"

    def address_of(self, host: str) -> SshAddress:
        found = parse_ssh_address(self.hosts[host].ssh)
        assert found is not None  # checked by check_machines
        return found

    def key_of(self, host: str) -> str | None:
        return self.hosts[host].key or self.key

    def become_of(self, host: str) -> bool:
        own = self.hosts[host].become
        return self.become if own is None else own

    def admits(self, address: str) -> bool:
        """Whether `management` covers `address` (an SSH connection's source)."""
        ip = ipaddress.IPv4Address(address)
        return any(ip in net for net in self.management)


Problem = tuple[str, object, str]


def check_machines(machines: MachinesSpec, host_names: list[str]) -> list[Problem]:
    """`[machines]` against the topology's hosts: with ssh every host has an entry, every entry a host."""
    problems: list[Problem] = []
    if not machines.ssh:
        if machines.hosts:
            problems.append(("machines.hosts", sorted(machines.hosts), 'SSH addresses need kind = "ssh"'))
        if machines.management:
            problems.append(("machines.management", [str(n) for n in machines.management], 'needs kind = "ssh"'))
        return problems
    known = set(host_names)
    for name, machine in machines.hosts.items():
        if name not in known:
            problems.append((f"machines.hosts.{name}", machine.ssh, "no host of this name in [[hosts]]"))
        elif parse_ssh_address(machine.ssh) is None:
            problems.append((f"machines.hosts.{name}.ssh", machine.ssh, "must be user@host:port (user, port optional)"))
    missing = [name for name in host_names if name not in machines.hosts]
    if missing:
        problems.append(("machines.hosts", missing, 'kind = "ssh": every host needs an SSH address'))
    return problems
