"""What one HA decision says: the `Action` an agent takes this cycle, and the `Decision` carrying it with a
one-line reason (agent/decide.py makes them; actions.py carries them out; api.py and loop.py report them)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from webinfra.agent.snapshot import OptimeRecord


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
    STOP_RECEIVING = "stop_receiving"  # replica: stop the IO thread, the leader's lease is about to expire
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
    # ACQUIRE only: False = promote with semi-sync master off (no healthy replica is known to acknowledge:
    # the first cycle after the promotion would fall back anyway, while commits wait). The optime says
    # "not sync" at my promotion point before the server is writable (actions.py).
    semi_sync: bool = True
