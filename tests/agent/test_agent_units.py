"""Small pure pieces: the config schema, GTID positions, `mariadb --vertical` parsing, DCS records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from webinfra.agent.clone import aside_path, prune_diverged, restored_state
from webinfra.agent.config import AgentConfig, load_config
from webinfra.agent.dcs import Keys, KeyValue, prefix_end
from webinfra.agent.eventlog import KINDS, EventLog
from webinfra.agent.mysql_facts import local_db_from_rows, parse_vertical
from webinfra.agent.records import cluster_view, history_with, member_value, optime_record, optime_value
from webinfra.agent.snapshot import Gtid, GtidState, MemberRecord, OptimeRecord, gtid_in_domain, seq_of

# The exact shape webinfra's plan renders (src/webinfra/plan/daemons/agent.py).
RENDERED: dict[str, Any] = {
    "cluster": "webinfra",
    "host": "web-01",
    "address": "198.18.0.11",
    "listen_address": "0.0.0.0",
    "listen_port": 8008,
    "etcd_endpoints": ["http://198.18.0.11:2379", "http://198.18.0.12:2379", "http://198.18.0.10:2379"],
    "prefix": "/webinfra/webinfra/",
    "lease_ttl": 2,
    "loop_interval": 0.5,
    "replica_max_lag": 5.0,
    "when_no_replica_acks": "fallback_async",
    "semi_sync_fallback_ms": 1000,
    "mariadb": {
        "socket": "/run/webinfra/webinfra/web-01/mariadb.sock",
        "port": 3306,
        "datadir": "/var/lib/webinfra/webinfra/hosts/web-01/data/mariadb",
    },
    "members": {"web-01": {"address": "198.18.0.11"}, "web-02": {"address": "198.18.0.12"}},
    "initial_primary": "web-01",
    "repl_user": "repl",
    "repl_password_file": "/var/lib/webinfra/webinfra/secrets/db-repl.password",
    "token_file": "/var/lib/webinfra/webinfra/secrets/agent-token.password",
    "mariadb_control": {"stop": ["/x/webinfra", "stop", "web-01", "mariadb"], "start": ["/x/webinfra", "start"]},
    "events_file": "/var/lib/webinfra/webinfra/events.jsonl",
}


def test_config_accepts_the_rendered_file(tmp_path: Path) -> None:
    # The rendered shape, with every path in this test's own state dir (never the real one).
    rendered = {
        **RENDERED,
        "repl_password_file": str(tmp_path / "secrets" / "db-repl.password"),
        "token_file": str(tmp_path / "secrets" / "agent-token.password"),
        "events_file": str(tmp_path / "events.jsonl"),
        "mariadb": {**RENDERED["mariadb"], "datadir": str(tmp_path / "data" / "mariadb")},
    }
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(rendered))
    config = load_config(path)
    assert config.fence_margin == pytest.approx(2 / 3) and config.member_ttl == 3
    assert config.address_of("web-02") == "198.18.0.12"
    assert config.token() == ""  # missing token file: every /clone is refused


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"surprise": 1}, "Extra inputs are not permitted"),
        ({"host": "web-09"}, "not one of members"),
        ({"initial_primary": "web-09"}, "initial_primary"),
        ({"address": "198.18.0.99"}, "differs from members"),
        ({"prefix": "/webinfra/webinfra"}, "must end with '/'"),
        ({"when_no_replica_acks": "sometimes"}, "fallback_async"),
        ({"etcd_endpoints": []}, "at least 1"),
        ({"mariadb": {**RENDERED["mariadb"], "sock": "/x"}}, "Extra inputs"),
    ],
)
def test_config_rejects(change: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        AgentConfig.model_validate({**RENDERED, **change})


def test_fence_margin_scales_down_for_short_leases() -> None:
    assert AgentConfig.model_validate({**RENDERED, "lease_ttl": 1}).fence_margin == pytest.approx(1 / 3)
    assert AgentConfig.model_validate({**RENDERED, "lease_ttl": 10}).fence_margin == 1.0


def test_gtid_positions() -> None:
    assert gtid_in_domain("1-3-9,0-11-57") == Gtid(0, 11, 57)
    assert gtid_in_domain("1-3-9") is None
    assert seq_of("") == 0 and seq_of("0-1-5,\n1-2-7") == 5
    assert str(Gtid.parse("0-12-25")) == "0-12-25"


def test_prefix_end() -> None:
    import base64

    assert base64.b64decode(prefix_end("/webinfra/x/")) == b"/webinfra/x0"


VERTICAL = """*************************** 1. row ***************************
          read_only: 1
          server_id: 12
    gtid_binlog_pos: 0-11-54
     gtid_slave_pos: 0-11-54
   gtid_current_pos: 0-11-54
semi_master_enabled: 0
    semi_wait_point: AFTER_COMMIT
semi_master_timeout: 10000
 semi_slave_enabled: 1
semi_master_clients: 0
 semi_master_status: OFF
*************************** 1. row ***************************
                Slave_IO_State: Waiting for master to send event
                   Master_Host: 127.77.0.11
                   Master_Port: 3306
              Slave_IO_Running: Yes
             Slave_SQL_Running: Yes
         Seconds_Behind_Master: NULL
                 Last_IO_Errno: 1236
                 Last_IO_Error: Got fatal error 1236 from master: 'GTID 0-1-9: not in the master's binlog'
                Last_SQL_Errno: 0
                    Using_Gtid: Slave_Pos
                   Gtid_IO_Pos: 0-11-56
"""


def test_facts_from_vertical_output() -> None:
    db = local_db_from_rows(parse_vertical(VERTICAL))
    assert db.reachable and db.read_only and db.server_id == 12
    assert db.semi_slave_enabled and not db.semi_master_enabled and db.semi_wait_point == "AFTER_COMMIT"
    assert db.slave is not None and db.slave.master_host == "127.77.0.11" and db.slave.master_port == 3306
    assert db.slave.seconds_behind is None and db.slave.diverged
    assert "not in the master's binlog" in db.slave.last_io_error  # values keep their colons
    assert db.gtid_seq == 56 and not db.applied_all_received
    assert db.replication_configured


def test_facts_without_replication() -> None:
    header = VERTICAL.splitlines()[0]
    variables_only = VERTICAL[: VERTICAL.index(header, 1)]  # SHOW SLAVE STATUS printed no row
    db = local_db_from_rows(parse_vertical(variables_only))
    assert db.reachable and db.slave is None and not db.replication_configured
    assert db.gtid_seq == 54 and db.applied_all_received
    assert not local_db_from_rows([]).reachable


def test_member_value_round_trip() -> None:
    db = local_db_from_rows(parse_vertical(VERTICAL))
    data = json.loads(member_value(db, "replica"))
    assert data["gtid_seq"] == 56 and data["healthy"] is True and data["replicating_from"] == "127.77.0.11"
    assert data["lag_seconds"] is None and data["applied_all_received"] is False


def _kv(value: str | bytes) -> KeyValue:
    return KeyValue("/p/optime", value.encode() if isinstance(value, str) else value, 1, 9, 0)


def test_optime_round_trip_and_garbage() -> None:
    record = OptimeRecord("web-02", False, "0-2-14", 14)
    data = json.loads(optime_value(record))
    assert {k: data[k] for k in ("leader", "sync", "gtid", "gtid_seq")} == {
        "leader": "web-02",
        "sync": False,
        "gtid": "0-2-14",
        "gtid_seq": 14,
    }
    assert data["at"].endswith("Z")
    back = optime_record(_kv(optime_value(record)))
    assert back is not None and back.same_promise(record) and back.mod_revision == 9
    # Only an explicit true is sync; a garbled GTID keeps the seq_no; garbage is no record at all.
    assert optime_record(_kv('{"leader": "web-02", "sync": "yes", "gtid_seq": 3}')) == OptimeRecord(
        "web-02", False, "", 3, mod_revision=9
    )
    assert optime_record(_kv('{"leader": "web-02", "sync": true, "gtid": "x", "gtid_seq": 3}')) is not None
    assert optime_record(_kv("garbage")) is None
    assert optime_record(_kv('{"sync": true}')) is None


def test_history_keeps_the_newest() -> None:
    text = None
    for i in range(105):
        text = history_with(text.encode() if text else None, {"to": i})
    items = json.loads(text or "[]")
    assert len(items) == 100 and items[-1] == {"to": 104}
    assert json.loads(history_with(b"garbage", {"to": 1})) == [{"to": 1}]


def test_events_are_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.jsonl"
    log = EventLog(path, "web-02")
    log.append("promoted", "promoted web-02: leader lease expired")
    log.append("fenced", "x")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["kind"] for e in lines] == ["promoted", "fenced"]
    assert lines[0]["source"] == "agent" and lines[0]["host"] == "web-02" and lines[0]["ts"].endswith("Z")
    assert {"promoted", "demoted", "fenced", "released", "following", "switchover"} <= KINDS


def test_gtid_state_compares_histories_per_domain_and_server() -> None:
    state = GtidState.parse("0-1-100,0-2-105", "0-2-103\n1-7-4")
    assert str(state) == "0-1-100,0-2-105,1-7-4"
    assert state.tip() == 105 and state.tip(1) == 4 and state.server_seq(1) == 100
    assert state.has(Gtid(0, 2, 105)) and not state.has(Gtid(0, 1, 101)) and not state.has(Gtid(0, 3, 1))
    old_primary = GtidState.parse("0-1-110")
    assert not state.contains(old_primary) and not old_primary.contains(state)  # diverged: neither is ahead
    assert state.contains(GtidState.parse("0-1-90,0-2-101")) and state.contains(GtidState())
    assert old_primary.beyond(state) == ["0-1-101..110"] and state.beyond(old_primary) == ["0-2-1..105", "1-7-1..4"]
    assert not GtidState() and GtidState.parse("") == GtidState()


def test_member_record_history_falls_back_to_its_gtid_and_survives_garbage() -> None:
    kv = KeyValue("/p/members/web-02", json.dumps({"gtid": "0-2-9", "gtid_state": "bogus"}).encode(), 1, 1, 0)
    member = cluster_view([kv], Keys("/p/")).members["web-02"]
    assert str(member.state) == "0-2-9"  # a malformed state is dropped, the gtid stands in
    assert str(MemberRecord("x", gtid="not-a-gtid").state) == ""


def test_diverged_datadirs_are_kept_aside_and_bounded(tmp_path: Path) -> None:
    datadir = tmp_path / "data" / "mariadb"
    datadir.mkdir(parents=True)
    made = []
    for stamp in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        old = datadir.with_name(f"mariadb.diverged-{stamp}")
        old.mkdir()
        old.with_name(old.name + ".errant.sql").write_text("-- errant\n")
        made.append(old)
    assert prune_diverged(datadir, 2) == made[1:]
    # The datadir goes; its export of the errant transactions stays (the only record left).
    assert not made[0].exists() and made[0].with_name(made[0].name + ".errant.sql").exists()
    assert all(p.exists() for p in made[1:]) and datadir.exists()
    assert aside_path(datadir).parent == datadir.parent  # under the host's data dir, next to the datadir
    assert prune_diverged(datadir, 0) == [] and not any(p.exists() for p in made)


def test_a_clone_restores_the_sources_history_up_to_the_backup() -> None:
    assert restored_state("0-11-24,0-12-20", "0-12-25") == "0-11-24,0-12-25"
    assert restored_state("", "0-12-25") == "0-12-25"
    assert restored_state("garbage", "0-12-25") == "0-12-25"


def test_a_replica_that_stopped_receiving_ahead_of_a_takeover_still_serves_reads() -> None:
    """STOP_RECEIVING stops the IO thread while the leader's lease runs out: /read stays 200 (what was applied),
    as it did for a replica of a cut-off source before, so reads do not fail until the promotion."""
    from dataclasses import replace

    from test_agent_api import replica

    from webinfra.agent import clock
    from webinfra.agent.decision import Action, Decision

    stopped = replica(lag=None, running="No")
    assert not stopped.replica_ok()  # an IO thread that stopped on its own: not a healthy replica
    stopping = replace(stopped, decision=Decision(Action.STOP_RECEIVING, "lease expiring", "web-01"))
    assert stopping.replica_ok() and stopping.read_ok(clock.now())
    slave = stopping.snapshot.db.slave if stopping.snapshot else None
    assert slave is not None and stopping.snapshot is not None
    no_sql = replace(stopping.snapshot.db, slave=replace(slave, sql_running="No"))
    assert not replace(stopping, snapshot=replace(stopping.snapshot, db=no_sql)).replica_ok()
