"""The nemesis's schedule: a seeded, reproducible list of steps, each one fault or two overlapping ones.

Pure: `schedule(seed, steps)` is the same list on every machine for the same seed, so a failing run can be
replayed with `webinfra chaos nemesis --seed N`. Targets are roles ("the primary", "a replica", "the VIP
holder"), resolved by the runner at the moment of injection, because failovers move them.

The faults, and why each is in the catalogue (the double faults are where HA designs lose writes):

- primary-crash          mariadbd SIGKILL on the primary: promotion of the most advanced replica
- primary-partition      the primary's host cut off: it must fence itself before its lease can expire
- replica-partition      a replica cut off: the primary falls back to async (acknowledging alone)
- agent-freeze           SIGSTOP of the primary's HA agent: the watchdog must fence MariaDB without it
- etcd-member-loss       one etcd member killed: quorum holds, nothing should change
- vip-holder-crash       HAProxy killed on the LB holding the VIP: the other LB takes it
- switchover             a switchover requested while other faults may be in flight
- primary-slow           the primary's host made slow (netem delay, or a CPU quota without netem)

An overlapping step injects its second fault `offset` seconds after the first, while the first is still in
force: e.g. replica-partition then primary-crash is "the primary dies while acknowledging alone".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FAULT_KINDS: tuple[str, ...] = (
    "primary-crash",
    "primary-partition",
    "replica-partition",
    "agent-freeze",
    "etcd-member-loss",
    "vip-holder-crash",
    "switchover",
    "primary-slow",
)

# Pairs worth overlapping: the first fault creates the situation in which the second is dangerous.
OVERLAPS: tuple[tuple[str, str], ...] = (
    ("replica-partition", "primary-crash"),  # the primary dies while in async fallback
    ("replica-partition", "primary-partition"),  # both DB nodes cut off: nobody may take writes alone
    ("switchover", "primary-crash"),  # the primary dies during a handover
    ("switchover", "etcd-member-loss"),  # etcd loses a member during a handover
    ("agent-freeze", "replica-partition"),  # the agent stalls while its replica is away
    ("etcd-member-loss", "primary-partition"),  # etcd already degraded when the primary is cut off
    ("vip-holder-crash", "primary-crash"),  # both tiers fail over at once
    ("primary-slow", "etcd-member-loss"),  # a slow primary renews late while etcd elects
)


@dataclass(frozen=True)
class Fault:
    kind: str
    offset: float  # seconds after the step began


@dataclass(frozen=True)
class Step:
    index: int
    faults: tuple[Fault, ...]
    hold: float  # seconds from the step's start until every fault of it is undone

    @property
    def label(self) -> str:
        return " + ".join(f.kind for f in self.faults)


def schedule(
    seed: int,
    steps: int,
    *,
    overlap_share: float = 0.5,
    hold: tuple[float, float] = (4.0, 8.0),
    kinds: tuple[str, ...] = FAULT_KINDS,
) -> list[Step]:
    """`steps` steps drawn from `seed`: about `overlap_share` of them two overlapping faults, the others one.
    Single faults go through every kind before any kind repeats (a short run still covers the catalogue)."""
    if steps < 0:
        raise ValueError("steps must be >= 0")
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    rng = random.Random(seed)
    singles: list[str] = []
    overlaps = [pair for pair in OVERLAPS if pair[0] in kinds and pair[1] in kinds]
    out: list[Step] = []
    for index in range(steps):
        duration = round(rng.uniform(*hold), 1)
        if overlaps and rng.random() < overlap_share:
            first, second = rng.choice(overlaps)
            offset = round(rng.uniform(1.0, max(1.0, duration * 0.6)), 1)
            faults: tuple[Fault, ...] = (Fault(first, 0.0), Fault(second, offset))
        else:
            if not singles:
                singles = list(kinds)
                rng.shuffle(singles)
            faults = (Fault(singles.pop(), 0.0),)
        out.append(Step(index, faults, duration))
    return out
