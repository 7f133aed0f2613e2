"""The agent's clock for lease arithmetic: CLOCK_BOOTTIME.

CLOCK_MONOTONIC stops while the machine is suspended (and, on some virtualisation, while the guest is
paused), so after a resume a leader would believe its lease younger than it is while etcd (which does
count that time) may have expired it. CLOCK_BOOTTIME keeps counting through suspend, and is system-wide:
every process on the host reads the same value."""

from __future__ import annotations

import time


def now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def wall_of(boot_time: float) -> float:
    """The UNIX (wall-clock) time corresponding to `boot_time`, as of now: for deadlines handed to SQL,
    whose only clock is the wall clock."""
    return time.time() + (boot_time - now())
