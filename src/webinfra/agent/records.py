"""JSON values of the agent's DCS keys (leader, initialized, switchover, optime, members/<host>, history)
<-> the snapshot's records. Malformed values are skipped (a
member key written by a newer agent, or by hand, must not stop the cluster's decisions)."""

from __future__ import annotations

import json
from typing import Any

from webinfra.agent.dcs import Keys, KeyValue
from webinfra.agent.events import utc_now
from webinfra.agent.snapshot import (
    ClusterView,
    GtidState,
    LeaderRecord,
    LocalDb,
    MemberRecord,
    OptimeRecord,
    SwitchoverRequest,
    gtid_in_domain,
)

HISTORY_KEEP = 100


def _json(kv: KeyValue) -> Any:
    try:
        return json.loads(kv.value)
    except ValueError:
        return None


def cluster_view(kvs: list[KeyValue], keys: Keys, leader_ttl_left: float | None = None) -> ClusterView:
    leader = initialized = switchover = optime = None
    members: dict[str, MemberRecord] = {}
    member_prefix = keys.member("")
    for kv in kvs:
        if kv.key == keys.leader:
            data = _json(kv)
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                leader = LeaderRecord(
                    name=data["name"],
                    since=str(data.get("since") or ""),
                    promoted_at_gtid=data.get("promoted_at_gtid"),
                    lease=kv.lease,
                    mod_revision=kv.mod_revision,
                )
        elif kv.key == keys.initialized:
            initialized = kv.value.decode(errors="replace").strip() or None
        elif kv.key == keys.switchover:
            data = _json(kv)
            if isinstance(data, dict):
                to = data.get("to")
                switchover = SwitchoverRequest(
                    to=to if isinstance(to, str) and to else None,
                    requested_at=str(data.get("requested_at") or ""),
                    mod_revision=kv.mod_revision,
                    lease=kv.lease,
                )
        elif kv.key == keys.optime:
            optime = optime_record(kv)
        elif kv.key.startswith(member_prefix):
            record = _member(kv.key[len(member_prefix) :], _json(kv))
            if record is not None:
                members[record.name] = record
    return ClusterView(leader, initialized, members, switchover, leader_ttl_left, optime)


def optime_record(kv: KeyValue | None) -> OptimeRecord | None:
    data = _json(kv) if kv is not None else None
    if kv is None or not isinstance(data, dict) or not isinstance(data.get("leader"), str):
        return None
    try:
        return OptimeRecord(
            leader=data["leader"],
            # Anything but an explicit true is "not sync": a garbled promise must not allow a lossy failover.
            sync=data.get("sync") is True,
            gtid=_gtid_or_empty(data.get("gtid")),
            gtid_seq=int(data.get("gtid_seq") or 0),
            at=str(data.get("at") or ""),
            mod_revision=kv.mod_revision,
            server_id=int(data.get("server_id") or 0),
        )
    except (TypeError, ValueError):
        return None


def _gtid_or_empty(value: Any) -> str:
    """A well-formed domain-0 GTID, else "" (gtid_seq alone still holds the promise)."""
    try:
        gtid = gtid_in_domain(value) if isinstance(value, str) else None
    except ValueError:
        return ""
    return str(gtid) if gtid is not None else ""


def optime_value(record: OptimeRecord) -> str:
    return json.dumps(
        {
            "leader": record.leader,
            "sync": record.sync,
            "gtid": record.gtid,
            "gtid_seq": record.gtid_seq,
            "server_id": record.server_id,
            "at": utc_now(),
        }
    )


def _member(name: str, data: Any) -> MemberRecord | None:
    if not isinstance(data, dict):
        return None
    try:
        lag = data.get("lag_seconds")
        return MemberRecord(
            name=name,
            role=str(data.get("role", "unknown")),
            gtid=str(data.get("gtid") or ""),
            gtid_seq=int(data.get("gtid_seq") or 0),
            healthy=bool(data.get("healthy")),
            read_only=bool(data.get("read_only", True)),
            lag_seconds=float(lag) if lag is not None else None,
            replicating_from=str(data.get("replicating_from") or ""),
            applied_all_received=bool(data.get("applied_all_received", True)),
            updated=str(data.get("updated") or ""),
            gtid_state=_state_or_empty(data.get("gtid_state")),
        )
    except (TypeError, ValueError):
        return None


def _state_or_empty(value: Any) -> str:
    """A well-formed GTID state, else "" (the member's `gtid` then stands in)."""
    try:
        return str(GtidState.parse(value)) if isinstance(value, str) else ""
    except ValueError:
        return ""


def leader_value(name: str, since: str, promoted_at_gtid: str | None) -> str:
    return json.dumps({"name": name, "since": since, "promoted_at_gtid": promoted_at_gtid})


def member_value(db: LocalDb, role: str) -> str:
    slave = db.slave
    return json.dumps(
        {
            "role": role,
            "gtid": db.gtid_current_pos,
            "gtid_seq": db.gtid_seq,
            "gtid_state": str(db.gtid_state),
            # A replica whose SQL thread failed may hold anything: it is not a candidate for promotion.
            "healthy": db.reachable and not (slave is not None and slave.last_sql_errno),
            "read_only": db.read_only,
            "lag_seconds": slave.seconds_behind if slave is not None and slave.running else None,
            "replicating_from": slave.master_host if slave is not None else "",
            "applied_all_received": db.applied_all_received,
            "updated": utc_now(),
        }
    )


def history_with(previous: bytes | None, entry: dict[str, Any]) -> str:
    """The history list with `entry` appended (newest last, the last HISTORY_KEEP kept)."""
    try:
        items = json.loads(previous) if previous else []
    except ValueError:
        items = []
    if not isinstance(items, list):
        items = []
    return json.dumps([*items, entry][-HISTORY_KEEP:])
