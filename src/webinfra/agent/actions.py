"""Carry out a `Decision`: change MariaDB and the DCS, append events, and return the agent's new memory.

Every handler is idempotent against the snapshot's facts (e.g. FOLLOW changes replication only when it
differs), so running the same decision on consecutive cycles costs nothing. Errors (DbError, DCS
trouble) propagate to the loop, which logs them and keeps the previous memory: the next cycle decides
again from fresh facts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace

from webinfra.agent import clock
from webinfra.agent.config import AgentConfig
from webinfra.agent.dcs import DcsError, DcsUnreachable, EtcdClient, Keys
from webinfra.agent.decide_leader import acks_required
from webinfra.agent.decision import Action, Decision
from webinfra.agent.eventlog import EventLog, utc_now
from webinfra.agent.mysql import DbError, LocalMariaDB
from webinfra.agent.records import history_with, leader_value, optime_value
from webinfra.agent.snapshot import AgentState, LocalDb, OptimeRecord, Snapshot, optime_at, released, without_switchover

log = logging.getLogger("webinfra.agent")


class Actor:
    def __init__(
        self,
        config: AgentConfig,
        dcs: EtcdClient,
        db: LocalMariaDB,
        events: EventLog,
        start_clone: Callable[[str, tuple[str, ...]], None],
        unpublish_primary: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.dcs = dcs
        self.db = db
        self.events = events
        self.keys = Keys(config.prefix)
        self.start_clone = start_clone
        # Called before the lease is let go (release, demote, handover, stop) or the server fenced: the
        # API's /primary must say 503 before anyone else can be promoted.
        self.unpublish_primary = unpublish_primary
        self.me = config.host

    def _fence_at(self, state: AgentState) -> float | None:
        """When my lease, as last confirmed, stops being certain (CLOCK_BOOTTIME); None: unknown."""
        if not state.holds_lease or state.last_renewal_sent is None:
            return None
        return state.last_renewal_sent + self.config.lease_ttl - self.config.fence_margin

    def act(self, d: Decision, s: Snapshot) -> AgentState:
        handler: Callable[[Decision, Snapshot], AgentState] = getattr(self, f"_{d.action.value}")
        if d.optime is not None:
            # Before acting: "not sync" must be in the DCS before the first write acknowledged alone. If
            # this fails, the action does not run (the loop logs it; the next cycle tries again).
            self._put_optime(d.optime)
        return handler(d, s)

    # -- the optime key (decide.py: leader_optime) ---------------------------------------------------------

    def _put_optime(self, record: OptimeRecord) -> None:
        self.dcs.put(self.keys.optime, optime_value(record))
        at = record.gtid or record.gtid_seq
        if record.sync:
            log.info("optime: sync (every acknowledged write is on a replica) at %s", at)
        else:
            log.info("optime: NOT sync: writes acknowledged without a replica up to %s", at)

    def _async_at(self, db: LocalDb) -> OptimeRecord:
        return optime_at(self.me, False, db)

    def _semi_sync_back_on(self, s: Snapshot, d: Decision) -> None:
        """Just after switching semi-sync master back on: if writes were acknowledged without a replica,
        the position now is past every one of them. Record it as the mark a replica must reach before the
        optime says sync again (decide_leader.leader_optime)."""
        record = d.optime or (s.cluster.optime if s.cluster else None)
        if record is not None and not record.sync:
            db = self.db.facts()
            if db.reachable:
                self._put_optime(self._async_at(db))

    def _ensure_leader(self, d: Decision, s: Snapshot) -> list[str]:
        """ensure_leader, with the optime written around semi-sync master changes."""
        semi_sync = not s.me.semi_sync_fallback
        if not semi_sync and s.db.semi_master_enabled and not (d.optime is not None and not d.optime.sync):
            self._put_optime(self._async_at(s.db))  # before acknowledging alone, never after
        changed = self.db.ensure_leader(s.db, semi_sync=semi_sync, fence_at=self._fence_at(s.me))
        if semi_sync and not s.db.semi_master_enabled:
            self._semi_sync_back_on(s, d)
        return changed

    # -- leader ------------------------------------------------------------------------------------------

    def _acquire(self, d: Decision, s: Snapshot) -> AgentState:
        sent = clock.now()  # the lease's TTL starts when etcd gets the grant: after this
        lease = self.dcs.grant(self.config.lease_ttl)
        since = utc_now()
        if not self.dcs.create(self.keys.leader, leader_value(self.me, since, None), lease=lease):
            log.info("another member took the leader key first")
            self._revoke_quietly(lease)
            return s.me
        state = replace(
            s.me,
            holds_lease=True,
            lease_id=lease,
            last_renewal_sent=sent,
            renewed_this_cycle=True,
            lease_lost=False,
            fenced=False,
            semi_sync_fallback=not d.semi_sync,
            no_clients_since=clock.now(),
            switchover_started=None,
            switchover_target=None,
        )
        try:
            gtid = self.db.promote(
                self._fence_at(state) or sent,
                replicating=s.db.slave is not None,
                semi_sync=d.semi_sync,
                before_writable=None if d.semi_sync else self._async_from_promotion,
            )
        except DbError as exc:
            # Not promoted (e.g. the relay log could not be applied within the lease): let go at once, so
            # nobody waits for a leader that is not writable, and receive from the source again.
            log.error("promotion failed, releasing the lease: %s", exc)
            self._fence_quietly()  # the server may have run part of the script (even read_only=OFF)
            self._revoke_quietly(lease)
            try:
                self.db.resume_receiving()
            except DbError as again:
                log.warning("could not restart the IO thread: %s", again)
            raise
        self.dcs.put(self.keys.leader, leader_value(self.me, since, gtid), lease=lease)
        if d.semi_sync:
            self._promoted_optime(s)
        cluster = s.cluster
        if cluster is not None and cluster.initialized is None:
            self.dcs.create(self.keys.initialized, self.me)
        self._append_history(s.me.known_leader, d.reason, gtid)
        if cluster is not None and cluster.switchover is not None:
            self.dcs.delete(self.keys.switchover)
        self.events.append("promoted", f"promoted {self.me}: {d.reason}")
        if not d.semi_sync:
            self.events.append("semi_sync_fallback", f"promoted without a healthy replica: {d.reason}")
        log.warning("promoted %s: %s", self.me, d.reason)
        return state

    def _async_from_promotion(self, at: LocalDb) -> None:
        """Promoting with semi-sync off: "not sync" at my promotion point goes to the DCS before the server
        is writable, as before any fallback (the loop keeps it current from the next cycle on). A DCS
        failure here stops the promotion with the server still read-only."""
        try:
            self._put_optime(optime_at(self.me, False, at))
        except (DcsUnreachable, DcsError) as exc:
            raise DbError(f"could not record the optime before acknowledging alone: {exc}") from exc

    def _promoted_optime(self, s: Snapshot) -> None:
        """Semi-sync is on from the promotion. A previous leader's "not sync" record stays not sync, now
        at my promotion point (which covers its acknowledged writes: I had them to be allowed to promote),
        until a replica of mine reaches it."""
        previous = s.cluster.optime if s.cluster is not None else None
        sync = previous is None or previous.sync
        # The mark is my binlog's tip now that the relay log is applied, never a GTID picked out of the
        # promotion state `gtid` (its first domain-0 entry can be an older server's, far behind).
        try:
            db = self.db.facts()
        except DbError:
            db = s.db
        record = optime_at(self.me, sync, db if db.reachable else s.db)
        try:
            self._put_optime(record)
        except (DcsUnreachable, DcsError) as exc:  # the next LEAD cycle writes it (decide_leader.leader_optime)
            log.warning("could not write the optime after promoting: %s", exc)

    def _append_history(self, previous: str | None, reason: str, gtid: str) -> None:
        entry = {"at": utc_now(), "from": previous, "to": self.me, "reason": reason, "promoted_at_gtid": gtid}
        for _ in range(5):  # read-modify-write; retried when another writer got in between
            current = self.dcs.get(self.keys.history)
            revision = current.mod_revision if current else 0
            if self.dcs.replace(self.keys.history, history_with(current.value if current else None, entry), revision):
                return
        log.warning("could not append to the history (too much contention)")

    def _lead(self, d: Decision, s: Snapshot) -> AgentState:
        changed = self._ensure_leader(d, s)
        if changed:
            log.info("leader %s: %s", self.me, ", ".join(changed))
        leader = s.cluster.leader if s.cluster else None
        if leader is not None and leader.name == self.me and leader.promoted_at_gtid is None:
            # Promotion was interrupted or this process resumed a lease: record the point now.
            self.dcs.put(
                self.keys.leader, leader_value(self.me, leader.since, s.db.gtid_current_pos), lease=s.me.lease_id
            )
        return replace(s.me, fenced=False)

    def _resume(self, d: Decision, s: Snapshot) -> AgentState:
        assert s.cluster is not None and s.cluster.leader is not None
        return replace(s.me, holds_lease=True, lease_id=s.cluster.leader.lease, last_renewal_sent=None, fenced=False)

    def _semi_sync_fallback(self, d: Decision, s: Snapshot) -> AgentState:
        # act() wrote the optime "not sync" first (decide attaches it to this decision).
        self.db.set_semi_sync_master(False)
        self.events.append("semi_sync_fallback", d.reason)
        return replace(s.me, semi_sync_fallback=True)

    def _semi_sync_restore(self, d: Decision, s: Snapshot) -> AgentState:
        self.db.set_semi_sync_master(True)
        self._semi_sync_back_on(s, d)
        self.events.append("semi_sync_restored", d.reason)
        return replace(s.me, semi_sync_fallback=False)

    def _fence(self, d: Decision, s: Snapshot) -> AgentState:
        if s.me.fenced and s.db.read_only:
            return s.me
        self.unpublish_primary()
        # A server that did not answer the facts query gets a short try: the loop must keep renewing.
        killed = self.db.fence(self.config.repl_user, timeout=5.0 if s.db.reachable else 1.0)
        detail = f"{d.reason}; killed {len(killed)} session(s)"
        self.events.append("fenced", detail)
        log.warning("fenced %s: %s", self.me, detail)
        return replace(s.me, fenced=True)

    def _release(self, d: Decision, s: Snapshot) -> AgentState:
        self.unpublish_primary()
        if s.db.reachable or not s.db.gone:
            self._fence_quietly()
        lease = s.me.lease_id
        if not lease and s.cluster is not None and s.cluster.leader is not None:
            lease = s.cluster.leader.lease
        if lease:
            self.dcs.revoke(lease)  # deletes the leader key with it: a replica may promote now
        self.events.append("released", d.reason)
        log.warning("released the leader lease: %s", d.reason)
        return released(s.me, fenced=False)

    def _demote(self, d: Decision, s: Snapshot) -> AgentState:
        self.unpublish_primary()
        killed: list[str] = []
        if s.db.reachable:
            killed = self.db.fence(self.config.repl_user)
        elif not s.db.gone:
            self._fence_quietly()  # it did not answer the facts query, but may be alive: try anyway
        if s.me.lease_id and s.cluster is not None:
            self._revoke_quietly(s.me.lease_id)
        detail = f"{d.reason}; killed {len(killed)} session(s)"
        self.events.append("demoted", detail)
        log.warning("demoted %s: %s", self.me, detail)
        return released(s.me, lease_lost=False, fenced=False, semi_sync_fallback=False)

    def _restart_mariadb(self, d: Decision, s: Snapshot) -> AgentState:
        """SIGKILL the hung mysqld (it cannot commit anything after that), let go of a held lease (mysqld is
        now proven gone), then start it through webinfra's supervisor: my.cnf starts it read-only."""
        self.unpublish_primary()
        pid = self.db.mysqld_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = clock.now() + 10
            while self.db.mysqld_pid() == pid and clock.now() < deadline:
                time.sleep(0.05)
        state = s.me
        if state.holds_lease and state.lease_id:
            self._revoke_quietly(state.lease_id)
            state = released(state, fenced=False, semi_sync_fallback=False)
        self.events.append("mariadb_restarted", d.reason)
        log.warning("restarting MariaDB (pid %s): %s", pid, d.reason)
        argv = self.config.mariadb_control.start
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            log.error("starting MariaDB again exited %d: %s", proc.returncode, tail)
        return replace(state, fence_failing_since=None, fenced=False, db_failures=0)

    # -- switchover (leader side; the target's side is ACQUIRE) --------------------------------------------

    def _switchover_prepare(self, d: Decision, s: Snapshot) -> AgentState:
        assert d.target is not None
        if not s.db.read_only:
            self.db.set_read_only(True)
        if s.me.switchover_started is not None:
            return s.me
        request = s.cluster.switchover if s.cluster else None
        if request is not None and request.to is None:
            # Name the chosen target in the key, so the other members defer to it once I let go.
            body = json.dumps({"to": d.target, "requested_at": request.requested_at})
            self.dcs.replace(self.keys.switchover, body, request.mod_revision, lease=request.lease)
        self.events.append("switchover", d.reason)
        return replace(s.me, switchover_started=clock.now(), switchover_target=d.target)

    def _switchover_handover(self, d: Decision, s: Snapshot) -> AgentState:
        self.unpublish_primary()
        self.dcs.revoke(s.me.lease_id)
        self.events.append("switchover", d.reason)
        return released(s.me)

    def _switchover_abort(self, d: Decision, s: Snapshot) -> AgentState:
        if s.cluster is not None and s.cluster.switchover is not None:
            self.dcs.delete(self.keys.switchover)
        self._ensure_leader(d, s)
        self.events.append("switchover", d.reason)
        return without_switchover(s.me)

    # -- not the leader ----------------------------------------------------------------------------------

    def _stop_receiving(self, d: Decision, s: Snapshot) -> AgentState:
        self._read_only(s, d.reason)
        slave = s.db.slave
        if slave is not None and slave.io_running != "No":
            self.db.stop_receiving()
            self.events.append("stop_receiving", d.reason)
        return without_switchover(s.me, fenced=False)

    def _read_only(self, s: Snapshot, why: str) -> None:
        """Every non-leader is read-only; a writable one also loses its site sessions."""
        if s.db.reachable and not s.db.read_only:
            killed = self.db.fence(self.config.repl_user)
            log.warning("read-only now (%s); killed %d session(s)", why, len(killed))

    def _follow(self, d: Decision, s: Snapshot) -> AgentState:
        assert d.target is not None
        self._read_only(s, d.reason)
        changed = self.db.follow(
            s.db,
            host=self.config.address_of(d.target),
            port=self.config.mariadb.port,
            user=self.config.repl_user,
            password=self.config.repl_password(),
            align_to_binlog=d.action == Action.REJOIN,
            tls=self.config.repl_tls_clause(),
        )
        if changed:
            self.events.append("following", d.reason)
        return without_switchover(s.me, fenced=False)

    _rejoin = _follow

    def _reclone(self, d: Decision, s: Snapshot) -> AgentState:
        assert d.target is not None
        self._read_only(s, d.reason)
        self.events.append("reclone_started", d.reason)
        self.start_clone(d.target, d.errant)
        return replace(s.me, cloning=True, known_leader=d.target)

    def _cloning(self, d: Decision, s: Snapshot) -> AgentState:
        return s.me

    def _wait(self, d: Decision, s: Snapshot) -> AgentState:
        self._read_only(s, d.reason)
        return s.me

    # -- shutdown ----------------------------------------------------------------------------------------

    def step_down(self, state: AgentState, why: str) -> AgentState:
        """Agent stopping: a leader goes read-only, then lets go, so a replica can take over at once
        without ever two writable nodes."""
        if not state.holds_lease:
            return state
        self.unpublish_primary()
        self._fence_quietly()
        self._final_optime()
        self._revoke_quietly(state.lease_id)
        self.events.append("released", why)
        log.warning("released the leader lease: %s", why)
        return released(state)

    def _final_optime(self) -> None:
        """Stopping while acknowledging without a replica: record the final position (read-only now, so
        it is final) while I still hold the lease, so a replica that has all of it may take over and one
        that has not waits for me to return."""
        try:
            db = self.db.facts()
            if db.reachable and not acks_required(db):
                self._put_optime(self._async_at(db))
        except (DcsUnreachable, DcsError) as exc:
            log.warning("could not record the final position in the optime: %s", exc)

    def _fence_quietly(self) -> None:
        try:
            self.db.fence(self.config.repl_user, timeout=2.0)
        except Exception as exc:  # MariaDB may be down already; letting go is still right
            log.warning("could not fence before letting go of the lease: %s", exc)

    def _revoke_quietly(self, lease: int) -> None:
        try:
            self.dcs.revoke(lease)
        except (DcsUnreachable, DcsError) as exc:
            log.info("could not revoke lease %d: %s", lease, exc)
