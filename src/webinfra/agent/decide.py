"""The HA decision: a pure function from one `Snapshot` to one `Decision` with a one-line reason.

No I/O and no clock: `now` is in the snapshot, so every rule is a table-testable function. The rules,
in the order they are tried:

- cloning in progress                      -> CLONING (the worker owns MariaDB; touch nothing)
- I hold the leader lease                  -> `_as_leader`: RELEASE (mysqld proven gone after several
                                              failed checks; a slow one is FENCEd and keeps the lease),
                                              FENCE (cannot renew in time; at once when acknowledging
                                              alone in async fallback), DEMOTE (key gone/taken),
                                              switchover steps, SEMI_SYNC_FALLBACK / _RESTORE, else LEAD
- etcd said my lease is gone               -> DEMOTE
- DCS unreachable                          -> WAIT (keep replicating; never promote without the DCS)
- local MariaDB down                       -> WAIT (or RELEASE a leader key that still names me, once
                                              mysqld is proven gone)
- no leader                                -> `_no_leader`: ACQUIRE only if bootstrap / switchover /
                                              "my history has the async leader's optime" / "no healthy
                                              member's history is ahead of mine" rules allow, else WAIT
                                              (a switchover target too: a lagging one is refused)
- the leader key names me (agent restart)  -> RESUME (adopt the lease)
- another node leads                       -> `_follow`: RECLONE (diverged or errant), REJOIN (old
                                              primary), FOLLOW
Every non-leader action also keeps MariaDB read-only (actions.py), so "not leader" implies "no writes".

Histories, not sequence numbers: positions are compared as GTID states (snapshot.GtidState: the last
seq_no per domain AND server_id) with containment. A higher seq_no written by another server is another
history; of two diverged histories the one with the last leader's recorded position wins, and the other
side's extra transactions are errant (named, exported, kept aside by the re-clone).

No acknowledged write is lost (Patroni's synchronous mode, with synchronous_mode_strict=false and
maximum_lag_on_failover=0). A leader publishes the `optime` key (no lease: it outlives the leader), see
`leader_optime`: `sync` true while every write it acknowledges is on a replica first (semi-sync acks
required; an unacknowledged binlog tail on a dead leader is errant by definition, so the most advanced
member may take over), false from just BEFORE it can acknowledge alone (`SEMI_SYNC_FALLBACK` writes it
first) with `gtid_seq` kept current every cycle, and true again only once semi-sync is back on with a
replica that has reached every position acknowledged without one. While it is false, no member behind
it may promote until that leader is back (`_no_leader`).

The trade-off, with `when_no_replica_acks = "fallback_async"`: a leader that lost its replicas keeps
taking writes; if it then dies for good, writes stay unavailable until it returns (or an operator
accepts the loss) rather than losing what it acknowledged. `"block"` never acknowledges alone, so its
optime stays sync and failover is as before. The one window left: the position is written once per
cycle, so a crash within `loop_interval` of an async write, with a replica exactly at the last recorded
position, can lose that last interval's async writes (Patroni's /optime has the same). A leader cut off
from etcd in fallback no longer widens it: it fences at its first missed renewal. A clean stop
(SIGTERM) or a switchover records the final position after going read-only: no such window there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from webinfra.agent.snapshot import (
    ClusterView,
    Gtid,
    GtidState,
    LeaderRecord,
    LocalDb,
    MemberRecord,
    OptimeRecord,
    Role,
    Snapshot,
    gtid_in_domain,
)


class Action(StrEnum):
    ACQUIRE = "acquire"  # take the leader key (txn create) and promote
    LEAD = "lead"  # keep leading: writable, semi-sync as decided, no replication configured
    RESUME = "resume"  # the leader key names me but this process does not know the lease: adopt it
    SEMI_SYNC_FALLBACK = "semi_sync_fallback"
    SEMI_SYNC_RESTORE = "semi_sync_restore"
    FENCE = "fence"  # read-only and kill site sessions before the lease can expire
    RELEASE = "release"  # revoke the leader lease at once (local MariaDB is down)
    DEMOTE = "demote"  # I lost the leadership: read-only, kill site sessions
    FOLLOW = "follow"  # replicate from the leader
    REJOIN = "rejoin"  # old primary: align gtid_slave_pos with my binlog, then follow
    RECLONE = "reclone"  # replace my datadir with a copy streamed from the leader
    CLONING = "cloning"
    SWITCHOVER_PREPARE = "switchover_prepare"  # leader: read-only, wait for the target to catch up
    SWITCHOVER_HANDOVER = "switchover_handover"  # leader: release the key so the target takes it
    SWITCHOVER_ABORT = "switchover_abort"  # leader: writable again, drop the request
    RESTART_MARIADB = "restart_mariadb"  # kill a hung mysqld that could not be fenced, start it read-only
    WAIT = "wait"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    target: str | None = None
    # Leader only: the `optime` record to write BEFORE acting (None: the one in the DCS is right).
    optime: OptimeRecord | None = None
    # RECLONE only: my transactions the leader lacks, exported and named before the datadir is replaced.
    errant: tuple[str, ...] = ()


# Leader decisions taken with a fresh view of the DCS, after which the optime is kept up to date.
_KEEPS_OPTIME = frozenset(
    {
        Action.LEAD,
        Action.SEMI_SYNC_FALLBACK,
        Action.SEMI_SYNC_RESTORE,
        Action.SWITCHOVER_PREPARE,
        Action.SWITCHOVER_HANDOVER,
        Action.SWITCHOVER_ABORT,
    }
)


def decide(s: Snapshot) -> Decision:
    """What this agent does this cycle, and why (one line)."""
    if s.me.cloning:
        return Decision(Action.CLONING, f"re-cloning from {s.me.known_leader}", s.me.known_leader)
    hung = _hung_mariadb(s)
    if hung is not None:
        return hung
    if s.me.holds_lease:
        decision = _as_leader(s)
        if decision.action in _KEEPS_OPTIME and s.cluster is not None and s.me.renewed_this_cycle:
            optime = leader_optime(s, going_async=decision.action == Action.SEMI_SYNC_FALLBACK)
            if optime is not None:
                decision = replace(decision, optime=optime)
        return decision
    if s.me.lease_lost:
        return Decision(Action.DEMOTE, "my leader lease expired in etcd: stepping down to read-only")
    if s.cluster is None:
        if s.db.replication_configured:
            return Decision(Action.WAIT, "DCS unreachable: keep replicating, never promote")
        return Decision(Action.WAIT, "DCS unreachable: read-only, never promote")
    leader = s.cluster.leader
    if not s.db.reachable:
        gone = s.db.gone and s.me.db_failures >= s.settings.release_after_failures
        if leader is not None and leader.name == s.settings.host and gone:
            return Decision(Action.RELEASE, f"the leader key names me but local MariaDB is gone ({s.db.error})")
        return Decision(Action.WAIT, f"local MariaDB unreachable ({s.db.error})")
    if leader is None:
        return _no_leader(s, s.cluster)
    if leader.name == s.settings.host:
        return Decision(Action.RESUME, f"the leader key names me (lease {leader.lease}): resuming leadership")
    return _follow(s, leader)


# -- leader ------------------------------------------------------------------------------------------------


def _as_leader(s: Snapshot) -> Decision:
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


def _hung_mariadb(s: Snapshot) -> Decision | None:
    """A server alive but answering nobody, that every fencing attempt failed to make read-only for
    `restart_hung_after`: it may still commit what its open sessions send, and it serves nothing. Kill it
    and start it again (read-only, from my.cnf), as Patroni restarts a stuck PostgreSQL; a held lease is
    released first so a replica can take over meanwhile (nemesis seed 7: a promoted server hung before
    its first answer, and the agent retried the fence for 15 minutes)."""
    since = s.me.fence_failing_since
    if s.db.reachable or s.db.gone or since is None or s.now - since < s.settings.restart_hung_after:
        return None
    return Decision(
        Action.RESTART_MARIADB,
        f"local MariaDB alive but not answering and not fenced for {s.now - since:.0f}s ({s.db.error}): "
        "killing it and starting it read-only",
    )


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
        # connection still counted as a client would otherwise stall every write again at once.
        if clients > 0 and s.cluster is not None and _replica_reached(s, None):
            return Decision(Action.SEMI_SYNC_RESTORE, f"{clients} semi-sync replica(s) connected: semi-sync back on")
        return None
    starts = [t for t in (s.me.no_clients_since if clients == 0 else None, s.me.acks_stalled_since) if t is not None]
    since = min(starts) if starts else None
    sent = s.me.last_renewal_sent
    if since is None or sent is None:
        return None
    waited = s.now - since
    # Waiting gives a replica the chance to (re)connect. With no healthy replica at all in the DCS (e.g.
    # just promoted, the old primary gone) there is nobody to wait for: only the lease check remains.
    threshold = s.settings.semi_sync_fallback if _any_healthy_replica(s) else 0.0
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
    here = db.last_gtid
    gtid, seq, sid = (str(here), here.seq, db.server_id) if here is not None else ("", 0, db.server_id)
    if going_async or not acks_required(db):
        want = OptimeRecord(me, False, gtid, seq, server_id=sid)
    elif current is None or current.sync:
        want = OptimeRecord(me, True, gtid, seq, server_id=sid)
        if current is not None and current.leader == me:
            return None  # a sync record is not rewritten as the position moves
    elif db.semi_master_clients >= 1 and _replica_reached(s, gtid_in_domain(current.gtid), current.gtid_seq):
        want = OptimeRecord(me, True, gtid, seq, server_id=sid)
    else:
        want = OptimeRecord(me, False, current.gtid, current.gtid_seq, server_id=sid)
    return None if want.same_promise(current) else want


def _any_healthy_replica(s: Snapshot) -> bool:
    """Some other member is a healthy replica (fresh member key), whoever it follows."""
    if s.cluster is None:
        return True  # unknown: assume one may be there, and wait
    return any(m.name != s.settings.host and m.healthy and m.role == Role.REPLICA for m in s.cluster.members.values())


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
        and m.role == Role.REPLICA
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
        if m.name != s.settings.host and m.name in s.settings.members and m.healthy and m.role == Role.REPLICA
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda m: (-m.gtid_seq, m.name)).name


# -- no leader ---------------------------------------------------------------------------------------------


def _no_leader(s: Snapshot, cluster: ClusterView) -> Decision:
    me = s.settings.host
    if cluster.initialized is None:
        if me == s.settings.initial_primary:
            return Decision(Action.ACQUIRE, "cluster not initialized: bootstrapping as the initial primary", me)
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
        return Decision(Action.ACQUIRE, f"switchover target, caught up and most advanced ({position})", me)
    return Decision(Action.ACQUIRE, f"leader lease expired, most advanced ({position})", me)


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
    return member is not None and member.healthy and member.role not in (Role.PRIMARY, Role.CLONING)


# -- another node leads ------------------------------------------------------------------------------------


def _follow(s: Snapshot, leader: LeaderRecord) -> Decision:
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
    return Decision(Action.FOLLOW, f"following {leader.name}", leader.name)


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
