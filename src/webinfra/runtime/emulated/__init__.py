"""runtime/emulated/: the emulated machines: one network namespace per host on a cluster bridge, with a
hostd (a tiny init) in each. The only package of webinfra that touches PIDs, /proc, signals, setns or a
namespace path.

    netns.py    `NetnsMachine`: the `Machine` operations for one namespace
    hostd.py    the init process (`python -m webinfra.runtime.emulated.hostd SOCKET`) and its client
    process.py  PID files that name one process exactly (PID + start time), stopping a process group
    network.py  `ClusterNetwork` (bridge, namespaces, veths; network.json), `sweep_cluster`, name rules
    faults.py   partition, slow, crash, heal of one namespace
    usage.py    CPU and memory of a machine's processes (for the benchmarks)

`record_process` and `running_pid` also serve the management machine's own long-running process (the
dashboard writes its PID file with them).

Outside this package, import only the names below (`from webinfra.runtime.emulated import ...`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from webinfra.runtime import lazy_exports

if TYPE_CHECKING:
    from webinfra.runtime.emulated.netns import NetnsMachine
    from webinfra.runtime.emulated.network import (
        ClusterNetwork,
        HostLink,
        bridge_name,
        existing_namespaces,
        foreign_overlaps,
        link_exists,
        link_in_place,
        sweep_cluster,
    )
    from webinfra.runtime.emulated.process import record_process, running_pid

_HOME = {
    "ClusterNetwork": "webinfra.runtime.emulated.network",
    "HostLink": "webinfra.runtime.emulated.network",
    "NetnsMachine": "webinfra.runtime.emulated.netns",
    "bridge_name": "webinfra.runtime.emulated.network",
    "existing_namespaces": "webinfra.runtime.emulated.network",
    "foreign_overlaps": "webinfra.runtime.emulated.network",
    "link_exists": "webinfra.runtime.emulated.network",
    "link_in_place": "webinfra.runtime.emulated.network",
    "record_process": "webinfra.runtime.emulated.process",
    "running_pid": "webinfra.runtime.emulated.process",
    "sweep_cluster": "webinfra.runtime.emulated.network",
}
__all__ = [
    "ClusterNetwork",
    "HostLink",
    "NetnsMachine",
    "bridge_name",
    "existing_namespaces",
    "foreign_overlaps",
    "link_exists",
    "link_in_place",
    "record_process",
    "running_pid",
    "sweep_cluster",
]


__getattr__ = lazy_exports(__name__, _HOME)  # lazy: hostd starts without httpx and pydantic
