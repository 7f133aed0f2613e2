"""The database high-availability agent: one per DB host, Patroni-style.

Every cycle it reads one immutable snapshot (local MariaDB facts + the DCS state in etcd), calls a
pure `decide(snapshot) -> Decision(action, reason, target)`, acts, and logs the one-line reason.

    config.py    AgentConfig: the agent.json webinfra renders (pydantic, extra="forbid")
    snapshot.py  frozen values a cycle knows: LocalDb, ClusterView, AgentState, Settings, Snapshot; GTIDs
                 and GtidState (histories compared per domain and server_id, never by bare seq_no)
    decision.py  Action, Decision (what to do, the one-line reason, the target)
    decide.py    decide(): the overview and the dispatch by role, pure
    decide_leader.py, decide_elect.py, decide_follow.py
                 the rules of the lease holder, of a cluster with no leader, of a follower
    dcs.py       EtcdClient: etcd v3 over its JSON gateway (leases, range, put, txn); Keys under the prefix
    records.py   JSON of the DCS keys (leader, optime, members/<host>, history) <-> snapshot records
    mysql.py     LocalMariaDB: facts and the few changes (promote, fence, follow) via the `mariadb` client
    mysql_facts.py  the facts query and its pure parsing
    actions.py   Actor: carries out a Decision; returns the agent's new memory; appends events
    clone.py     re-clone: mariabackup stream from the leader -> mbstream -> prepare -> swap datadir
    api.py       HTTP API (/primary /replica /read /health /status /clone) from the last published cycle
    watchdog.py  the MariaDB EVENT that fences the server itself once the agent's lease deadline passes
    clock.py     CLOCK_BOOTTIME for lease arithmetic
    eventlog.py  EventLog: JSON lines appended to the cluster's events file
    metrics.py   the agent's Prometheus metrics (/metrics)
    loop.py      Agent: gather -> decide -> act -> publish, every loop_interval; fencing on time
    __main__.py  python -m webinfra.agent --config agent.json

Durability: no acknowledged write is lost. Writes are acknowledged after a replica has them (semi-sync,
AFTER_SYNC, MariaDB's timeout 'forever'); with `when_no_replica_acks = "fallback_async"` the agent may
let a leader that lost its replicas acknowledge alone, and then the leader's `optime` key (no lease, it
outlives the leader) says so BEFORE the first such write, with the position they reach kept current. No
member behind that position promotes until that leader is back (Patroni's synchronous mode with
synchronous_mode_strict=false and maximum_lag_on_failover=0). The trade-off: if a leader that fell back
to async dies for good, writes stay unavailable until it returns instead of its acknowledged writes
being lost. Details and the one remaining window in decide.py.

Public entry points: `Agent`, `AgentConfig`/`load_config`, `decide`, `Decision`, `Action`, `Snapshot`.
"""

from webinfra.agent.config import AgentConfig, load_config
from webinfra.agent.decide import decide
from webinfra.agent.decision import Action, Decision
from webinfra.agent.loop import Agent
from webinfra.agent.snapshot import Snapshot

__all__ = ["Action", "Agent", "AgentConfig", "Decision", "Snapshot", "decide", "load_config"]
