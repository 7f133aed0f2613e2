"""The HA loop: every `loop_interval`, gather one snapshot, decide, act, publish.

Gathering, in this order:
1. local MariaDB facts (one client call);
2. leader only: the lease keepalive, sent first so its send time is as late as possible;
3. one range over the prefix (leader, members, initialized, switchover) and the leader lease's TTL;
4. this member's lease keepalive.
The first DCS failure ends the DCS part of the cycle (the snapshot says "unreachable"). A leader's DCS
calls never run past its fencing time, and its sleep never runs past it either: fencing is on time
even when every etcd endpoint hangs.

After acting, the member key is refreshed and a `Published` value is swapped in for the HTTP API.
A re-clone runs in a worker thread; the loop picks up its result at the start of a cycle.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
from dataclasses import replace

from webinfra.agent import clock
from webinfra.agent.actions import Actor
from webinfra.agent.api import Published
from webinfra.agent.clone import reclone
from webinfra.agent.config import AgentConfig, settings_of
from webinfra.agent.dcs import DcsError, DcsUnreachable, EtcdClient, Keys, etcd_client_for
from webinfra.agent.decide import decide
from webinfra.agent.decision import Action, Decision
from webinfra.agent.eventlog import EventLog, utc_now
from webinfra.agent.mysql import DbError, LocalMariaDB, pid_running
from webinfra.agent.records import cluster_view, member_value
from webinfra.agent.snapshot import AgentState, ClusterView, DbRole, LocalDb, Snapshot, role_of

log = logging.getLogger("webinfra.agent")

# Poll interval while a failover is likely. (etcd reports a lease's time to live in whole seconds,
# rounded down: a healthy leader's lease reads 1 or 2, a silent one 0.)
EXPIRY_POLL = 0.1
# How often a leader looks at its mysqld's pid between cycles (a crash is then seen within this).
PID_WATCH = 0.05

_CHANGES_MARIADB = frozenset(
    {
        Action.ACQUIRE,
        Action.FENCE,
        Action.DEMOTE,
        Action.REJOIN,
        Action.SEMI_SYNC_FALLBACK,
        Action.SEMI_SYNC_RESTORE,
        Action.SWITCHOVER_PREPARE,
        Action.SWITCHOVER_ABORT,
        Action.RESTART_MARIADB,
        Action.STOP_RECEIVING,
    }
)


class Agent:
    """One host's HA agent. `cycle()` is one pass; `run()` loops until `stop()`."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        dcs: EtcdClient | None = None,
        db: LocalMariaDB | None = None,
    ) -> None:
        self.config = config
        self.settings = settings_of(config)
        self.keys = Keys(config.prefix)
        self.dcs = dcs or etcd_client_for(config)
        self.db = db or LocalMariaDB(config.mariadb.socket, pid_file=config.mariadb.pid_file)
        self.events = EventLog(config.events_file, config.host)
        self.actor = Actor(config, self.dcs, self.db, self.events, self._start_clone, self._unpublish_primary)
        self.state = AgentState()
        self.published = Published()
        self._member_lease = 0
        self._clone_results: queue.SimpleQueue[tuple[str, float, str | None, str]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._last_logged: tuple[str, str | None, str] | None = None
        self._last_view: ClusterView | None = None
        self._source_lost_at: float | None = None
        # Set by the leader-key watch (and stop()): the loop's sleep ends at once and a cycle runs.
        self._wake = threading.Event()
        self._watch_dcs = dcs is None  # an injected client (tests) is not shared with a watch thread
        self._mysqld_pid: int | None = None  # as of the last cycle whose facts call got an answer

    # -- one cycle ---------------------------------------------------------------------------------------

    def _install_watchdog(self) -> None:
        try:
            self.db.install_watchdog(self.config.repl_user)
            log.info("watchdog event installed: MariaDB fences itself if this agent stops renewing")
        except DbError as exc:
            log.error("could not install the watchdog event: %s", exc)

    def _unpublish_primary(self) -> None:
        """Before letting go of the lease: /primary answers 503 from now on (HAProxy stops sending writes
        here before anyone else can be promoted)."""
        self.published = replace(self.published, stepping_down=True)

    def fence_at(self) -> float | None:
        """When a leader that cannot renew must be read-only (None when not leading)."""
        st = self.state
        if not st.holds_lease or st.last_renewal_sent is None:
            return None
        return st.last_renewal_sent + self.config.lease_ttl - self.config.fence_margin

    def cycle(self) -> Decision:
        self._collect_clone_result()
        state = self.state
        db = self.db.facts()
        if db.reachable:
            self._mysqld_pid = self.db.mysqld_pid()  # what the leader watches between cycles (_sleep_until)
        if db.reachable and not db.watchdog_installed:
            self._install_watchdog()
        now = clock.now()
        no_clients_since = None
        if state.holds_lease and db.reachable and db.semi_master_clients == 0:
            no_clients_since = state.no_clients_since if state.no_clients_since is not None else now
        stalled_since = None
        if state.holds_lease and db.reachable and db.semi_master_wait_sessions > 0:
            progressed = db.semi_master_yes_tx != state.last_yes_tx
            stalled_since = None if progressed else (state.acks_stalled_since or now)
        state = replace(
            state,
            renewed_this_cycle=False,
            no_clients_since=no_clients_since,
            acks_stalled_since=stalled_since,
            last_yes_tx=db.semi_master_yes_tx if db.reachable else state.last_yes_tx,
            db_failures=0 if db.reachable else state.db_failures + 1,
        )
        state, cluster = self._gather_dcs(state)
        if cluster is not None:
            self._last_view = cluster
            state = replace(state, known_leader=cluster.leader.name if cluster.leader else state.known_leader)
        snapshot = Snapshot(clock.now(), self.settings, db, cluster, state)
        decision = decide(snapshot)
        self._log(decision)
        self.state = state
        self.db.fence_at = self.fence_at()  # what the watchdog may allow, with this cycle's renewal
        try:
            self.state = self.actor.act(decision, snapshot)
            if decision.action is Action.FENCE or db.reachable:
                self.state = replace(self.state, fence_failing_since=None)
        except (DbError, DcsUnreachable, DcsError, OSError) as exc:
            log.error("%s failed: %s (%s)", decision.action.value, exc, decision.reason)
            self.state = state
            if decision.action is Action.FENCE and state.fence_failing_since is None:
                self.state = replace(state, fence_failing_since=clock.now())
        if decision.action is Action.ACQUIRE and self.state.holds_lease:
            self.state = self._renew_fresh_lease(self.state)
        self.db.fence_at = self.fence_at()
        if self.state.holds_lease and self.state.renewed_this_cycle and db.reachable:
            try:
                self.db.publish_deadline()  # the watchdog's deadline moves with each renewal, not a cycle later
            except DbError as exc:
                log.warning("could not publish the watchdog deadline: %s", exc)
        if decision.action in _CHANGES_MARIADB:
            # Publish what MariaDB is now (e.g. writable after a promotion), not what it was: /primary
            # would otherwise lag a whole loop_interval behind the promotion.
            db = self.db.facts()
            snapshot = replace(snapshot, db=db)
        role = role_of(self.state, db)
        if cluster is not None:
            self._publish_member(db, role)
        self._publish(snapshot, decision, role, cluster)
        return decision

    def _gather_dcs(self, state: AgentState) -> tuple[AgentState, ClusterView | None]:
        fence_at = self.fence_at()
        now = clock.now()
        failing = state.fence_failing_since is not None
        if fence_at is not None and not state.fenced and now >= fence_at and not failing:
            return state, None  # fence first; the DCS gets its next chance after that
        # Until fenced, no DCS call may run past the fencing time. Once fencing has failed (a server alive
        # but not answering), the lease is let lapse: no renewal, but the DCS is still read every cycle,
        # so this agent learns that another node leads instead of retrying a hung server blindly.
        self.dcs.set_deadline(fence_at if fence_at is not None and not state.fenced and not failing else None)
        try:
            if state.holds_lease and state.lease_id and failing:
                if self.dcs.time_to_live(state.lease_id) <= 0:
                    log.warning("leader lease %d is gone in etcd (not renewed: fencing failed)", state.lease_id)
                    state = replace(state, holds_lease=False, lease_id=0, lease_lost=True, last_renewal_sent=None)
            elif state.holds_lease and state.lease_id:
                sent = clock.now()
                if self.dcs.keepalive(state.lease_id) > 0:
                    state = replace(state, last_renewal_sent=sent, renewed_this_cycle=True)
                else:
                    log.warning("leader lease %d is gone in etcd", state.lease_id)
                    state = replace(state, holds_lease=False, lease_id=0, lease_lost=True, last_renewal_sent=None)
            kvs = self.dcs.get_prefix(self.config.prefix)
            view = cluster_view(kvs, self.keys)
            if view.leader is not None and view.leader.name != self.config.host and view.leader.lease:
                view = replace(view, leader_ttl_left=float(self.dcs.time_to_live(view.leader.lease)))
            self._keep_member_lease()
            return state, view
        except DcsUnreachable as exc:
            log.debug("DCS unreachable: %s", exc)
            return state, None
        except DcsError as exc:
            log.warning("DCS refused a request: %s", exc)
            return state, None
        finally:
            self.dcs.set_deadline(None)

    def _renew_fresh_lease(self, state: AgentState) -> AgentState:
        """Renew the lease just granted, right after the promotion. Promoting away from a cut-off source
        takes over a second (STOP SLAVE waits for its kill connection to the old primary), which can use
        up most of the fencing window of a short lease: renewing now keeps the new leader from fencing
        itself on its next cycle. Bounded by the fencing time, like every leader's DCS call."""
        fence_at = self.fence_at()
        if fence_at is None or clock.now() >= fence_at:
            return state
        self.dcs.set_deadline(fence_at)
        try:
            sent = clock.now()
            if self.dcs.keepalive(state.lease_id) > 0:
                return replace(state, last_renewal_sent=sent)
        except (DcsUnreachable, DcsError) as exc:
            log.debug("could not renew the new lease at once: %s", exc)
        finally:
            self.dcs.set_deadline(None)
        return state

    def _keep_member_lease(self) -> None:
        if self._member_lease and self.dcs.keepalive(self._member_lease) > 0:
            return
        self._member_lease = self.dcs.grant(self.config.member_ttl)

    def _publish_member(self, db: LocalDb, role: DbRole) -> None:
        try:
            self.dcs.put(self.keys.member(self.config.host), member_value(db, role), lease=self._member_lease)
        except (DcsUnreachable, DcsError) as exc:
            log.debug("could not publish my member key: %s", exc)

    def _publish(self, snapshot: Snapshot, decision: Decision, role: DbRole, cluster: ClusterView | None) -> None:
        if cluster is not None:
            leader = cluster.leader.name if cluster.leader else None
        else:
            leader = self.state.known_leader
        db = snapshot.db
        if self.state.semi_sync_fallback:
            semi = "fallback"
        else:
            semi = "on" if db.semi_master_enabled and db.semi_master_status else "off"
        self.published = Published(
            snapshot=replace(snapshot, me=self.state),
            decision=decision,
            role=role,
            leader=leader,
            cluster=self._last_view,
            decided_at=utc_now(),
            semi_sync=semi,
        )

    def _log(self, decision: Decision) -> None:
        # Log when the decision changes, not when only a number in its reason does.
        key = (decision.action.value, decision.target, re.sub(r"\d+(\.\d+)?", "#", decision.reason))
        if key != self._last_logged:
            self._last_logged = key
            log.info("%s: %s", decision.action.value, decision.reason)

    # -- re-clone worker ---------------------------------------------------------------------------------

    def _start_clone(self, leader: str, errant: tuple[str, ...]) -> None:
        def work() -> None:
            started = clock.now()
            try:
                db = LocalMariaDB(self.config.mariadb.socket, pid_file=self.config.mariadb.pid_file)
                gtid = reclone(self.config, db, leader, errant, self.events)
                self._clone_results.put((leader, started, None, gtid))
            except Exception as exc:  # any failure ends the clone; the loop reports and backs off
                log.exception("re-clone from %s failed", leader)
                self._clone_results.put((leader, started, f"{type(exc).__name__}: {exc}", ""))

        threading.Thread(target=work, name="agent-reclone", daemon=True).start()

    def _collect_clone_result(self) -> None:
        try:
            leader, started, error, gtid = self._clone_results.get_nowait()
        except queue.Empty:
            return
        took = clock.now() - started
        if error is None:
            self.events.append("reclone_done", f"re-cloned from {leader} at {gtid} in {took:.1f}s")
            log.warning("re-cloned from %s at %s in %.1fs", leader, gtid, took)
            self.state = replace(self.state, cloning=False, clone_failed_at=None)
        else:
            self.events.append("reclone_failed", f"re-clone from {leader} failed after {took:.1f}s: {error}")
            self.state = replace(self.state, cloning=False, clone_failed_at=clock.now())

    # -- running -----------------------------------------------------------------------------------------

    def run(self) -> None:
        """Cycle until `stop()`; then step down if leading."""
        interval = self.config.loop_interval
        if self._watch_dcs:
            threading.Thread(target=self._watch_leader, name="agent-leader-watch", daemon=True).start()
        while not self._stop.is_set():
            started = clock.now()
            decision = None
            try:
                decision = self.cycle()
            except Exception:  # a bug in one cycle must not end the agent (and its fencing)
                log.exception("HA cycle failed")
            wake = started + interval
            if decision is not None and decision.action is Action.ACQUIRE and self.state.holds_lease:
                # Just promoted: the next cycle settles semi-sync (no replica may be left to acknowledge
                # writes, which wait until then) and publishes /primary without a loop interval's delay.
                wake = clock.now()
            if self.state.holds_lease and self.state.db_failures:
                # A leader whose MariaDB stopped answering counts its failed checks quickly: releasing
                # needs several in a row (decide.py), and the replica is waiting for them.
                wake = started + min(interval, PID_WATCH)
            elif self._failover_likely() or self._acks_awaited():
                wake = started + min(interval, EXPIRY_POLL)
            fence_at = self.fence_at()
            if fence_at is not None and not self.state.fenced and self.state.fence_failing_since is None:
                wake = min(wake, max(fence_at, clock.now() + 0.01))
            self._sleep_until(wake)
        self.state = self.actor.step_down(self.state, "agent stopping: read-only, lease released")
        if self._member_lease:
            with contextlib.suppress(DcsUnreachable, DcsError):
                self.dcs.revoke(self._member_lease)  # my member key goes at once, not in member_ttl

    def _sleep_until(self, wake: float) -> None:
        """Sleep until `wake` or `stop()`. A leader also watches its mysqld's pid meanwhile (a /proc read every
        PID_WATCH seconds): a crashed server is seen at once instead of at the next cycle, up to a loop
        interval later, and the checks that let the lease go (decide.py) start right away."""
        pid = self._mysqld_pid if self.state.holds_lease else None
        if pid is not None and not pid_running(pid):
            if self.state.db_failures == 0:
                return  # it died during the cycle that still saw it answer: check again now
            pid = None  # already counted as failing: the loop's own pace applies
        while not self._stop.is_set():
            left = wake - clock.now()
            if left <= 0 or (pid is not None and not pid_running(pid)):
                return
            if self._wake.wait(min(left, PID_WATCH) if pid is not None else left):
                self._wake.clear()
                return

    def _watch_leader(self) -> None:
        """Thread: watch the leader key with a client of its own, waking the loop on every change. A replica
        then sees a released or expired lease within milliseconds instead of at its next cycle (up to a
        loop interval). Only an accelerator: the loop polls as before, so a broken watch costs speed only."""
        client = etcd_client_for(self.config)
        try:
            while not self._stop.is_set():
                try:
                    client.watch(self.keys.leader, self._wake.set, self._stop)
                except (DcsUnreachable, DcsError) as exc:
                    log.debug("leader watch: %s", exc)
                    self._stop.wait(0.5)
        finally:
            client.close()

    def _acks_awaited(self) -> bool:
        """Leader, semi-sync on, commits waiting for an acknowledgement: poll fast, so a stall (a replica
        cut off: its connection stays ESTABLISHED) is seen within EXPIRY_POLL and the fallback comes
        `semi_sync_fallback` later, not up to two loop intervals later. Healthy acks take milliseconds."""
        s = self.published.snapshot
        return (
            s is not None
            and self.state.holds_lease
            and not self.state.semi_sync_fallback
            and s.db.reachable
            and s.db.semi_master_wait_sessions > 0
        )

    def _failover_likely(self) -> bool:
        """Poll faster while a failover is likely, to take over as soon as the leader key goes:
        another member's leader lease has under a second left (not renewed for over lease_ttl - 1 s:
        its agent is probably gone), or my replication lost its source within the last few seconds
        (its agent is about to release the lease)."""
        s = self.published.snapshot
        if s is None or s.cluster is None or self.state.holds_lease:
            self._source_lost_at = None
            return False
        slave = s.db.slave
        if slave is None or slave.io_running == "Yes":
            self._source_lost_at = None
        elif self._source_lost_at is None:
            self._source_lost_at = s.now
        recently_lost = self._source_lost_at is not None and s.now - self._source_lost_at < 3 * self.config.lease_ttl
        leader = s.cluster.leader
        expiring = leader is not None and s.cluster.leader_ttl_left is not None and s.cluster.leader_ttl_left < 1
        return expiring or (leader is not None and recently_lost)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
