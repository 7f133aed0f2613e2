"""Pure topology model: parse and validate a topology file into an immutable `Topology`. No I/O but reading the file."""

from webinfra.model.errors import TopologyError
from webinfra.model.load import DEFAULT_TOPOLOGY, load_topology, parse_topology
from webinfra.model.settings import AppSpec, DbSpec, LbSpec, MonitoringSpec, NetworkSpec, SiteSpec, TlsSpec
from webinfra.model.topology import HostSpec, Role, Topology

__all__ = [
    "DEFAULT_TOPOLOGY",
    "AppSpec",
    "DbSpec",
    "HostSpec",
    "LbSpec",
    "MonitoringSpec",
    "NetworkSpec",
    "Role",
    "SiteSpec",
    "TlsSpec",
    "Topology",
    "TopologyError",
    "load_topology",
    "parse_topology",
]
