"""The HA rules when no node holds the leader lease (agent/decide.py has the overview): who may take it.
Bootstrap, a switchover target, and otherwise only the most advanced history, never one behind a leader
that acknowledged writes without a replica. Pure: no I/O, no clock."""

from __future__ import annotations

from webinfra.agent.decide_leader import any_healthy_replica
from webinfra.agent.decision import Action, Decision
from webinfra.agent.snapshot import (
    ClusterView,
    DbRole,
    GtidState,
    MemberRecord,
    OptimeRecord,
    Snapshot,
    gtid_in_domain,
)


def no_leader(s: Snapshot, cluster: ClusterView) -> Decision:
    me = s.settings.host
    if cluster.initialized is None:
        if me == s.settings.initial_primary:
            return _acquire(s, "cluster not initialized: bootstrapping as the initial primary")
        return Decision(
            Action.WAIT, f"cluster not initialized: waiting for the initial primary {s.settings.initial_primary}"
        )
    request = cluster.switchover
    db = s.db
    mine = db.gtid_state
    if request is not None and request.to and request.to != me:
        chosen = cluster.members.get(request.to)
        if _candidate(chosen) and chosen is not None and chosen.state.contains(mine):
            return Decision(Action.WAIT, f"switchover to {request.to} in progress: deferring to it")
    if not db.applied_all_received:
        io_pos = db.slave.gtid_io_pos if db.slave else ""
        return Decision(Action.WAIT, f"no leader; still applying my relay log ({db.gtid_slave_pos} < {io_pos})")
    if db.slave is not None and db.slave.last_sql_errno:
        return Decision(
            Action.WAIT, f"no leader; my replication SQL thread failed ({db.slave.last_sql_errno}): not a candidate"
        )
    waiting = _behind_async_leader(s, cluster)
    if waiting is not None:
        return waiting
    position = str(mine) or "empty"
    target = request is not None and request.to == me
    for rival in sorted(cluster.members.values(), key=lambda m: m.name):
        if rival.name == me or rival.name not in s.settings.members or not _candidate(rival):
            continue
        why = _ahead_of_me(rival, mine, cluster.optime, me_first=target or me < rival.name)
        if why is not None:
            if target:
                return Decision(Action.WAIT, f"switchover target, but refusing: {why}")
            return Decision(Action.WAIT, f"no leader; {why}")
    if target:
        return _acquire(s, f"switchover target, caught up and most advanced ({position})")
    return _acquire(s, f"leader lease expired, most advanced ({position})")


def _acquire(s: Snapshot, reason: str) -> Decision:
    """ACQUIRE; acknowledging alone from the start when no other member is a healthy replica. That is the
    decision the first cycle as leader would take (decide_leader's `_semi_sync`: no healthy replica, so no wait, and the
    lease is fresh), taken before the server is writable instead of a cycle later, while every commit
    waits for an acknowledgement nobody can send (1-2.4 s under load, BENCHMARKS.md)."""
    if s.settings.when_no_replica_acks == "fallback_async" and not any_healthy_replica(s):
        return Decision(
            Action.ACQUIRE, f"{reason}; no healthy replica: async until one streams", s.settings.host, semi_sync=False
        )
    return Decision(Action.ACQUIRE, reason, s.settings.host)


def _ahead_of_me(rival: MemberRecord, mine: GtidState, optime: OptimeRecord | None, *, me_first: bool) -> str | None:
    """Why `rival` should lead rather than me (None: it should not). Histories, not seq_nos: a rival whose
    history contains mine and more is ahead; one mine contains is behind. Two histories neither contains
    have diverged (one side has errant transactions): the side that has the last leader's recorded
    position, then more of that leader's own transactions, is the real history."""
    theirs = rival.state
    if theirs == mine:
        return None if me_first else f"{rival.name} is as advanced ({mine or 'empty'}) and sorts first"
    if theirs.contains(mine):
        return f"{rival.name} is more advanced ({theirs} contains my {mine or 'empty'})"
    if mine.contains(theirs):
        return None
    if _rank(theirs, optime) > _rank(mine, optime):
        return f"histories diverged and {rival.name}'s ({theirs}) is the last leader's, not mine ({mine})"
    return None


def _rank(state: GtidState, optime: OptimeRecord | None) -> tuple[bool, int, int]:
    """Order of diverged histories: has the last leader's recorded position, how far into that leader's own
    transactions (its server_id), then the highest seq_no (only as the last resort)."""
    if optime is None:
        return (True, 0, state.tip())
    last = gtid_in_domain(optime.gtid)
    has_last = state.has(last) if last is not None else state.tip() >= optime.gtid_seq
    return (has_last, state.server_seq(optime.server_id) if optime.server_id else 0, state.tip())


def _behind_async_leader(s: Snapshot, cluster: ClusterView) -> Decision | None:
    """WAIT when the last leader acknowledged writes without a replica (optime not sync) that I do not
    have: promoting would discard them. Moot once that leader is back as a candidate (the most-advanced
    rule then lets it lead again, or it came back without them and they are gone anyway), and for that
    leader itself. "Have" means the exact GTID (domain, server_id, seq_no) is in my history: a higher
    seq_no written by another server is another history, not a later point of the same one."""
    optime = cluster.optime
    me = s.settings.host
    if optime is None or optime.sync or optime.leader == me or _candidate(cluster.members.get(optime.leader)):
        return None
    mine = s.db.gtid_state
    theirs = gtid_in_domain(optime.gtid)
    if mine.has(theirs) if theirs is not None else mine.tip() >= optime.gtid_seq:
        return None
    return Decision(
        Action.WAIT,
        f"not promoting: the last leader {optime.leader} acknowledged writes without a replica up to "
        f"{optime.gtid or optime.gtid_seq}, my history ({mine or 'empty'}) lacks it (waiting for it to return)",
    )


def _candidate(member: MemberRecord | None) -> bool:
    """A member that could take the lead. A 'primary' record without a leader key is the old leader's
    last word (its agent died or is releasing), so it does not hold anyone back."""
    return member is not None and member.healthy and member.role not in (DbRole.PRIMARY, DbRole.CLONING)
