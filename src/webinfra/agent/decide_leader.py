"""The HA rules of the agent that holds the leader lease (agent/decide.py has the overview): keep leading,
fence before the lease can expire, release it once MariaDB is proven gone, semi-sync fallback and restore,
switchover steps, and the `optime` record a leader keeps (`leader_optime`: no acknowledged write is lost).
Pure: no I/O, no clock."""

from __future__ import annotations

from webinfra.agent.decision import Action, Decision
from webinfra.agent.snapshot import (
    ClusterView,
    DbRole,
    Gtid,
    LocalDb,
    OptimeRecord,
    Snapshot,
    gtid_in_domain,
    optime_at,
)


def as_leader(s: Snapshot) -> Decision:
    me = s.settings.host
    if not s.db.reachable:
        return _leader_db_unreachable(s)
    if s.cluster is None or not s.me.renewed_this_cycle:
        sent = s.me.last_renewal_sent
        age = s.now - sent if sent is not None else float("inf")
        if not s.renewal_fresh:
            return Decision(
                Action.FENCE,
                f"cannot renew the leader lease for {age:.1f}s (DCS unreachable): read-only before it can expire",
            )
        if s.me.semi_sync_fallback:
            # Acknowledging alone, a leader that may be cut off must stop at once: every write it takes
            # from now on is one the replica (promoted once my lease expires) would not have.
            return Decision(
                Action.FENCE,
                "missed a lease renewal while acknowledging writes without a replica: read-only at once",
            )
        left = s.settings.lease_ttl - s.settings.fence_margin - age
        return Decision(Action.LEAD, f"DCS unreachable: still leader, fencing in {left:.1f}s unless renewed")
    leader = s.cluster.leader
    if leader is None or leader.name != me:
        holder = leader.name if leader else "nobody"
        return Decision(Action.DEMOTE, f"the leader key now names {holder}: stepping down to read-only")
    if s.cluster.switchover is not None:
        return _switchover(s, s.cluster)
    if s.me.switchover_started is not None:
        return Decision(Action.SWITCHOVER_ABORT, "switchover request withdrawn: writable again")
    semi = _semi_sync(s)
    if semi is not None:
        return semi
    if s.me.fenced:
        return Decision(Action.LEAD, "leader lease renewed again: writable")
    return Decision(Action.LEAD, "holding the leader lease")


def _leader_db_unreachable(s: Snapshot) -> Decision:
    """Release only for a MariaDB that is certainly gone: a slow one may still commit what it queued, and a
    replica promoted meanwhile would make two writable nodes. Until then keep the lease (and try to fence
    a server that is alive but not answering)."""
    n, need, error = s.me.db_failures, s.settings.release_after_failures, s.db.error
    if n >= need and s.db.gone:
        return Decision(
            Action.RELEASE, f"local MariaDB is gone ({error}; {n} failed checks, no mysqld): releasing the leader lease"
        )
    if n >= need:
        return Decision(
            Action.FENCE, f"local MariaDB alive but not answering for {n} checks ({error}): fencing, keeping the lease"
        )
    return Decision(Action.WAIT, f"local MariaDB did not answer ({n}/{need}: {error}): keeping the lease")


def _semi_sync(s: Snapshot) -> Decision | None:
    """Fallback to async is the agent's call, never MariaDB's (its timeout is set to 'forever')."""
    if s.settings.when_no_replica_acks != "fallback_async":
        return None
    clients = s.db.semi_master_clients
    if s.me.semi_sync_fallback:
        # Back on only when a replica really streams from me (its agent says so in the DCS): a dead
        # connection still counted as a client would otherwise stall every write again at once. And only
        # once it has what I acknowledged alone, up to my own "not sync" optime: a replica cut off keeps
        # a healthy member key for member_ttl (4 s) and its connection stays ESTABLISHED, so without the
        # mark the leader went back to semi-sync and stalled every commit again, three times in one
        # app-partition (chaos, issue 13). Staying async longer is never less safe.
        mark = s.cluster.optime if s.cluster is not None else None
        if mark is not None and (mark.leader != s.settings.host or mark.sync):
            mark = None
        reached = s.cluster is not None and (
            _replica_reached(s, gtid_in_domain(mark.gtid), mark.gtid_seq) if mark else _replica_reached(s, None)
        )
        if clients > 0 and reached:
            upto = f" and one has reached {mark.gtid or mark.gtid_seq}" if mark else ""
            return Decision(
                Action.SEMI_SYNC_RESTORE, f"{clients} semi-sync replica(s) connected{upto}: semi-sync back on"
            )
        return None
    starts = [t for t in (s.me.no_clients_since if clients == 0 else None, s.me.acks_stalled_since) if t is not None]
    since = min(starts) if starts else None
    sent = s.me.last_renewal_sent
    if since is None or sent is None:
        return None
    waited = s.now - since
    # Waiting gives a replica the chance to (re)connect. With no healthy replica at all in the DCS (e.g.
    # just promoted, the old primary gone) there is nobody to wait for: only the lease check remains.
    threshold = s.settings.semi_sync_fallback if any_healthy_replica(s) else 0.0
    # The DCS must have confirmed my lease *after* the replicas went away: otherwise I may be the one
    # cut off, and acknowledging writes alone would lose them when a replica takes over.
    if waited >= threshold and s.renewal_fresh and sent >= since:
        return Decision(
            Action.SEMI_SYNC_FALLBACK,
            (
                f"no semi-sync replica for {waited:.1f}s while my lease is fresh: async until one reconnects"
                if clients == 0
                else f"no replica acknowledged a commit for {waited:.1f}s while my lease is fresh: "
                "async until one streams again"
            ),
        )
    return None


def acks_required(db: LocalDb) -> bool:
    """Commits wait for a replica's acknowledgement (with no replica connected they wait: the timeout is
    'forever'). Off, the leader acknowledges writes no replica has."""
    return db.semi_master_enabled and db.semi_master_status


def leader_optime(s: Snapshot, *, going_async: bool = False) -> OptimeRecord | None:
    """The `optime` record this leader writes before acting (`going_async`: before it stops waiting for
    acks), or None when the one in the DCS already says the right thing.

    - acks not required (or about to stop): sync false at my current position, rewritten whenever it moves;
    - acks required and the record is sync (or absent, as at bootstrap): sync true, written once;
    - acks required and the record is not sync (mine after a fallback, or the previous leader's): its
      gtid_seq is the mark up to which writes were acknowledged without a replica (actions.py records it
      right after switching semi-sync back on). It stays until a semi-sync replica is connected and a
      replica's member key shows it reached the mark; then sync true.
    """
    assert s.cluster is not None
    me, db, current = s.settings.host, s.db, s.cluster.optime
    if going_async or not acks_required(db):
        want = optime_at(me, False, db)
    elif current is None or current.sync:
        want = optime_at(me, True, db)
        if current is not None and current.leader == me:
            return None  # a sync record is not rewritten as the position moves
    elif db.semi_master_clients >= 1 and _replica_reached(s, gtid_in_domain(current.gtid), current.gtid_seq):
        want = optime_at(me, True, db)
    else:
        want = OptimeRecord(me, False, current.gtid, current.gtid_seq, server_id=db.server_id)
    return None if want.same_promise(current) else want


def any_healthy_replica(s: Snapshot) -> bool:
    """Some other member is a healthy replica (fresh member key), whoever it follows."""
    if s.cluster is None:
        return True  # unknown: assume one may be there, and wait
    return any(m.name != s.settings.host and m.healthy and m.role == DbRole.REPLICA for m in s.cluster.members.values())


def _replica_reached(s: Snapshot, mark: Gtid | None, seq: int = 0) -> bool:
    """A healthy replica of mine has received (at least) everything up to `mark` (that exact GTID; only
    `seq` when the mark has no GTID)."""
    cluster = s.cluster
    assert cluster is not None
    address = s.settings.members.get(s.settings.host)
    return any(
        m.name != s.settings.host
        and m.name in s.settings.members
        and m.healthy
        and m.role == DbRole.REPLICA
        and m.replicating_from == address
        and (m.state.has(mark) if mark is not None else m.gtid_seq >= seq)
        for m in cluster.members.values()
    )


def _switchover(s: Snapshot, cluster: ClusterView) -> Decision:
    request = cluster.switchover
    assert request is not None
    me = s.settings.host
    if request.to == me:
        return Decision(Action.SWITCHOVER_ABORT, f"switchover to {me}: already the leader")
    target = request.to or s.me.switchover_target or _best_replica(s, cluster)
    if target is None:
        return Decision(Action.SWITCHOVER_ABORT, "switchover: no healthy replica to hand over to")
    member = cluster.members.get(target)
    if target not in s.settings.members or member is None or not member.healthy:
        return Decision(Action.SWITCHOVER_ABORT, f"switchover: {target} is not a healthy member", target)
    mine = s.db.gtid_state
    have, want = member.state.tip(), mine.tip()
    if s.me.switchover_started is None:
        return Decision(
            Action.SWITCHOVER_PREPARE, f"switchover to {target}: read-only until it catches up to {mine}", target
        )
    if s.db.read_only and member.state.contains(mine) and member.applied_all_received:
        return Decision(Action.SWITCHOVER_HANDOVER, f"switchover: {target} caught up ({have}): handing over", target)
    waited = s.now - s.me.switchover_started
    if waited > s.settings.switchover_timeout:
        return Decision(
            Action.SWITCHOVER_ABORT,
            f"switchover: {target} did not catch up within {s.settings.switchover_timeout:g}s "
            f"({member.state or 'empty'} lacks {', '.join(mine.beyond(member.state))}): writable again",
            target,
        )
    return Decision(
        Action.SWITCHOVER_PREPARE, f"switchover to {target}: waiting for it to catch up ({have}/{want})", target
    )


def _best_replica(s: Snapshot, cluster: ClusterView) -> str | None:
    candidates = [
        m
        for m in cluster.members.values()
        if m.name != s.settings.host and m.name in s.settings.members and m.healthy and m.role == DbRole.REPLICA
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda m: (-m.gtid_seq, m.name)).name
