"""Pure topology model: parse and validate a topology file into an immutable `Topology`. No I/O but reading the file.

    topology.py   the frozen pydantic models and their derived views; load.py, errors.py: TOML -> Topology or
                  one TopologyError line; machines.py: [machines] (emulated or ssh); relocate.py: a design on
                  another name and subnet; edit.py: host edits of a file's text (tomlkit, comments kept)
Imports only errors and state of webinfra (import-linter: model is at the bottom with parallel, sqltext, state).
"""

from webinfra.model.errors import TopologyError
from webinfra.model.load import DEFAULT_TOPOLOGY, load_topology, parse_topology
from webinfra.model.topology import (
    AppSpec,
    DbSpec,
    HostSpec,
    LbSpec,
    MonitoringSpec,
    NetworkSpec,
    Role,
    SiteSpec,
    TlsSpec,
    Topology,
)

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
