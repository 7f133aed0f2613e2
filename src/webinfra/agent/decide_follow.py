"""The HA rules when another node leads (agent/decide.py has the overview): follow it, rejoin it as an old
primary, re-clone a diverged or errant copy, or stop receiving when its lease is about to expire.
Pure: no I/O, no clock."""

from __future__ import annotations

from webinfra.agent.decision import Action, Decision
from webinfra.agent.snapshot import (
    GtidState,
    LeaderRecord,
    Snapshot,
)


def follow(s: Snapshot, leader: LeaderRecord) -> Decision:
    address = s.settings.members.get(leader.name)
    if address is None:
        return Decision(Action.WAIT, f"the leader {leader.name} is not one of my configured members")
    slave = s.db.slave
    if slave is not None and slave.master_host == address and slave.diverged:
        errno = slave.last_io_errno or slave.last_sql_errno
        theirs = s.cluster.members.get(leader.name) if s.cluster is not None else None
        extra = errant(s.db.binlog_state, theirs.state if theirs is not None else GtidState())
        return _reclone(s, leader, f"replication from {leader.name} diverged (error {errno})", extra)
    if not s.db.replication_configured:
        # An old primary (promotion resets replication) or a blank node: is its history part of the
        # leader's? Every (domain, server_id) of mine must be within the state the leader was promoted at.
        if leader.promoted_at_gtid is None:
            return Decision(Action.WAIT, f"waiting for {leader.name} to record its promotion point")
        mine = s.db.binlog_state
        at = GtidState.parse(leader.promoted_at_gtid)
        extra = errant(mine, at)
        if extra:
            return _reclone(
                s,
                leader,
                f"errant transactions {', '.join(extra)}: my {mine} is not within {leader.name}'s promotion point {at}",
                extra,
            )
        return Decision(
            Action.REJOIN,
            f"rejoining {leader.name} as a replica (my {mine or 'empty'} within its promotion point {at or 'empty'})",
            leader.name,
        )
    if slave is not None and slave.master_host == address and _lease_expiring(s):
        # Etcd says the leader's lease has under a second left, so the leader has passed its own fencing
        # time (last renewal + TTL - margin, margin 1 s): it takes no writes whatever I do. STOP SLAVE away
        # from a cut-off source waits ~1 s (semi-sync's kill connection); doing it now overlaps that wait
        # with the lease's last second instead of adding it to the promotion. If the leader renews after
        # all, FOLLOW starts the IO thread again the next cycle.
        return Decision(
            Action.STOP_RECEIVING,
            f"{leader.name}'s leader lease expires within 1s (it has fenced itself): "
            "stopping my IO thread ahead of a takeover",
            leader.name,
        )
    return Decision(Action.FOLLOW, f"following {leader.name}", leader.name)


def _lease_expiring(s: Snapshot) -> bool:
    """The leader's lease has under a second left in etcd (its TTL reads 0: whole seconds, rounded down;
    -1 when already gone), and that proves the leader is past its fencing time: only with a fencing margin
    of a second or more (TTL >= 3 s). A leader renewing every cycle reads TTL - 1 or more."""
    ttl = s.cluster.leader_ttl_left if s.cluster is not None else None
    return ttl is not None and ttl < 1 and s.settings.fence_margin >= 1


def errant(mine: GtidState, promoted_at: GtidState) -> tuple[str, ...]:
    """My transactions the leader's history cannot have (ranges 'domain-server-first..last'): beyond its
    promotion point for some (domain, server_id), e.g. the same seq_no written by another server."""
    return tuple(mine.beyond(promoted_at))


def _reclone(s: Snapshot, leader: LeaderRecord, why: str, extra: tuple[str, ...] = ()) -> Decision:
    failed = s.me.clone_failed_at
    if failed is not None and s.now - failed < s.settings.reclone_backoff:
        wait = s.settings.reclone_backoff - (s.now - failed)
        return Decision(Action.WAIT, f"{why}; last re-clone failed, retrying in {wait:.0f}s", leader.name)
    return Decision(Action.RECLONE, f"{why}: re-cloning from {leader.name}", leader.name, errant=extra)
