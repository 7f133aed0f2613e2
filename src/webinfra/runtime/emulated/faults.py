"""The network faults and the whole-host crash of an emulated host (`NetnsMachine.partition` & co.).

partition  nftables rules inside the namespace drop all traffic on eth0 (processes keep running)
slow       200 ms of netem delay on eth0; on a kernel without netem, every process of the namespace
           held to 10 % of one CPU (a cgroup cpu quota)
crash      the veth goes dark and every process of the namespace gets SIGKILL at once
heal       the link up, no fault rules, no delay, no quota
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from webinfra.runtime.emulated import network as netmod
from webinfra.runtime.machine import SLOW_CPU_PERCENT, SLOW_DELAY_MS, FaultError

if TYPE_CHECKING:
    from webinfra.runtime.emulated.netns import NetnsMachine

FAULT_TABLE = "webinfra_fault"
PARTITION_RULES = f"""
table inet {FAULT_TABLE} {{
    chain input {{
        type filter hook input priority -300; policy accept;
        iifname "eth0" drop
    }}
    chain output {{
        type filter hook output priority -300; policy accept;
        oifname "eth0" drop
    }}
}}
"""


def partition(m: NetnsMachine) -> str:
    m.run(["nft", "-f", "-"], input=f"delete table inet {FAULT_TABLE}\n", check=False)
    m.run(["nft", "-f", "-"], input=PARTITION_RULES)
    return "partitioned (all traffic on eth0 dropped)"


def crash(m: NetnsMachine) -> None:
    # Peers must see silence (timeouts), not refused connections: the link goes dark first.
    if m.veth:
        netmod.set_link(m.veth, up=False)
    for pid in netmod.namespace_pids(m.netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def heal(m: NetnsMachine) -> None:
    if m.veth:
        netmod.set_link(m.veth, up=True)
    m.run(["nft", "-f", "-"], input=f"delete table inet {FAULT_TABLE}\n", check=False)
    _undo_slow(m)


def slow(m: NetnsMachine) -> str:
    m.run(["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
    proc = m.run(["tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{SLOW_DELAY_MS}ms"], check=False)
    if proc.returncode == 0:
        return f"slow ({SLOW_DELAY_MS} ms delay on everything it sends, tc netem)"
    # Some kernels (e.g. small VM kernels) are built without sch_netem: slow the host down by CPU instead.
    group = _cpu_cgroup(m)
    if group is None:
        raise FaultError(f"cannot make {m.name} slow: no netem qdisc ({proc.stderr.strip()}), no cgroup cpu controller")
    group.mkdir(exist_ok=True)
    period = 100_000
    if (group / "cpu.cfs_quota_us").exists():  # cgroup v1
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(period * SLOW_CPU_PERCENT // 100))
    else:  # cgroup v2
        (group / "cpu.max").write_text(f"{period * SLOW_CPU_PERCENT // 100} {period}")
    for pid in netmod.namespace_pids(m.netns):  # hostd too, so whatever it starts later is slow as well
        with contextlib.suppress(OSError):
            (group / "cgroup.procs").write_text(str(pid))
    return f"slow (every process held to {SLOW_CPU_PERCENT} % of one CPU: this kernel has no netem)"


def _undo_slow(m: NetnsMachine) -> None:
    m.run(["tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
    group = _cpu_cgroup(m)
    if group is None or not group.is_dir():
        return
    home = _own_cpu_cgroup()
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):
            (home / "cgroup.procs").write_text(pid)
    with contextlib.suppress(OSError):
        group.rmdir()


def _cpu_root() -> Path | None:
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1
    v2 = Path("/sys/fs/cgroup")
    try:
        if "cpu" in (v2 / "cgroup.controllers").read_text().split():
            return v2
    except OSError:
        pass
    return None


def _own_cpu_cgroup() -> Path:
    root = _cpu_root()
    assert root is not None
    v1 = root != Path("/sys/fs/cgroup")
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (v1 and "cpu" in controllers.split(",")) or (not v1 and controllers == ""):
            return root / path.lstrip("/")
    return root


def _cpu_cgroup(m: NetnsMachine) -> Path | None:
    root = _cpu_root()
    # The same name as before the seam (webinfra-<cluster>-<host>), so a recover after an upgrade finds it.
    return None if root is None else root / f"webinfra-{m.netns.removeprefix('wi-')}"
