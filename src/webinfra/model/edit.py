"""Edits of a topology file that keep its comments and formatting (tomlkit), for `webinfra scale`.

Pure: text in, text out. Every result is parsed and validated again (`parse_topology`), so an edit can
never produce a file `up` would refuse.

- `add_host` appends a `[[hosts]]` table. The new host gets the address it is given, else the one it would
  get by file order when that one is free, else the lowest free address (written out). On servers
  (`[machines] kind = "ssh"`) it also gets its `[machines.hosts.<name>]` entry (`ssh`).
- `remove_host` deletes a host's table (and its `[machines.hosts.<name>]` entry). Hosts numbered by file
  order after it get their address written out first, so removing a host never moves another one. The
  comment block above the removed table (which describes it) goes with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import tomlkit
from tomlkit.items import AoT, Comment, Table, Whitespace

from webinfra.errors import EXIT_USAGE, WebinfraError
from webinfra.model.errors import TopologyError
from webinfra.model.load import parse_topology
from webinfra.model.topology import FIRST_HOST_OFFSET, Topology


class EditError(WebinfraError, ValueError):
    """The edit cannot be made (unknown or duplicate host, no free address); the message is for the user."""

    exit_code = EXIT_USAGE


def next_free_address(topo: Topology) -> ipaddress.IPv4Address:
    """The lowest host address from .10 up that no host, the VIP or the gateway uses."""
    subnet = topo.network.subnet
    used = {topo.address_of(h.name) for h in topo.hosts} | {topo.gateway}
    if topo.vip is not None:
        used.add(topo.vip)
    for addr in subnet.hosts():
        if int(addr) - int(subnet.network_address) >= FIRST_HOST_OFFSET and addr not in used:
            return addr
    raise EditError(f"no free address left in {subnet}")


def _auto_address(topo: Topology) -> ipaddress.IPv4Address:
    """The address a host appended without `address` would get (numbered by file order)."""
    offset = FIRST_HOST_OFFSET + sum(1 for h in topo.hosts if h.address is None)
    return topo.network.subnet.network_address + offset


def _hosts(doc: tomlkit.TOMLDocument) -> AoT:
    hosts = doc.get("hosts")
    if not isinstance(hosts, AoT):
        raise EditError("the file's hosts are not written as [[hosts]] tables; edit it by hand")
    return hosts


def _trailing(table: Table) -> int:
    """Index in the table's body where its trailing comments and blank lines start."""
    body = table.value.body
    end = len(body)
    while end > 0 and body[end - 1][0] is None and isinstance(body[end - 1][1], Comment | Whitespace):
        end -= 1
    return end


def _insert_key(table: Table, key: str, value: object, after: str) -> None:
    """Add `key` right after `after` (or after the last key), not after the table's trailing comments."""
    if after in table:
        table.value._insert_after(after, key, value)
    else:
        table.value._insert_at(_trailing(table), key, value)


def add_host(
    text: str,
    name: str,
    roles: Sequence[str],
    *,
    weight: int | None = None,
    db_role: str | None = None,
    address: str | None = None,
    ssh: str | None = None,
    note: str = "",
    source: str = "<topology>",
) -> tuple[str, Topology]:
    """Append host `name` (at `address` when given; reached over `ssh` on servers); returns the new text and
    its (validated) topology."""
    topo = parse_topology(text, source)
    if any(h.name == name for h in topo.hosts):
        raise EditError(f"host {name!r} already exists")
    if topo.machines.ssh and ssh is None:
        raise EditError(f'{name}: the cluster runs on servers ([machines] kind = "ssh"): give its --ssh user@host:port')
    if not topo.machines.ssh and ssh is not None:
        raise EditError(f'--ssh {ssh}: the cluster\'s hosts are emulated (no [machines] kind = "ssh")')
    doc = tomlkit.parse(text)
    hosts = _hosts(doc)
    table = tomlkit.table()
    table["name"] = name
    table["roles"] = list(roles)
    if address is not None:
        table["address"] = _free(topo, address)
    else:
        auto, free = _auto_address(topo), next_free_address(topo)
        used = {topo.address_of(h.name) for h in topo.hosts} | {topo.gateway, topo.vip}
        if auto not in topo.network.subnet or auto in used:
            table["address"] = str(free)
    if db_role is not None:
        table["db_role"] = db_role
    if weight is not None:
        table["weight"] = weight
    if note and len(hosts):
        last = hosts[len(hosts) - 1]
        last.add(tomlkit.nl())
        last.add(tomlkit.comment(note))
    if list(doc)[-1] != "hosts":  # a table follows the [[hosts]]: keep the blank line before it
        table.add(tomlkit.nl())
    hosts.append(table)
    if ssh is not None:
        entry = tomlkit.table()
        entry["ssh"] = ssh
        if list(doc)[-1] != "machines":  # [[hosts]] follow: the blank line before them
            entry.add(tomlkit.nl())
        _machine_hosts(doc)[name] = entry
    new_text = tomlkit.dumps(doc)
    return new_text, _validated(new_text, source)


def _free(topo: Topology, address: str) -> str:
    """`address` as given, refused when it is not an IPv4 address of the subnet or is taken."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise EditError(f"--address {address}: not an IPv4 address") from None
    subnet = topo.network.subnet
    if ip not in subnet or int(ip) - int(subnet.network_address) < FIRST_HOST_OFFSET or ip == subnet.broadcast_address:
        raise EditError(f"--address {address}: not a host address of {subnet} (from .{FIRST_HOST_OFFSET} up)")
    taken = {topo.address_of(h.name): h.name for h in topo.hosts}
    if ip in taken:
        raise EditError(f"--address {address}: already {taken[ip]}'s")
    if ip in (topo.gateway, topo.vip):
        raise EditError(f"--address {address}: the {'gateway' if ip == topo.gateway else 'VIP'}")
    return str(ip)


def _machine_hosts(doc: tomlkit.TOMLDocument) -> Table:
    """The `[machines.hosts]` table (an SSH topology has one: every host has its entry)."""
    machines = doc.get("machines")
    hosts = machines.get("hosts") if isinstance(machines, Table) else None
    if not isinstance(hosts, Table):
        raise EditError("the file's [machines.hosts] is not written as tables; edit it by hand")
    return hosts


def remove_host(text: str, name: str, *, source: str = "<topology>") -> tuple[str, Topology]:
    """Remove host `name`; returns the new text and its (validated) topology."""
    topo = parse_topology(text, source)
    names = [h.name for h in topo.hosts]
    if name not in names:
        raise EditError(f"unknown host {name!r} (hosts: {', '.join(names)})")
    doc = tomlkit.parse(text)
    hosts = _hosts(doc)
    index = names.index(name)
    for later in topo.hosts[index + 1 :]:
        if later.address is None:  # numbered by file order: pin it before the order changes
            _insert_key(hosts[names.index(later.name)], "address", str(topo.address_of(later.name)), "roles")
    if index > 0:
        # The comments above [[hosts]] are the end of the previous table's body: those describing the host
        # removed go; the ones above the next host (at the end of the removed table) take their place.
        prev, gone = hosts[index - 1], hosts[index]
        prev_body, gone_body = prev.value.body, gone.value.body
        tail = gone_body[_trailing(gone) :]
        del prev_body[_trailing(prev) :]
        prev_body.extend(tail)
    del hosts[index]
    if topo.machines.ssh and name in topo.machines.hosts:
        del _machine_hosts(doc)[name]
    new_text = tomlkit.dumps(doc)
    return new_text, _validated(new_text, source)


def _validated(text: str, source: str) -> Topology:
    try:
        return parse_topology(text, source)
    except TopologyError as exc:
        raise EditError(str(exc).removeprefix(f"{source}: ")) from None
