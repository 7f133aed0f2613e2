"""The HA decision: a pure function from one `Snapshot` to one `Decision` with a one-line reason.

No I/O and no clock: `now` is in the snapshot, so every rule is a table-testable function. The rules,
in the order they are tried:

- cloning in progress                      -> CLONING (the worker owns MariaDB; touch nothing)
- I hold the leader lease                  -> `as_leader` (decide_leader.py): RELEASE (mysqld proven gone
                                              after several failed checks; a slow one is FENCEd and keeps
                                              the lease), FENCE (cannot renew in time; at once when
                                              acknowledging alone in async fallback), DEMOTE (key
                                              gone/taken), switchover steps, SEMI_SYNC_FALLBACK /
                                              _RESTORE, else LEAD
- etcd said my lease is gone               -> DEMOTE
- DCS unreachable                          -> WAIT (keep replicating; never promote without the DCS)
- local MariaDB down                       -> WAIT (or RELEASE a leader key that still names me, once
                                              mysqld is proven gone)
- no leader                                -> `no_leader` (decide_elect.py): ACQUIRE (async from the start
                                              when no other member is a healthy replica) only if bootstrap /
                                              switchover / "my history has the async leader's optime" /
                                              "no healthy member's history is ahead of mine" rules allow,
                                              else WAIT (a switchover target too: a lagging one is refused)
- the leader key names me (agent restart)  -> RESUME (adopt the lease)
- another node leads                       -> `follow` (decide_follow.py): RECLONE (diverged or errant),
                                              REJOIN (old primary), STOP_RECEIVING (its lease is about to
                                              expire), FOLLOW
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
it may promote until that leader is back (`no_leader`).

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

from dataclasses import replace

from webinfra.agent.decide_elect import no_leader
from webinfra.agent.decide_follow import follow
from webinfra.agent.decide_leader import as_leader, leader_optime
from webinfra.agent.decision import Action, Decision
from webinfra.agent.snapshot import Snapshot

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
        decision = as_leader(s)
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
        return no_leader(s, s.cluster)
    if leader.name == s.settings.host:
        return Decision(Action.RESUME, f"the leader key names me (lease {leader.lease}): resuming leadership")
    return follow(s, leader)


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
