"""Issue 11's double-fault scenarios, each as a sequence of snapshots through the pure `decide()`.

Every test failed on the code before the fix (noted per test); the factories are test_agent_decide's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_agent_decide import (
    DOWN,
    GONE,
    LEADING,
    NOW,
    member,
    primary_db,
    renewal,
    replica_db,
    snap,
    view,
)
from test_agent_units import RENDERED

from webinfra.agent.actions import Actor
from webinfra.agent.config import AgentConfig
from webinfra.agent.dcs import DcsUnreachable
from webinfra.agent.decide import decide
from webinfra.agent.decision import Action, Decision
from webinfra.agent.eventlog import EventLog
from webinfra.agent.mysql import DbError
from webinfra.agent.snapshot import AgentState, LocalDb, OptimeRecord, SwitchoverRequest, optime_at

# -- 1. histories, not sequence numbers ------------------------------------------------------------------------


def test_new_primarys_history_wins_over_a_higher_seq_no_of_the_old_primary() -> None:
    """P (web-01, server 1) is partitioned with 10 commits in flight (binlog 0-1-110, never acknowledged:
    the replica did not have them). R (web-02) promotes at 0-1-100, has no replica, falls back to async and
    acknowledges 0-2-101..105. R dies, P returns. Before: P acquired because 110 >= 105 and R's
    acknowledged writes were discarded. Now P waits; once R is back R leads and P is re-cloned."""
    # R takes over at 0-1-100 (the last leader's record was sync).
    r_replica = replica_db("web-01", seq=100)
    d = decide(snap("web-02", r_replica, view(None, optime=OptimeRecord("web-01", True, "0-1-100", 100, server_id=1))))
    assert d.action == Action.ACQUIRE, d

    # R leads alone, async; every cycle's optime follows its position (here 0-2-105).
    r_db = primary_db(105, 2, semi=False, clients=0, gtid_binlog_state="0-1-100,0-2-105")
    r_view = view("web-02", promoted_at="0-1-100", optime=OptimeRecord("web-02", False, "0-2-104", 104, server_id=2))
    d = decide(snap("web-02", r_db, r_view, renewal(0.1, semi_sync_fallback=True)))
    assert d.action == Action.LEAD and d.optime is not None, d
    assert (d.optime.sync, d.optime.gtid, d.optime.server_id) == (False, "0-2-105", 2)
    r_optime = d.optime

    # R dies (no leader key, no member key); P comes back read-only with its unacknowledged tail.
    p_db = primary_db(110, 1, read_only=True, semi=False, clients=0, gtid_binlog_state="0-1-110")
    d = decide(snap("web-01", p_db, view(None, optime=r_optime)))
    assert d.action == Action.WAIT, d
    assert "0-2-105" in d.reason and "lacks it" in d.reason

    # R is back: both are candidates. Neither history contains the other; R's has the last leader's
    # recorded position, so R leads and P waits.
    members = (
        member("web-01", 110, role="unknown", gtid="0-1-110"),
        member("web-02", 105, role="unknown", gtid="0-1-100,0-2-105"),
    )
    d = decide(snap("web-01", p_db, view(None, *members, optime=r_optime)))
    assert d.action == Action.WAIT and "diverged" in d.reason, d
    r_back = replace(r_db, read_only=True)
    d = decide(snap("web-02", r_back, view(None, *members, optime=r_optime)))
    assert d.action == Action.ACQUIRE, d

    # R leads again, promoted at its whole state: P's 0-1-101..110 are errant, and P (not R) is re-cloned.
    d = decide(snap("web-01", p_db, view("web-02", *members, promoted_at="0-1-100,0-2-105", optime=r_optime)))
    assert d.action == Action.RECLONE and d.target == "web-02", d
    assert d.errant == ("0-1-101..110",)
    assert "0-1-101..110" in d.reason


def test_a_rival_with_a_higher_seq_no_from_another_server_is_not_more_advanced() -> None:
    """Same seq_no race, the other way round: web-03's 0-3-60 is not "after" my 0-1-57 + 0-2-58..59."""
    mine = replica_db("web-02", seq=59, gtid_binlog_state="0-1-57,0-2-59")
    optime = OptimeRecord("web-02", False, "0-2-59", 59, server_id=2)
    d = decide(snap("web-01", mine, view(None, member("web-03", 60, gtid="0-1-57,0-3-60"), optime=optime)))
    assert d.action == Action.ACQUIRE, d


# -- 2. async fallback + one missed renewal ---------------------------------------------------------------------


def test_async_leader_that_misses_one_renewal_fences_at_once() -> None:
    """Before: LEAD ("fencing in 1.4s unless renewed") while acknowledging alone for up to TTL - margin."""
    async_db = primary_db(70, semi=False, clients=0)
    # Renewed: LEAD, the optime follows the position every cycle.
    d = decide(snap("web-01", async_db, view("web-01"), renewal(0.1, semi_sync_fallback=True)))
    assert d.action == Action.LEAD and d.optime is not None and d.optime.gtid_seq == 70, d
    # The next renewal fails (DCS unreachable); the lease is still fresh, but no more acknowledging alone.
    missed = renewal(0.6, semi_sync_fallback=True, renewed_this_cycle=False)
    d = decide(snap("web-01", replace(async_db, gtid_current_pos="0-1-71"), None, missed))
    assert d.action == Action.FENCE and "without a replica" in d.reason, d
    # A semi-sync leader (every write on a replica first) still rides out a missed renewal.
    d = decide(snap("web-01", primary_db(70), None, renewal(0.6, renewed_this_cycle=False)))
    assert d.action == Action.LEAD, d


# -- 3. release only a MariaDB that is certainly gone ------------------------------------------------------------


def test_leader_keeps_the_lease_through_failed_checks_and_releases_only_when_mysqld_is_gone() -> None:
    """Before: RELEASE after one failed client call, a slow primary staying writable with its lease revoked."""
    seen = []
    for failures in (1, 2):
        d = decide(snap("web-01", DOWN, view("web-01"), replace(LEADING, db_failures=failures)))
        seen.append(d.action)
        assert "keeping the lease" in d.reason
    assert seen == [Action.WAIT, Action.WAIT]
    # Still failing, but the process is alive (a stall): fence it, keep the lease (no second primary).
    d = decide(snap("web-01", DOWN, view("web-01"), replace(LEADING, db_failures=3)))
    assert d.action == Action.FENCE and "alive" in d.reason, d
    # Proof that mysqld is gone: release so the replica promotes without waiting for the TTL.
    d = decide(snap("web-01", GONE, view("web-01"), replace(LEADING, db_failures=3)))
    assert d.action == Action.RELEASE, d
    # Gone on the first check is not enough either (a restart in progress answers a moment later).
    d = decide(snap("web-01", GONE, view("web-01"), replace(LEADING, db_failures=1)))
    assert d.action == Action.WAIT, d


def test_restarted_agent_does_not_release_a_leader_key_for_a_slow_mariadb() -> None:
    d = decide(snap("web-01", DOWN, view("web-01"), AgentState(db_failures=5)))
    assert d.action == Action.WAIT, d


# -- 5. a switchover never promotes a lagging target -------------------------------------------------------------


def test_stale_switchover_request_does_not_promote_a_lagging_target() -> None:
    """The request names web-03, which lags web-02. Before: web-03 acquired ("switchover target, caught
    up") and web-02 deferred to it, losing web-02's extra transactions."""
    request = SwitchoverRequest("web-03")
    members = (member("web-02", 60), member("web-03", 55))
    d = decide(snap("web-03", replica_db("web-01", seq=55), view(None, *members, switchover=request)))
    assert d.action == Action.WAIT and "refusing" in d.reason and "web-02 is more advanced" in d.reason, d
    d = decide(snap("web-02", replica_db("web-01", seq=60), view(None, *members, switchover=request)))
    assert d.action == Action.ACQUIRE, d
    # A target that has caught up still takes over, ahead of a rival that sorts first by name.
    level = (member("web-02", 60), member("web-03", 60))
    d = decide(snap("web-03", replica_db("web-01", seq=60), view(None, *level, switchover=request)))
    assert d.action == Action.ACQUIRE and "switchover target" in d.reason, d
    d = decide(snap("web-02", replica_db("web-01", seq=60), view(None, *level, switchover=request)))
    assert d.action == Action.WAIT and "deferring" in d.reason, d


def test_switchover_handover_waits_for_the_targets_history_not_its_seq_no() -> None:
    """A target at 0-3-57 (another history) is not caught up with my 0-1-57."""
    d = decide(
        snap(
            "web-01",
            primary_db(57, read_only=True),
            view("web-01", member("web-02", 57, gtid="0-3-57"), switchover=SwitchoverRequest("web-02")),
            renewal(0.1, switchover_started=NOW - 1, switchover_target="web-02"),
        )
    )
    assert d.action == Action.SWITCHOVER_PREPARE, d


# -- 3. "not primary" is published before the lease goes ------------------------------------------------------


class _Recorder:
    """Stands in for the DCS and MariaDB in an ordering test: records the calls, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    # DCS
    def revoke(self, lease: int) -> bool:
        self.calls.append("revoke")
        return True

    def put(self, key: str, value: str, *, lease: int = 0) -> None:
        self.calls.append("put " + key.rsplit("/", 1)[-1])

    # MariaDB
    def fence(self, repl_user: str, *, timeout: float = 5.0) -> list[str]:
        self.calls.append("fence")
        return []

    def facts(self) -> LocalDb:
        return LocalDb(reachable=False)


def _actor(tmp_path: Path) -> tuple[Actor, _Recorder]:
    config = AgentConfig.model_validate(
        {
            **RENDERED,
            "repl_password_file": str(tmp_path / "repl.password"),
            "token_file": str(tmp_path / "token"),
            "events_file": str(tmp_path / "events.jsonl"),
            "mariadb": {**RENDERED["mariadb"], "datadir": str(tmp_path / "data")},
        }
    )
    rec = _Recorder()
    actor = Actor(
        config,
        rec,  # type: ignore[arg-type]
        rec,  # type: ignore[arg-type]
        EventLog(config.events_file, "web-01"),
        lambda leader, errant: None,
        lambda: rec.calls.append("unpublish"),
    )
    return actor, rec


def test_every_let_go_publishes_not_primary_first_and_fences_a_reachable_server(tmp_path: Path) -> None:
    """Before: RELEASE revoked the lease without fencing and /primary could still say 200 meanwhile."""
    leading = replace(LEADING, db_failures=3)
    cases = [
        (Action.RELEASE, snap("web-01", GONE, view("web-01"), leading), ["unpublish", "revoke"]),
        (Action.DEMOTE, snap("web-01", primary_db(), view("web-02"), LEADING), ["unpublish", "fence", "revoke"]),
        (Action.SWITCHOVER_HANDOVER, snap("web-01", primary_db(), view("web-01"), LEADING), ["unpublish", "revoke"]),
    ]
    for action, s, expected in cases:
        actor, rec = _actor(tmp_path)
        actor.act(Decision(action, "test", "web-02"), s)
        assert rec.calls == expected, (action, rec.calls)
    actor, rec = _actor(tmp_path)
    actor.step_down(LEADING, "agent stopping")
    assert rec.calls == ["unpublish", "fence", "revoke"], rec.calls


def test_a_node_taking_the_lease_back_marks_its_own_binlog_tip_not_its_stale_slave_pos() -> None:
    """Nemesis seed 7, step 19: web-02 led alone (async) up to 0-13-1614, was cut off, stepped down and took
    the lease back at once. Its gtid_current_pos was its old gtid_slave_pos (0-12-1280), and the optime it
    wrote said "acknowledged without a replica up to 0-12-1280": web-01 (0-12-1280,0-13-1569) then had
    "everything" and promoted over 45 acknowledged writes. The mark is the binlog's tip."""
    state = "0-12-1280,0-13-1614"
    stepped_down = LocalDb(
        reachable=True,
        read_only=True,
        server_id=13,
        gtid_binlog_pos="0-13-1614",
        gtid_binlog_state=state,
        gtid_slave_pos="0-12-1280",
        gtid_current_pos="0-12-1280",
    )
    before = OptimeRecord("web-02", False, "0-13-1600", 1600, server_id=13)
    d = decide(snap("web-02", stepped_down, view(None, optime=before)))
    assert d.action == Action.ACQUIRE, d
    # What the actor records right after promoting (previous record not sync: stays not sync).
    promoted = optime_at("web-02", False, stepped_down)
    assert (promoted.sync, promoted.gtid, promoted.server_id) == (False, "0-13-1614", 13)
    # And what each LEAD cycle keeps there while acknowledging alone.
    leading = replace(stepped_down, read_only=False, gtid_current_pos="0-13-1614")
    d = decide(snap("web-02", leading, view("web-02", optime=before), renewal(0.1, semi_sync_fallback=True)))
    assert d.action == Action.LEAD and d.optime is not None and d.optime.gtid == "0-13-1614", d
    # web-02 leads (its member record says primary) but its lease lapsed: web-01 must not promote.
    behind = replica_db("web-02", seq=1569, gtid_binlog_state="0-12-1280,0-13-1569")
    d = decide(snap("web-01", behind, view(None, member("web-02", 1614, role="primary", gtid=state), optime=promoted)))
    assert d.action == Action.WAIT and "lacks it" in d.reason, d


def test_a_hung_server_that_cannot_be_fenced_is_restarted_after_a_while() -> None:
    """Same run: the promoted server accepted connections but never greeted them; the agent decided FENCE,
    the fence failed, and it retried for 15 minutes without reading the DCS. Now: after
    `restart_hung_after` of failed fencing the agent kills mysqld and starts it again (read-only)."""
    hung = replace(DOWN, error="Lost connection to server at 'handshake: reading initial communication packet'")
    failing = replace(LEADING, db_failures=5, fence_failing_since=NOW - 2.0)
    d = decide(snap("web-01", hung, view("web-01"), failing))
    assert d.action == Action.FENCE, d  # a short stall: keep trying to fence
    d = decide(snap("web-01", hung, view("web-01"), replace(failing, fence_failing_since=NOW - 7.0)))
    assert d.action == Action.RESTART_MARIADB and "not fenced for 7s" in d.reason, d
    # Not the leader any more (its lease lapsed): a hung, possibly writable server is restarted all the same.
    d = decide(snap("web-01", hung, view("web-02"), AgentState(fence_failing_since=NOW - 7.0, db_failures=9)))
    assert d.action == Action.RESTART_MARIADB, d
    # A server that is gone is not "hung": release / wait as before.
    d = decide(snap("web-01", GONE, view("web-01"), replace(failing, fence_failing_since=NOW - 7.0)))
    assert d.action == Action.RELEASE, d


# -- 4. promoting async: "not sync" is recorded before the server is writable (issue 13) ------------------------


class _Promoting(_Recorder):
    """DCS and MariaDB for one ACQUIRE: records the calls in order; `optime_fails` makes the optime put fail."""

    def __init__(self, *, optime_fails: bool = False) -> None:
        super().__init__()
        self.optime_fails = optime_fails
        self.optimes: list[OptimeRecord] = []

    def grant(self, ttl: int) -> int:
        self.calls.append("grant")
        return 5

    def create(self, key: str, value: str, *, lease: int = 0) -> bool:
        self.calls.append("create " + key.rsplit("/", 1)[-1])
        return True

    def put(self, key: str, value: str, *, lease: int = 0) -> None:
        if key.endswith("optime"):
            if self.optime_fails:
                raise DcsUnreachable("etcd cut off")
            self.optimes.append(OptimeRecord(**{k: v for k, v in json.loads(value).items() if k != "at"}))
        super().put(key, value, lease=lease)

    def get(self, key: str) -> None:
        return None

    def replace(self, key: str, value: str, revision: int, *, lease: int = 0) -> bool:
        return True

    def promote(self, fence_at: float, *, replicating: bool, semi_sync: bool, before_writable: Any) -> str:
        self.calls.append(f"reset, semi-sync {'on' if semi_sync else 'off'}")
        if before_writable is not None:
            before_writable(LocalDb(reachable=True, server_id=2, gtid_binlog_pos="0-1-57", gtid_current_pos="0-1-57"))
        self.calls.append("writable")
        return "0-1-57"

    def resume_receiving(self) -> None:
        self.calls.append("resume receiving")


def _promoting_actor(tmp_path: Path, rec: _Promoting) -> Actor:
    actor, _ = _actor(tmp_path)
    actor.dcs = rec  # type: ignore[assignment]
    actor.db = rec  # type: ignore[assignment]
    return actor


def test_an_async_promotion_records_not_sync_before_the_server_is_writable(tmp_path: Path) -> None:
    """The decision the first leader cycle used to take (fallback, no healthy replica) is now part of the
    promotion; the optime rule is the fallback's: "not sync" in the DCS before the first write is acknowledged
    alone, else no write at all."""
    s = snap("web-02", replica_db(seq=57), view(None, member("web-02", 57), member("web-01", 57, role="primary")))
    d = decide(s)
    assert (d.action, d.semi_sync) == (Action.ACQUIRE, False), d
    rec = _Promoting()
    state = _promoting_actor(tmp_path, rec).act(d, s)
    assert rec.calls[:5] == ["grant", "create leader", "reset, semi-sync off", "put optime", "writable"], rec.calls
    assert [(o.sync, o.gtid) for o in rec.optimes] == [(False, "0-1-57")], rec.optimes
    assert state.holds_lease and state.semi_sync_fallback
    events = (tmp_path / "events.jsonl").read_text()
    assert '"semi_sync_fallback"' in events and "promoted without a healthy replica" in events
    # The next cycle as leader keeps it not sync at the moving tip (decide_leader.leader_optime), never "sync".
    leading = replace(primary_db(seq=60, server_id=2, semi=False, clients=0), gtid_binlog_pos="0-2-60")
    nxt = decide(snap("web-02", leading, view("web-02", optime=rec.optimes[0]), replace(state, last_renewal_sent=NOW)))
    assert nxt.action == Action.LEAD and nxt.optime is not None and not nxt.optime.sync, nxt
    # With semi-sync on, no optime is written before writable (the previous promise stands, as before).
    rec = _Promoting()
    _promoting_actor(tmp_path, rec).act(replace(d, semi_sync=True), s)
    assert rec.calls.index("writable") < rec.calls.index("put optime"), rec.calls


def test_an_async_promotion_that_cannot_record_the_optime_never_makes_the_server_writable(tmp_path: Path) -> None:
    s = snap("web-02", replica_db(seq=57), view(None, member("web-02", 57)))
    d = decide(s)
    rec = _Promoting(optime_fails=True)
    with pytest.raises(DbError, match="could not record the optime"):
        _promoting_actor(tmp_path, rec).act(d, s)
    assert "writable" not in rec.calls, rec.calls
    assert rec.calls[-3:] == ["fence", "revoke", "resume receiving"], rec.calls
