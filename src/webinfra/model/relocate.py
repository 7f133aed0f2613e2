"""A topology file's text under another name and subnet, or with some settings changed: the one way the
benches, chaos, the nemesis and the tests make their own copy of a design (examples/*.toml), comments kept
(tomlkit). Pure: text in, text out. `examples/` itself is found from the working directory or the source tree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit

from webinfra.errors import ClusterError

REPO_ROOT = Path(__file__).resolve().parents[3]


def example_file(name: str) -> Path:
    """examples/NAME from the working directory or the source tree this package runs from."""
    for base in (Path.cwd(), REPO_ROOT):
        path = base / "examples" / name
        if path.is_file():
            return path
    raise ClusterError(f"examples/{name} not found (run from a checkout of webinfra, or give the file with -f)")


def seed_text() -> str:
    """The design as drawn (examples/seed.toml): lb-01; web-01 primary, web-02 replica; no TLS, no firewall."""
    return example_file("seed.toml").read_text()


def relocated(text: str, name: str, subnet: str) -> str:
    """A topology file's text under another cluster name and subnet: every address of the old subnet (the VIP,
    explicit host addresses) moves to the same offset in the new one."""
    doc = tomlkit.parse(text)
    doc["name"] = name
    if "network" not in doc:
        doc["network"] = tomlkit.table()
    # tomlkit types doc["network"] as Item | Container, every kind of item, though a [network] table is what
    # is here: get and item assignment exist on it, not on all of the union's members.
    network = doc["network"]
    old = ipaddress.IPv4Network(str(network.get("subnet", "198.18.0.0/24")))  # type: ignore[union-attr]
    new = ipaddress.IPv4Network(subnet)
    network["subnet"] = str(new)  # type: ignore[index]

    def move(value: object) -> str:
        addr = ipaddress.IPv4Address(str(value))
        return str(new.network_address + (int(addr) - int(old.network_address))) if addr in old else str(addr)

    lb = doc.get("lb")
    if lb is not None and "vip" in lb:
        lb["vip"] = move(lb["vip"])
    for host in doc.get("hosts", []):
        if "address" in host:
            host["address"] = move(host["address"])
    return tomlkit.dumps(doc)


def amended(
    text: str,
    settings: Mapping[str, Any] | None = None,
    *,
    hosts: Mapping[str, Mapping[str, Any]] | None = None,
    extra_hosts: tuple[Mapping[str, Any], ...] = (),
) -> str:
    """`text` with `settings` applied: a top-level key is set; a mapping updates the keys of the table of that
    name (created when missing). `hosts`: keys to set in a host's [[hosts]] table, by name; `extra_hosts`:
    [[hosts]] tables appended as given."""
    doc = tomlkit.parse(text)
    for key, value in (settings or {}).items():
        if isinstance(value, Mapping) and key in doc:
            table: Any = doc[key]  # a table: tomlkit types it as any item (see relocated)
            for inner, v in value.items():
                table[inner] = v
        else:
            doc[key] = dict(value) if isinstance(value, Mapping) else value
    tables: Any = doc.get("hosts") if (hosts or extra_hosts) else None
    for name, values in (hosts or {}).items():
        found = [h for h in tables if h.get("name") == name]
        if not found:
            raise ValueError(f"no host {name!r} to amend")
        for key, v in values.items():
            found[0][key] = v
    for host in extra_hosts:
        tables.append(dict(host))
    return tomlkit.dumps(doc)
