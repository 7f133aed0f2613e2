"""decide(): snapshots built with small factories -> expected action (and target, and a word of the reason).

No daemons and no mocks: `decide` is pure, so each case is a value in a table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from webinfra.agent.decide import decide
from webinfra.agent.decide_follow import errant
from webinfra.agent.decision import Action
from webinfra.agent.snapshot import (
    AgentState,
    ClusterView,
    GtidState,
    LeaderRecord,
    LocalDb,
    MemberRecord,
    OptimeRecord,
    Settings,
    SlaveStatus,
    Snapshot,
    SwitchoverRequest,
)

NOW = 1000.0
ADDR = {"web-01": "10.0.0.1", "web-02": "10.0.0.2", "web-03": "10.0.0.3"}
SERVER_ID = {"web-01": 1, "web-02": 2, "web-03": 3}


# -- factories ---------------------------------------------------------------------------------------------


def replica_db(source: str = "web-01", seq: int = 57, io_seq: int | None = None, **kw: Any) -> LocalDb:
    """A read-only replica of `source` that applied up to 0-<source>-seq (received up to io_seq)."""
    sid = SERVER_ID[source]
    slave = SlaveStatus(
        master_host=ADDR[source],
        master_port=3306,
        io_running=kw.pop("io_running", "Yes"),
        sql_running=kw.pop("sql_running", "Yes"),
        using_gtid="Slave_Pos",
        gtid_io_pos=f"0-{sid}-{io_seq if io_seq is not None else seq}",
        seconds_behind=kw.pop("lag", 0.0),
        last_io_errno=kw.pop("io_errno", 0),
        last_sql_errno=kw.pop("sql_errno", 0),
    )
    pos = f"0-{sid}-{seq}"
    return LocalDb(
        reachable=True,
        read_only=True,
        gtid_binlog_pos=pos,
        gtid_slave_pos=pos,
        gtid_current_pos=pos,
        semi_slave_enabled=True,
        slave=slave,
        **kw,
    )


def primary_db(seq: int = 57, server_id: int = 1, **kw: Any) -> LocalDb:
    """A writable node without replication (what a leader, or an old primary, looks like)."""
    pos = f"0-{server_id}-{seq}"
    semi = kw.pop("semi", True)  # False: semi-sync master off (after the fallback), acknowledging alone
    return LocalDb(
        reachable=True,
        read_only=kw.pop("read_only", False),
        server_id=server_id,
        gtid_binlog_pos=pos,
        gtid_current_pos=pos,
        semi_master_enabled=semi,
        semi_master_status=semi,
        semi_master_clients=kw.pop("clients", 1),
        **kw,
    )


DOWN = LocalDb(reachable=False, error="Can't connect to local server through socket")
GONE = replace(DOWN, gone=True)  # and no mysqld process: proof that it is down, not slow


def member(
    name: str, seq: int = 57, role: str = "replica", healthy: bool = True, gtid: str | None = None, **kw: Any
) -> MemberRecord:
    """A member key; its history is 0-1-<seq> unless `gtid` (a GTID state) says otherwise."""
    return MemberRecord(name=name, role=role, gtid=gtid or f"0-1-{seq}", gtid_seq=seq, healthy=healthy, **kw)


def view(
    leader: str | None = None,
    *members: MemberRecord,
    promoted_at: str | None = "0-1-57",
    initialized: str | None = "web-01",
    switchover: SwitchoverRequest | None = None,
    optime: OptimeRecord | None = None,
) -> ClusterView:
    record = LeaderRecord(name=leader, promoted_at_gtid=promoted_at, lease=77) if leader else None
    return ClusterView(record, initialized, {m.name: m for m in members}, switchover, optime=optime)


def optime(leader: str = "web-01", sync: bool = False, seq: int = 60) -> OptimeRecord:
    """The last leader's `optime` key: sync, or acknowledging without a replica up to 0-<leader>-seq."""
    return OptimeRecord(leader, sync, f"0-{SERVER_ID[leader]}-{seq}", seq)


LEADING = AgentState(holds_lease=True, lease_id=77, last_renewal_sent=NOW - 0.1, renewed_this_cycle=True)


def snap(
    host: str = "web-02",
    db: LocalDb | None = None,
    cluster: ClusterView | None = None,
    me: AgentState | None = None,
    now: float = NOW,
    **settings: Any,
) -> Snapshot:
    s = Settings(host=host, initial_primary="web-01", lease_ttl=2.0, fence_margin=0.5, members=ADDR, **settings)
    return Snapshot(now, s, db if db is not None else replica_db(), cluster, me or AgentState())


@dataclass(frozen=True)
class Case:
    id: str
    snapshot: Snapshot
    action: Action
    target: str | None = None
    says: str = ""  # a fragment the one-line reason must contain


def renewal(ago: float, **kw: Any) -> AgentState:
    return replace(LEADING, last_renewal_sent=NOW - ago, **kw)


CASES = [
    # -- bootstrap -----------------------------------------------------------------------------------------
    Case(
        "bootstrap: initial primary takes the lead",
        snap("web-01", primary_db(seq=3), view(initialized=None)),
        Action.ACQUIRE,
        "web-01",
        "initial primary",
    ),
    Case(
        "bootstrap: others wait for it",
        snap("web-02", replica_db(seq=3), view(None, member("web-02", 3), initialized=None)),
        Action.WAIT,
        None,
        "waiting for the initial primary web-01",
    ),
    Case(
        "bootstrap: a more advanced non-initial node still waits",
        snap("web-02", replica_db(seq=99), view(None, member("web-01", 3, role="unknown"), initialized=None)),
        Action.WAIT,
    ),
    # -- leader ----------------------------------------------------------------------------------------------
    Case(
        "leader renews",
        snap("web-01", primary_db(), view("web-01", member("web-02")), LEADING),
        Action.LEAD,
        None,
        "holding",
    ),
    Case(
        "leader, DCS unreachable, lease still certain: keeps leading",
        snap("web-01", primary_db(), None, renewal(1.4, renewed_this_cycle=False)),
        Action.LEAD,
        None,
        "fencing in",
    ),
    Case(
        "leader fences at TTL - margin when the DCS is unreachable",
        snap("web-01", primary_db(), None, renewal(1.5, renewed_this_cycle=False)),
        Action.FENCE,
        None,
        "cannot renew",
    ),
    Case(
        "leader fences when keepalives fail though reads work",
        snap("web-01", primary_db(), view("web-01"), renewal(1.7, renewed_this_cycle=False)),
        Action.FENCE,
    ),
    Case(
        "leader with local DB gone for 3 checks releases",
        snap("web-01", GONE, view("web-01"), replace(LEADING, db_failures=3)),
        Action.RELEASE,
        None,
        "MariaDB is gone",
    ),
    Case(
        "leader with local DB gone releases even with the DCS down",
        snap("web-01", GONE, None, renewal(1.9, renewed_this_cycle=False, db_failures=3)),
        Action.RELEASE,
    ),
    Case(
        "leader key now names another: demote",
        snap("web-01", primary_db(), view("web-02"), LEADING),
        Action.DEMOTE,
        None,
        "web-02",
    ),
    Case(
        "lease expired in etcd: demote",
        snap("web-01", primary_db(), view(None), AgentState(lease_lost=True)),
        Action.DEMOTE,
    ),
    Case(
        "fenced leader renewed again: writable",
        snap("web-01", primary_db(read_only=True), view("web-01"), renewal(0.1, fenced=True)),
        Action.LEAD,
        None,
        "renewed again",
    ),
    Case(
        "leader key names me, unknown lease (agent restarted): resume",
        snap("web-01", primary_db(), view("web-01")),
        Action.RESUME,
    ),
    Case(
        "leader key names me but my DB is gone: release it",
        snap("web-01", GONE, view("web-01"), AgentState(db_failures=3)),
        Action.RELEASE,
    ),
    # -- no leader -------------------------------------------------------------------------------------------
    Case(
        "no leader: most advanced healthy replica promotes",
        snap("web-02", replica_db(seq=57), view(None, member("web-02", 57), member("web-03", 55))),
        Action.ACQUIRE,
        "web-02",
        "most advanced",
    ),
    Case(
        "no leader: a less advanced one waits",
        snap("web-03", replica_db(seq=55), view(None, member("web-02", 57), member("web-03", 55))),
        Action.WAIT,
        None,
        "web-02 is more advanced",
    ),
    Case(
        "no leader: tie, the first name promotes",
        snap("web-02", replica_db(seq=57), view(None, member("web-02", 57), member("web-03", 57))),
        Action.ACQUIRE,
        "web-02",
    ),
    Case(
        "no leader: tie, the later name waits",
        snap("web-03", replica_db(seq=57), view(None, member("web-02", 57), member("web-03", 57))),
        Action.WAIT,
        None,
        "sorts first",
    ),
    Case(
        "no leader: relay log not applied yet: wait",
        snap("web-02", replica_db(seq=50, io_seq=57), view(None, member("web-03", 55))),
        Action.WAIT,
        None,
        "relay log",
    ),
    Case(
        "no leader: received-but-unapplied counts as advanced for others",
        snap("web-03", replica_db(seq=56), view(None, member("web-02", 57, applied_all_received=False))),
        Action.WAIT,
        None,
        "web-02",
    ),
    Case(
        "no leader: the dead leader's last 'primary' record holds nobody back",
        snap("web-02", replica_db(seq=57), view(None, member("web-01", 57, role="primary"))),
        Action.ACQUIRE,
        "web-02",
    ),
    Case(
        "no leader: unhealthy rival ignored",
        snap("web-03", replica_db(seq=55), view(None, member("web-02", 60, healthy=False))),
        Action.ACQUIRE,
        "web-03",
    ),
    Case(
        "no leader: replication SQL error: not a candidate",
        snap("web-02", replica_db(sql_errno=1062, sql_running="No"), view(None)),
        Action.WAIT,
        None,
        "SQL thread",
    ),
    Case(
        "no leader, DCS unreachable: replica keeps replicating, never promotes",
        snap("web-02", replica_db(), None),
        Action.WAIT,
        None,
        "never promote",
    ),
    Case("no leader, local DB down: wait", snap("web-02", DOWN, view(None)), Action.WAIT, None, "unreachable"),
    # -- no leader, and the last leader's optime --------------------------------------------------------------
    Case(
        "optime async, I am behind it: wait for the last leader",
        snap("web-01", replica_db("web-02", seq=13), view(None, member("web-01", 13), optime=optime("web-02", seq=14))),
        Action.WAIT,
        None,
        "not promoting: the last leader web-02 acknowledged writes without a replica up to 0-2-14, "
        "my history (0-2-13) lacks it (waiting for it to return)",
    ),
    Case(
        "optime async, caught up with it: promote",
        snap("web-01", replica_db("web-02", seq=14), view(None, member("web-01", 14), optime=optime("web-02", seq=14))),
        Action.ACQUIRE,
        "web-01",
        "most advanced",
    ),
    Case(
        "optime sync, behind the dead leader by an unacknowledged tail: promote",
        snap(
            "web-01", replica_db("web-02", seq=13), view(None, member("web-01", 13), optime=optime("web-02", True, 14))
        ),
        Action.ACQUIRE,
        "web-01",
    ),
    Case(
        "no optime (bootstrapped before it existed): promote",
        snap("web-01", replica_db("web-02", seq=13), view(None, member("web-01", 13))),
        Action.ACQUIRE,
        "web-01",
    ),
    Case(
        "block mode: the optime stays sync, failover as before",
        snap(
            "web-01",
            replica_db("web-02", seq=13),
            view(None, member("web-01", 13), optime=optime("web-02", True, 14)),
            when_no_replica_acks="block",
        ),
        Action.ACQUIRE,
        "web-01",
    ),
    Case(
        "optime async, relay log holds its writes: apply them first",
        snap("web-01", replica_db("web-02", seq=13, io_seq=14), view(None, optime=optime("web-02", seq=14))),
        Action.WAIT,
        None,
        "relay log",
    ),
    Case(
        "optime async, the same seq_no from another server is not its write",
        snap("web-01", replica_db("web-03", seq=14), view(None, optime=optime("web-02", seq=14))),
        Action.WAIT,
        None,
        "not promoting",
    ),
    Case(
        "optime async, the last leader's stale 'primary' record is not it being back",
        snap(
            "web-01",
            replica_db("web-02", seq=13),
            view(None, member("web-02", 14, role="primary"), optime=optime("web-02", seq=14)),
        ),
        Action.WAIT,
        None,
        "waiting for it to return",
    ),
    Case(
        "optime async, its unhealthy record (MariaDB stopping) is not it being back",
        snap(
            "web-01",
            replica_db("web-02", seq=13),
            view(None, member("web-02", 14, role="unknown", healthy=False), optime=optime("web-02", seq=14)),
        ),
        Action.WAIT,
        None,
        "waiting for it to return",
    ),
    Case(
        "optime async, the last leader is back: it is the most advanced, I wait for it",
        snap(
            "web-01",
            replica_db("web-02", seq=13),
            view(None, member("web-02", 14, role="unknown", gtid="0-2-14"), optime=optime("web-02", seq=14)),
        ),
        Action.WAIT,
        None,
        "web-02 is more advanced",
    ),
    Case(
        "optime async, the last leader itself (agent restarted) re-acquires",
        snap(
            "web-02",
            primary_db(14, 2, read_only=True),
            view(None, member("web-01", 13), optime=optime("web-02", seq=14)),
        ),
        Action.ACQUIRE,
        "web-02",
        "most advanced",
    ),
    Case(
        "optime async, the last leader came back without its writes: they are gone, most advanced leads",
        snap(
            "web-01",
            replica_db("web-02", seq=13),
            view(None, member("web-02", 12, role="unknown"), optime=optime("web-02", seq=14)),
        ),
        Action.ACQUIRE,
        "web-01",
    ),
    # -- following --------------------------------------------------------------------------------------------
    Case(
        "replica follows the leader",
        snap("web-02", replica_db("web-01"), view("web-01")),
        Action.FOLLOW,
        "web-01",
        "following web-01",
    ),
    Case(
        "replica of the old leader re-points to the new one",
        snap("web-03", replica_db("web-01"), view("web-02")),
        Action.FOLLOW,
        "web-02",
    ),
    Case(
        "old primary without errant GTIDs rejoins",
        snap("web-01", primary_db(57, 1), view("web-02", promoted_at="0-1-57")),
        Action.REJOIN,
        "web-02",
        "rejoining",
    ),
    Case(
        "old primary behind the promotion point rejoins",
        snap("web-01", primary_db(50, 1), view("web-02", promoted_at="0-1-57")),
        Action.REJOIN,
        "web-02",
    ),
    Case(
        "old primary with errant GTIDs re-clones",
        snap("web-01", primary_db(58, 1), view("web-02", promoted_at="0-1-57")),
        Action.RECLONE,
        "web-02",
        "errant",
    ),
    Case(
        "same seq from another server is errant too",
        snap("web-01", primary_db(57, 1), view("web-02", promoted_at="0-2-57")),
        Action.RECLONE,
        "web-02",
    ),
    Case(
        "old primary waits for the promotion point",
        snap("web-01", primary_db(58, 1), view("web-02", promoted_at=None)),
        Action.WAIT,
        None,
        "promotion point",
    ),
    Case(
        "diverged replica (1236) re-clones",
        snap("web-03", replica_db("web-02", io_errno=1236, io_running="No"), view("web-02")),
        Action.RECLONE,
        "web-02",
        "diverged",
    ),
    Case(
        "out-of-order GTID (1950) re-clones",
        snap("web-03", replica_db("web-02", sql_errno=1950, sql_running="No"), view("web-02")),
        Action.RECLONE,
        "web-02",
    ),
    Case(
        "re-clone failed recently: back off",
        snap("web-03", replica_db("web-02", io_errno=1236), view("web-02"), AgentState(clone_failed_at=NOW - 3)),
        Action.WAIT,
        "web-02",
        "retrying",
    ),
    Case(
        "cloning: touch nothing",
        snap("web-03", DOWN, view("web-02"), AgentState(cloning=True, known_leader="web-02")),
        Action.CLONING,
        "web-02",
    ),
    # -- switchover -------------------------------------------------------------------------------------------
    Case(
        "switchover: leader goes read-only first",
        snap("web-01", primary_db(), view("web-01", member("web-02"), switchover=SwitchoverRequest("web-02")), LEADING),
        Action.SWITCHOVER_PREPARE,
        "web-02",
    ),
    Case(
        "switchover without a target picks the most advanced replica",
        snap(
            "web-01",
            primary_db(),
            view("web-01", member("web-02", 50), member("web-03", 57), switchover=SwitchoverRequest(None)),
            LEADING,
        ),
        Action.SWITCHOVER_PREPARE,
        "web-03",
    ),
    Case(
        "switchover: target caught up: hand over",
        snap(
            "web-01",
            primary_db(read_only=True),
            view("web-01", member("web-02", 57), switchover=SwitchoverRequest("web-02")),
            renewal(0.1, switchover_started=NOW - 1, switchover_target="web-02"),
        ),
        Action.SWITCHOVER_HANDOVER,
        "web-02",
    ),
    Case(
        "switchover: target behind: keep waiting",
        snap(
            "web-01",
            primary_db(read_only=True),
            view("web-01", member("web-02", 50), switchover=SwitchoverRequest("web-02")),
            renewal(0.1, switchover_started=NOW - 1),
        ),
        Action.SWITCHOVER_PREPARE,
        "web-02",
        "catch up (50/57)",
    ),
    Case(
        "switchover: target too slow: abort",
        snap(
            "web-01",
            primary_db(read_only=True),
            view("web-01", member("web-02", 50), switchover=SwitchoverRequest("web-02")),
            renewal(0.1, switchover_started=NOW - 6),
        ),
        Action.SWITCHOVER_ABORT,
        "web-02",
        "did not catch up",
    ),
    Case(
        "switchover to a dead member: abort",
        snap("web-01", primary_db(), view("web-01", switchover=SwitchoverRequest("web-03")), LEADING),
        Action.SWITCHOVER_ABORT,
        "web-03",
        "not a healthy member",
    ),
    Case(
        "switchover: others defer to the target",
        snap("web-02", replica_db(seq=57), view(None, member("web-03", 57), switchover=SwitchoverRequest("web-03"))),
        Action.WAIT,
        None,
        "deferring",
    ),
    Case(
        "switchover: the target takes over",
        snap("web-03", replica_db(seq=57), view(None, member("web-02", 57), switchover=SwitchoverRequest("web-03"))),
        Action.ACQUIRE,
        "web-03",
        "switchover",
    ),
    Case(
        "switchover to a target that is gone: normal election",
        snap("web-02", replica_db(seq=57), view(None, switchover=SwitchoverRequest("web-03"))),
        Action.ACQUIRE,
        "web-02",
    ),
    # -- semi-sync fallback ----------------------------------------------------------------------------------
    Case(
        "fallback: no clients long enough, lease fresh",
        snap("web-01", primary_db(clients=0), view("web-01"), renewal(0.1, no_clients_since=NOW - 1.2)),
        Action.SEMI_SYNC_FALLBACK,
        None,
        "async",
    ),
    Case(
        "fallback: not yet (a healthy replica may reconnect)",
        snap(
            "web-01",
            primary_db(clients=0),
            view("web-01", member("web-02", replicating_from=ADDR["web-01"])),
            renewal(0.1, no_clients_since=NOW - 0.5),
        ),
        Action.LEAD,
    ),
    Case(
        "fallback: never in block mode",
        snap(
            "web-01",
            primary_db(clients=0),
            view("web-01"),
            renewal(0.1, no_clients_since=NOW - 60),
            when_no_replica_acks="block",
        ),
        Action.LEAD,
    ),
    Case(
        "fallback: not on a renewal older than the replicas' loss",
        snap(
            "web-01",
            primary_db(clients=0),
            view("web-01"),
            renewal(1.3, renewed_this_cycle=False, no_clients_since=NOW - 1.2),
        ),
        Action.LEAD,
    ),
    Case(
        "fallback: never with a stale renewal (fences instead)",
        snap("web-01", primary_db(clients=0), None, renewal(1.6, renewed_this_cycle=False, no_clients_since=NOW - 5)),
        Action.FENCE,
    ),
    Case(
        "fallback: a replica reconnected and streams from me: restore",
        snap(
            "web-01",
            primary_db(clients=1),
            view("web-01", member("web-02", replicating_from=ADDR["web-01"])),
            renewal(0.1, semi_sync_fallback=True),
        ),
        Action.SEMI_SYNC_RESTORE,
    ),
    Case(
        "fallback: a client counted but no replica streams from me (a dead connection): stay async",
        snap("web-01", primary_db(clients=1), view("web-01"), renewal(0.1, semi_sync_fallback=True)),
        Action.LEAD,
    ),
    Case(
        "commits wait and no acknowledgement came for long enough, lease fresh: fall back",
        snap(
            "web-01",
            primary_db(clients=1),
            view("web-01"),
            renewal(0.1, acks_stalled_since=NOW - 1.5),
        ),
        Action.SEMI_SYNC_FALLBACK,
    ),
    Case(
        "commits wait without acknowledgement, but not for long yet: keep waiting",
        snap(
            "web-01",
            primary_db(clients=1),
            view("web-01", member("web-02", replicating_from=ADDR["web-01"])),
            renewal(0.1, acks_stalled_since=NOW - 0.3),
        ),
        Action.LEAD,
    ),
    Case(
        "no healthy replica anywhere (the old primary is gone): nobody to wait for, fall back at once",
        snap("web-01", primary_db(clients=0), view("web-01"), renewal(0.1, no_clients_since=NOW - 0.2)),
        Action.SEMI_SYNC_FALLBACK,
    ),
    Case(
        "fallback: still no replica: stay async",
        snap(
            "web-01",
            primary_db(clients=0),
            view("web-01"),
            renewal(0.1, semi_sync_fallback=True, no_clients_since=NOW - 9),
        ),
        Action.LEAD,
    ),
]


def replica_of(leader: str, name: str, seq: int) -> MemberRecord:
    return member(name, seq, replicating_from=ADDR[leader])


ASYNC = renewal(0.1, semi_sync_fallback=True, no_clients_since=NOW - 9)


@dataclass(frozen=True)
class OptimeCase:
    id: str
    snapshot: Snapshot
    action: Action
    writes: tuple[bool, int] | None  # (sync, gtid_seq) of the optime written before acting; None: no write


OPTIME_CASES = [
    OptimeCase(
        "bootstrap leader creates it: sync",
        snap("web-01", primary_db(3), view("web-01", initialized="web-01"), LEADING),
        Action.LEAD,
        (True, 3),
    ),
    OptimeCase(
        "sync and mine: not rewritten as the position moves",
        snap("web-01", primary_db(70), view("web-01", optime=optime("web-01", True, 60)), LEADING),
        Action.LEAD,
        None,
    ),
    OptimeCase(
        "new leader takes over a sync record",
        snap("web-01", primary_db(70), view("web-01", optime=optime("web-02", True, 60)), LEADING),
        Action.LEAD,
        (True, 70),
    ),
    OptimeCase(
        "fallback: 'not sync' at my position, written before semi-sync goes off",
        snap(
            "web-01",
            primary_db(57, clients=0),
            view("web-01", optime=optime("web-01", True, 50)),
            renewal(0.1, no_clients_since=NOW - 1.2),
        ),
        Action.SEMI_SYNC_FALLBACK,
        (False, 57),
    ),
    OptimeCase(
        "async: the position moved, the record follows",
        snap("web-01", primary_db(61, semi=False, clients=0), view("web-01", optime=optime("web-01", seq=60)), ASYNC),
        Action.LEAD,
        (False, 61),
    ),
    OptimeCase(
        "async: the position did not move, no write",
        snap("web-01", primary_db(60, semi=False, clients=0), view("web-01", optime=optime("web-01", seq=60)), ASYNC),
        Action.LEAD,
        None,
    ),
    OptimeCase(
        "async: semi-sync off for any reason (not the agent's fallback) is not sync either",
        snap("web-01", primary_db(61, semi=False), view("web-01", optime=optime("web-01", True, 50)), LEADING),
        Action.LEAD,
        (False, 61),
    ),
    OptimeCase(
        "restore: the record follows the position up to the moment semi-sync goes back on",
        snap(
            "web-01",
            primary_db(62, semi=False, clients=1),
            view("web-01", member("web-02", 62, replicating_from=ADDR["web-01"]), optime=optime("web-01", seq=61)),
            renewal(0.1, semi_sync_fallback=True),
        ),
        Action.SEMI_SYNC_RESTORE,
        (False, 62),
    ),
    OptimeCase(
        "semi-sync back on, the replica has not reached the mark: still not sync",
        snap(
            "web-01",
            primary_db(70, clients=1),
            view("web-01", replica_of("web-01", "web-02", 61), optime=optime("web-01", seq=62)),
            LEADING,
        ),
        Action.LEAD,
        None,
    ),
    OptimeCase(
        "semi-sync back on, a replica reached the mark: sync",
        snap(
            "web-01",
            primary_db(70, clients=1),
            view("web-01", replica_of("web-01", "web-02", 62), optime=optime("web-01", seq=62)),
            LEADING,
        ),
        Action.LEAD,
        (True, 70),
    ),
    OptimeCase(
        "mark reached by a member that replicates from someone else: not sync",
        snap(
            "web-01",
            primary_db(70, clients=1),
            view("web-01", replica_of("web-03", "web-02", 65), optime=optime("web-01", seq=62)),
            LEADING,
        ),
        Action.LEAD,
        None,
    ),
    OptimeCase(
        "mark reached but no semi-sync client: not sync",
        snap(
            "web-01",
            primary_db(70, clients=0),
            view("web-01", replica_of("web-01", "web-02", 70), optime=optime("web-01", seq=62)),
            LEADING,
        ),
        Action.LEAD,
        None,
    ),
    OptimeCase(
        "new leader after an async one: keeps its mark, as mine",
        snap("web-01", primary_db(70, clients=0), view("web-01", optime=optime("web-02", seq=62)), LEADING),
        Action.LEAD,
        (False, 62),
    ),
    OptimeCase(
        "block mode: no replica for long, commits wait: still sync",
        snap(
            "web-01",
            primary_db(70, clients=0),
            view("web-01", optime=optime("web-01", True, 60)),
            renewal(0.1, no_clients_since=NOW - 60),
            when_no_replica_acks="block",
        ),
        Action.LEAD,
        None,
    ),
    OptimeCase(
        "switchover from an async leader: read-only, the final position recorded before the handover",
        snap(
            "web-01",
            primary_db(64, semi=False, read_only=True, clients=0),
            view(
                "web-01", member("web-02", 64), switchover=SwitchoverRequest("web-02"), optime=optime("web-01", seq=63)
            ),
            renewal(0.1, semi_sync_fallback=True, switchover_started=NOW - 1, switchover_target="web-02"),
        ),
        Action.SWITCHOVER_HANDOVER,
        (False, 64),
    ),
    OptimeCase(
        "DCS unreachable: nothing to write",
        snap("web-01", primary_db(70, semi=False), None, renewal(0.5, renewed_this_cycle=False)),
        Action.LEAD,
        None,
    ),
]


@pytest.mark.parametrize("case", OPTIME_CASES, ids=[c.id for c in OPTIME_CASES])
def test_leader_optime(case: OptimeCase) -> None:
    d = decide(case.snapshot)
    assert d.action == case.action, d
    written = (d.optime.sync, d.optime.gtid_seq) if d.optime is not None else None
    assert written == case.writes, d
    if d.optime is not None:
        assert d.optime.leader == case.snapshot.settings.host
        assert d.optime.gtid.endswith(f"-{d.optime.gtid_seq}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide(case: Case) -> None:
    d = decide(case.snapshot)
    assert d.action == case.action, d
    if case.target is not None:
        assert d.target == case.target, d
    assert case.says in d.reason, d.reason
    assert "\n" not in d.reason


def test_fencing_boundary_is_ttl_minus_margin() -> None:
    """Scan the renewal age: LEAD strictly before lease_ttl - fence_margin, FENCE from then on."""
    for ttl, margin in ((2.0, 0.5), (3.0, 0.5), (1.0, 1 / 3)):
        for age in (0.0, ttl - margin - 0.01, ttl - margin, ttl - margin + 0.01, ttl):
            s = replace(
                snap("web-01", primary_db(), None, renewal(age, renewed_this_cycle=False)),
                settings=Settings("web-01", "web-01", lease_ttl=ttl, fence_margin=margin, members=ADDR),
            )
            expected = Action.LEAD if age < ttl - margin else Action.FENCE
            assert decide(s).action == expected, (ttl, margin, age)


def test_decide_is_pure() -> None:
    s = snap("web-02", replica_db(seq=57), view(None, member("web-03", 55)))
    assert decide(s) == decide(s)


@pytest.mark.parametrize(
    ("mine", "at", "expected"),
    [
        ("", "0-1-57", ()),
        ("0-1-57", "0-1-57", ()),
        ("0-1-56", "0-1-57", ()),
        ("0-1-58", "0-1-57", ("0-1-58",)),
        ("0-3-57", "0-1-57", ("0-3-1..57",)),
        ("0-1-1", "", ("0-1-1",)),
        # Histories, not seq_nos: the leader's state (server 1 up to 100, then its own 2 up to 105) does
        # not contain server 1's 101..110, however high its own seq_no.
        ("0-1-110", "0-1-100,0-2-105", ("0-1-101..110",)),
        ("0-1-100,0-2-103", "0-1-100,0-2-105", ()),
    ],
)
def test_errant(mine: str, at: str, expected: tuple[str, ...]) -> None:
    assert errant(GtidState.parse(mine), GtidState.parse(at)) == expected


# -- issue 13: faster failover ------------------------------------------------------------------------------


def test_promotion_is_async_from_the_start_only_when_no_other_member_is_a_healthy_replica() -> None:
    """ACQUIRE carries semi_sync=False when the first cycle as leader would fall back at once anyway (no
    healthy replica to wait for): commits then never wait for an acknowledgement nobody can send."""
    alone = snap("web-02", replica_db(seq=57), view(None, member("web-02", 57), member("web-01", 57, role="primary")))
    d = decide(alone)
    assert (d.action, d.semi_sync) == (Action.ACQUIRE, False) and "no healthy replica" in d.reason, d
    # Another healthy replica (three nodes): semi-sync stays on, the usual fallback wait applies.
    with_replica = snap("web-02", replica_db(seq=57), view(None, member("web-02", 57), member("web-03", 55)))
    d = decide(with_replica)
    assert (d.action, d.semi_sync) == (Action.ACQUIRE, True), d
    # An unhealthy or cloning one acknowledges nothing.
    sick = snap("web-02", replica_db(seq=57), view(None, member("web-03", 55, healthy=False)))
    assert decide(sick).semi_sync is False
    # "block" never acknowledges alone.
    blocking = replace(alone, settings=replace(alone.settings, when_no_replica_acks="block"))
    d = decide(blocking)
    assert (d.action, d.semi_sync) == (Action.ACQUIRE, True), d
    # Bootstrap: nobody replicates yet.
    d = decide(snap("web-01", primary_db(seq=3), view(initialized=None)))
    assert (d.action, d.semi_sync) == (Action.ACQUIRE, False), d
    # Every other decision keeps the default.
    assert decide(snap("web-01", primary_db(), view("web-01", member("web-02")), LEADING)).semi_sync is True


def _expiring(ttl_left: float | None, *, margin: float = 1.0, db: LocalDb | None = None) -> Snapshot:
    s = snap("web-02", db or replica_db(), replace(view("web-01", member("web-02")), leader_ttl_left=ttl_left))
    return replace(s, settings=replace(s.settings, lease_ttl=3.0, fence_margin=margin))


@pytest.mark.parametrize(
    ("ttl_left", "margin", "db", "action"),
    [
        (0.0, 1.0, None, Action.STOP_RECEIVING),  # under a second left: the leader is past its fencing time
        (-1.0, 1.0, None, Action.STOP_RECEIVING),  # already gone in etcd, key not swept yet
        (0.0, 1.0, replica_db(io_running="No"), Action.STOP_RECEIVING),  # idempotent: stays stopped
        (1.0, 1.0, None, Action.FOLLOW),  # a renewing leader reads TTL - 1 or more
        (2.0, 1.0, None, Action.FOLLOW),
        (None, 1.0, None, Action.FOLLOW),  # unknown
        (1.0, 1.0, replica_db(io_running="No"), Action.FOLLOW),  # renewed after all: FOLLOW restarts the IO thread
        (0.0, 2 / 3, None, Action.FOLLOW),  # a 2 s lease: TTL 0 does not prove the leader fenced itself
        (0.0, 1.0, replica_db("web-03"), Action.FOLLOW),  # replicating from someone else: repoint first
    ],
)
def test_replica_stops_receiving_only_once_the_leader_is_past_its_fencing_time(
    ttl_left: float | None, margin: float, db: LocalDb | None, action: Action
) -> None:
    d = decide(_expiring(ttl_left, margin=margin, db=db))
    assert d.action == action, d
    if action is Action.STOP_RECEIVING:
        assert d.target == "web-01" and "fenced itself" in d.reason, d


def test_after_stopping_to_receive_the_replica_promotes_once_the_key_is_gone() -> None:
    """The IO thread stopped ahead of the expiry changes nothing about eligibility: relay log applied and
    most advanced -> ACQUIRE (async: the old leader is not a healthy replica)."""
    stopped = replica_db(seq=57, io_running="No")
    d = decide(snap("web-02", stopped, view(None, member("web-02", 57), member("web-01", 57, role="primary"))))
    assert (d.action, d.semi_sync) == (Action.ACQUIRE, False), d
    # Relay log not applied yet: waits, as before.
    behind = replica_db(seq=50, io_seq=57, io_running="No")
    assert decide(snap("web-02", behind, view(None, member("web-02", 57)))).action == Action.WAIT


def test_a_cut_off_replica_with_a_live_member_key_does_not_bring_semi_sync_back() -> None:
    """chaos app-partition: the replica cut off still had a healthy member key (member_ttl) and a connection
    the primary counted as a client, so the leader restored semi-sync 0.5 s after falling back and every commit
    stalled again (three times in one run). The restore now waits until a replica has reached the leader's own
    "not sync" optime mark: writes acknowledged alone since the fallback."""
    mark = OptimeRecord("web-01", False, "0-1-80", 80)
    frozen = member("web-02", 57, replicating_from=ADDR["web-01"])  # its last key, from before the cut
    leading = primary_db(seq=80, clients=1, semi=False)
    d = decide(snap("web-01", leading, view("web-01", frozen, optime=mark), renewal(0.1, semi_sync_fallback=True)))
    assert d.action == Action.LEAD, d
    caught_up = member("web-02", 80, replicating_from=ADDR["web-01"])
    d = decide(snap("web-01", leading, view("web-01", caught_up, optime=mark), renewal(0.1, semi_sync_fallback=True)))
    assert d.action == Action.SEMI_SYNC_RESTORE and "reached 0-1-80" in d.reason, d
    # Another history with a higher seq_no has not reached the mark.
    other = member("web-02", 90, gtid="0-2-90", replicating_from=ADDR["web-01"])
    d = decide(snap("web-01", leading, view("web-01", other, optime=mark), renewal(0.1, semi_sync_fallback=True)))
    assert d.action == Action.LEAD, d
    # No optime of mine (e.g. the DCS lost it): the previous rule (a replica streams from me) applies.
    d = decide(snap("web-01", leading, view("web-01", frozen), renewal(0.1, semi_sync_fallback=True)))
    assert d.action == Action.SEMI_SYNC_RESTORE, d
