"""Pure topology model: parse and validate a topology file into an immutable `Topology`. No I/O but reading the file."""

from webinfra.model.errors import TopologyError
from webinfra.model.load import DEFAULT_TOPOLOGY, load_topology, parse_topology
from webinfra.model.topology import AppSpec, DbSpec, HostSpec, LbSpec, NetworkSpec, Role, SiteSpec, Topology

__all__ = [
    "DEFAULT_TOPOLOGY",
    "AppSpec",
    "DbSpec",
    "HostSpec",
    "LbSpec",
    "NetworkSpec",
    "Role",
    "SiteSpec",
    "Topology",
    "TopologyError",
    "load_topology",
    "parse_topology",
]
