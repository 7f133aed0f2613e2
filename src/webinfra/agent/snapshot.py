"""What one HA cycle knows, as immutable values: the local MariaDB's facts (`LocalDb`), the DCS view
(`ClusterView`, or None when etcd is unreachable), the agent's own memory (`AgentState`) and its
settings. `decide` reads a `Snapshot` and nothing else; tests build them with small factories.

Times are `clock.now()` seconds (CLOCK_BOOTTIME: it keeps counting while the machine is suspended, so
lease arithmetic never believes a lease is younger than it is), never compared across hosts.

Histories are compared as GTID *states* (`GtidState`: the last seq_no of every domain AND server_id, as
`gtid_binlog_state` lists them), never as bare sequence numbers: 0-1-110 is not "after" 0-2-105, it is
another history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

# MariaDB error numbers that mean "this replica's history diverged from its source's"; only a re-clone
# repairs them. 1236: the source's binlog lacks the GTID the replica asks for (errant or purged);
# 1950: gtid_strict_mode refused an out-of-order GTID (the replica wrote something locally).
DIVERGED_IO_ERRNOS = frozenset({1236})
DIVERGED_SQL_ERRNOS = frozenset({1950})


@dataclass(frozen=True, order=True)
class Gtid:
    """One MariaDB GTID, domain-server_id-seq_no."""

    domain: int
    server_id: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> Gtid:
        domain, server_id, seq = (int(part) for part in text.strip().split("-"))
        return cls(domain, server_id, seq)

    def __str__(self) -> str:
        return f"{self.domain}-{self.server_id}-{self.seq}"


def gtid_in_domain(position: str | None, domain: int = 0) -> Gtid | None:
    """The GTID of `domain` in a position list like '0-1-57,1-3-9' (None when absent or empty)."""
    for part in (position or "").replace("\n", ",").split(","):
        if part.strip():
            gtid = Gtid.parse(part)
            if gtid.domain == domain:
                return gtid
    return None


@dataclass(frozen=True)
class GtidState:
    """A node's history as the last seq_no per (domain, server_id): the shape of `@@gtid_binlog_state`.

    With gtid_strict_mode, each server's transactions in a domain are numbered in order, so "has
    everything of server S in domain D up to N" is one number per (D, S). `contains` is therefore
    per-(domain, server) containment: the check orchestrator calls errant-GTID detection."""

    seqs: Mapping[tuple[int, int], int] = field(default_factory=dict)

    @classmethod
    def parse(cls, *positions: str | None) -> GtidState:
        """Merge GTID lists ('0-1-57,0-2-60', newlines allowed), keeping the highest seq_no per key."""
        seqs: dict[tuple[int, int], int] = {}
        for position in positions:
            for part in (position or "").replace("\n", ",").split(","):
                if part.strip():
                    g = Gtid.parse(part)
                    seqs[(g.domain, g.server_id)] = max(g.seq, seqs.get((g.domain, g.server_id), 0))
        return cls(seqs)

    def gtids(self) -> list[Gtid]:
        return [Gtid(d, s, n) for (d, s), n in sorted(self.seqs.items())]

    def has(self, gtid: Gtid) -> bool:
        return self.seqs.get((gtid.domain, gtid.server_id), 0) >= gtid.seq

    def contains(self, other: GtidState) -> bool:
        return all(self.has(g) for g in other.gtids())

    def beyond(self, other: GtidState) -> list[str]:
        """My transactions `other` lacks, as ranges 'domain-server-first..last' (errant GTIDs)."""
        out = []
        for (d, s), n in sorted(self.seqs.items()):
            theirs = other.seqs.get((d, s), 0)
            if n > theirs:
                out.append(f"{d}-{s}-{theirs + 1}" + (f"..{n}" if n > theirs + 1 else ""))
        return out

    def server_seq(self, server_id: int, domain: int = 0) -> int:
        return self.seqs.get((domain, server_id), 0)

    def tip(self, domain: int = 0) -> int:
        """The highest seq_no in `domain` (0 when empty)."""
        return max((n for (d, _), n in self.seqs.items() if d == domain), default=0)

    def __bool__(self) -> bool:
        return bool(self.seqs)

    def __str__(self) -> str:
        return ",".join(str(g) for g in self.gtids())


def seq_of(position: str | None) -> int:
    """Domain 0's sequence number in a position list, 0 when there is none."""
    gtid = gtid_in_domain(position)
    return gtid.seq if gtid else 0


@dataclass(frozen=True)
class SlaveStatus:
    """The parts of SHOW SLAVE STATUS the agent uses."""

    master_host: str
    master_port: int
    io_running: str  # "Yes", "No" or "Connecting"
    sql_running: str
    using_gtid: str  # "Slave_Pos", "Current_Pos" or "No"
    gtid_io_pos: str
    seconds_behind: float | None
    last_io_errno: int = 0
    last_io_error: str = ""
    last_sql_errno: int = 0
    last_sql_error: str = ""

    @property
    def running(self) -> bool:
        return self.io_running == "Yes" and self.sql_running == "Yes"

    @property
    def diverged(self) -> bool:
        return self.last_io_errno in DIVERGED_IO_ERRNOS or self.last_sql_errno in DIVERGED_SQL_ERRNOS


@dataclass(frozen=True)
class LocalDb:
    """Facts of this host's MariaDB, read in one client call at the start of the cycle."""

    reachable: bool
    error: str = ""
    read_only: bool = True
    server_id: int = 0
    gtid_binlog_pos: str = ""
    gtid_binlog_state: str = ""  # every (domain, server_id)'s last GTID in my binlog
    gtid_slave_pos: str = ""
    gtid_current_pos: str = ""
    semi_master_enabled: bool = False
    semi_master_status: bool = False
    semi_master_clients: int = 0
    # Commits waiting for an acknowledgement right now, and acknowledged transactions so far: waiters with
    # no new acknowledgement mean the replicas are connected on paper only (a partition black-holes TCP:
    # the primary keeps counting the dead connection as a client for many minutes).
    semi_master_wait_sessions: int = 0
    semi_master_yes_tx: int = 0
    semi_wait_point: str = ""
    semi_master_timeout: int = 0
    semi_slave_enabled: bool = False
    slave: SlaveStatus | None = None
    watchdog_installed: bool = False  # watchdog.py's event is there and enabled
    # Unreachable only: proof that mysqld is not running (nothing listens on the socket and its pid is
    # gone), as opposed to a slow or stalled server that may still commit.
    gone: bool = False

    @property
    def replication_configured(self) -> bool:
        """Replicating (or set up to) from some source. An old primary has none: promotion resets it."""
        return self.slave is not None and bool(self.slave.master_host)

    @property
    def gtid_seq(self) -> int:
        """How far this node's history goes in domain 0: applied, or received (relay log) if further."""
        received = seq_of(self.slave.gtid_io_pos) if self.slave else 0
        return max(seq_of(self.gtid_current_pos), received)

    @property
    def last_gtid(self) -> Gtid | None:
        """The last transaction in my binlog (domain 0); gtid_current_pos only when the binlog is empty. Not
        gtid_current_pos first: on a node that was a replica moments ago it is a stale gtid_slave_pos, an
        older server's GTID (nemesis seed 7: an optime mark put there let a replica lacking 45
        async-acknowledged writes promote over them)."""
        return gtid_in_domain(self.gtid_binlog_pos) or gtid_in_domain(self.gtid_current_pos)

    @property
    def gtid_state(self) -> GtidState:
        """Everything this node has, or has received and will apply: binlog state, slave and IO positions."""
        io_pos = self.slave.gtid_io_pos if self.slave else ""
        return GtidState.parse(self.gtid_binlog_state, self.gtid_binlog_pos, self.gtid_current_pos, io_pos)

    @property
    def binlog_state(self) -> GtidState:
        """What is in my own binlog: the transactions that can be errant (received ones are the source's)."""
        return GtidState.parse(self.gtid_binlog_state, self.gtid_binlog_pos)

    @property
    def applied_all_received(self) -> bool:
        """The SQL thread has applied every transaction the IO thread received."""
        if self.slave is None or not self.slave.gtid_io_pos:
            return True
        return seq_of(self.gtid_slave_pos) >= seq_of(self.slave.gtid_io_pos)


class DbRole(StrEnum):
    """What a DB node is right now, as the agents publish it (model.DbRole is a host's role in the topology)."""

    PRIMARY = "primary"
    REPLICA = "replica"
    CLONING = "cloning"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class LeaderRecord:
    """The `leader` key: who leads, since when, and the GTID it was promoted at (None until recorded)."""

    name: str
    since: str = ""
    promoted_at_gtid: str | None = None
    lease: int = 0
    mod_revision: int = 0


@dataclass(frozen=True)
class MemberRecord:
    """A `members/<host>` key: what that member's agent published in its last cycle."""

    name: str
    role: str = DbRole.UNKNOWN
    gtid: str = ""
    gtid_seq: int = 0
    healthy: bool = False
    read_only: bool = True
    lag_seconds: float | None = None
    replicating_from: str = ""
    applied_all_received: bool = True
    updated: str = ""
    gtid_state: str = ""  # GtidState as text ("" from an older agent: `gtid` stands in)

    @property
    def state(self) -> GtidState:
        try:
            return GtidState.parse(self.gtid_state or self.gtid)
        except ValueError:  # a garbled key: no history we can count on
            return GtidState()


@dataclass(frozen=True)
class OptimeRecord:
    """The `optime` key: the last leader's durability promise. It has no lease, so it outlives that leader.

    `sync`: every write the leader acknowledged is on a replica (semi-sync acks required). False while it
    acknowledged (or could acknowledge) writes no replica has: then `gtid`/`gtid_seq` say how far those
    go, and no member behind that point may take over (decide_elect.py)."""

    leader: str
    sync: bool
    gtid: str = ""  # domain 0's GTID, e.g. "0-2-14" ("" when the binlog is empty)
    gtid_seq: int = 0
    at: str = ""
    mod_revision: int = 0
    server_id: int = 0  # the leader's server_id: its term's transactions carry it (0: unknown)

    def same_promise(self, other: OptimeRecord | None) -> bool:
        """Equal but for when it was written."""
        return other is not None and (self.leader, self.sync, self.gtid, self.gtid_seq) == (
            other.leader,
            other.sync,
            other.gtid,
            other.gtid_seq,
        )


@dataclass(frozen=True)
class SwitchoverRequest:
    to: str | None
    requested_at: str = ""
    mod_revision: int = 0
    lease: int = 0  # `webinfra switchover` attaches it to a lease: a request nobody acts on expires


@dataclass(frozen=True)
class ClusterView:
    """Everything under the DCS prefix, read in one range request this cycle."""

    leader: LeaderRecord | None = None
    initialized: str | None = None
    members: Mapping[str, MemberRecord] = field(default_factory=dict)
    switchover: SwitchoverRequest | None = None
    leader_ttl_left: float | None = None
    optime: OptimeRecord | None = None


@dataclass(frozen=True)
class AgentState:
    """The agent's memory between cycles (the loop replaces it; decide only reads it)."""

    holds_lease: bool = False
    lease_id: int = 0
    # Send time of the last keepalive (or grant) that etcd confirmed: the lease lives at least until
    # this + lease_ttl, so fencing counts from here, never from when the reply came back.
    last_renewal_sent: float | None = None
    renewed_this_cycle: bool = False
    lease_lost: bool = False  # a keepalive said the lease is gone; decide demotes once
    fenced: bool = False
    no_clients_since: float | None = None  # leader: when Rpl_semi_sync_master_clients was first seen 0
    acks_stalled_since: float | None = None  # leader: since when commits wait and no acknowledgement came
    last_yes_tx: int = -1  # leader: Rpl_semi_sync_master_yes_tx at the last cycle
    semi_sync_fallback: bool = False  # the agent switched semi-sync off (fallback_async)
    switchover_target: str | None = None
    switchover_started: float | None = None
    cloning: bool = False
    clone_failed_at: float | None = None
    known_leader: str | None = None  # the last leader seen in the DCS (kept while it is unreachable)
    db_failures: int = 0  # consecutive cycles in which local MariaDB did not answer
    # Since when every attempt to fence (read-only) a server that is alive but not answering failed: the
    # loop then stops renewing the lease and keeps reading the DCS at its normal pace (loop.py).
    fence_failing_since: float | None = None


@dataclass(frozen=True)
class Settings:
    """The slice of the config `decide` needs."""

    host: str
    initial_primary: str
    lease_ttl: float = 2.0
    fence_margin: float = 0.5
    replica_max_lag: float = 5.0
    when_no_replica_acks: str = "fallback_async"
    semi_sync_fallback: float = 1.0
    switchover_timeout: float = 5.0
    reclone_backoff: float = 10.0
    # A leader releases its lease for a dead MariaDB only after this many failed cycles in a row AND proof
    # that mysqld is gone; a slow server keeps the lease (and is fenced if it answers at all).
    release_after_failures: int = 3
    # A server alive but not answering, that no fencing attempt could make read-only for this long, is
    # killed and started again (decide._hung_mariadb). Several lease TTLs: a short stall rides it out.
    restart_hung_after: float = 6.0
    members: Mapping[str, str] = field(default_factory=dict)  # host -> address


@dataclass(frozen=True)
class Snapshot:
    now: float
    settings: Settings
    db: LocalDb
    cluster: ClusterView | None  # None: the DCS is unreachable this cycle
    me: AgentState

    @property
    def renewal_fresh(self) -> bool:
        """The leader lease certainly still exists in etcd, with the fencing margin to spare."""
        sent = self.me.last_renewal_sent
        s = self.settings
        return sent is not None and self.now < sent + s.lease_ttl - s.fence_margin


def released(state: AgentState, **changes: Any) -> AgentState:
    """The memory of an agent that no longer holds the leader lease (and runs no switchover)."""
    return replace(
        state,
        holds_lease=False,
        lease_id=0,
        last_renewal_sent=None,
        renewed_this_cycle=False,
        switchover_started=None,
        switchover_target=None,
        **changes,
    )


def without_switchover(state: AgentState, **changes: Any) -> AgentState:
    """The memory of an agent that runs no switchover (any more)."""
    return replace(state, switchover_started=None, switchover_target=None, **changes)


def role_of(state: AgentState, db: LocalDb) -> DbRole:
    """The role this agent publishes in its member key."""
    if state.holds_lease:
        return DbRole.PRIMARY
    if state.cloning:
        return DbRole.CLONING
    if db.reachable and db.replication_configured:
        return DbRole.REPLICA
    return DbRole.UNKNOWN


def optime_at(me: str, sync: bool, db: LocalDb) -> OptimeRecord:
    """An optime record at the last transaction in `db`'s binlog (LocalDb.last_gtid)."""
    here = db.last_gtid
    return OptimeRecord(me, sync, str(here) if here else "", here.seq if here else 0, server_id=db.server_id)
