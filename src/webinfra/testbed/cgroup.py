"""A cgroup of its own for each lab machine.

systemd-nspawn with --keep-unit (no machined, this machine's PID 1 need not be systemd) splits the cgroup
it was started in into `supervisor/` and `payload/`, and the machine's systemd builds its tree under
`payload/`. Started side by side from one process, every machine would get the SAME `payload/`: their
systemds then create and remove each other's `system.slice/<unit>` and a unit fails at random with
"Failed to attach to cgroup … No such file or directory" (seen as a `degraded` machine). So the keeper
moves itself into `<its cgroup>/wi-lab-<netns>` first, in every hierarchy a systemd uses: the named
`systemd` v1 hierarchy and the unified (v2) one on a hybrid layout, or the one cgroup2 tree.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_path(controller_field: str) -> str | None:
    """This process's cgroup path in the hierarchy whose /proc/self/cgroup line has `controller_field`
    (`name=systemd`, or `` for the unified one)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == controller_field:
            return path
    return None


def hierarchies() -> list[Path]:
    """Where the keeper's own cgroups go: (hierarchy root joined with this process's path in it)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # pure cgroup2
        own = _own_path("")
        return [CGROUP_ROOT / own.lstrip("/")] if own is not None else []
    found = []
    for mount, field in ((CGROUP_ROOT / "systemd", "name=systemd"), (CGROUP_ROOT / "unified", "")):
        own = _own_path(field)
        if own is not None and (mount / "cgroup.procs").exists():
            found.append(mount / own.lstrip("/"))
    return found


def machine_cgroups(netns: str) -> list[Path]:
    return [base / f"wi-lab-{netns}" for base in hierarchies()]


def remove(netns: str) -> None:
    """Delete the machine's cgroups (after it stopped), deepest first; a cgroup still holding a
    process stays (rmdir refuses), nothing else is touched."""
    for top in machine_cgroups(netns):
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
