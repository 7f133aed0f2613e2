"""`webinfra status`: one snapshot of the cluster, as the documented JSON contract (docs/STATUS.md) and as
rows for the table. Reading status never changes anything."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webinfra.control import hastate
from webinfra.control.cluster import Cluster
from webinfra.daemons import haproxy, mariadb
from webinfra.model import HostSpec, Role
from webinfra.observe.prom import monitoring_status
from webinfra.ops.faults import active_faults
from webinfra.parallel import map_ordered
from webinfra.plan.spec import HostPlan, Probe
from webinfra.runtime import CommandError, HttpFailure, HttpResponse, Machine, MachineUnreachable
from webinfra.runtime.probe import probe_request
from webinfra.services import supervisor

SCHEMA_VERSION = 1


# Reading status is mostly waiting (probes, admin SQL, the agents' and the LBs' APIs), each on its own host:
# hosts are read side by side, and the LB and DB parts alongside them.
STATUS_WORKERS = 16
PROBE_TIMEOUT = 0.5
# Services whose probe answer `status` also reads, so that one request per service serves both: the app's
# /healthz names its code version, the agent's /status is the node's HA view (role, lease).
READ_ANSWER_OF = ("app", "agent")


@dataclass(frozen=True)
class HostReading:
    """One host as read: its part of `hosts`, and the probe answers kept (READ_ANSWER_OF)."""

    row: dict[str, Any]
    answers: dict[str, HttpResponse]


def snapshot(cluster: Cluster) -> dict[str, Any]:
    topo = cluster.topology
    db_specs = topo.with_role(Role.DB)
    # One pool for every read, the slow ones first (the DB nodes' admin SQL is a client process each):
    # the LB part, each DB node's facts, then each host (its services' probes, one after the other).
    tasks: list[Callable[[], Any]] = [functools.partial(_lb, cluster)]
    tasks += [functools.partial(_db_facts, cluster, spec.name) for spec in db_specs]
    tasks += [functools.partial(_read_host, cluster, hp) for hp in cluster.plan.hosts]
    results = map_ordered(lambda task: task(), tasks, max_workers=STATUS_WORKERS)
    lb = results[0]
    facts = dict(zip((spec.name for spec in db_specs), results[1 : 1 + len(db_specs)], strict=True))
    readings: list[HostReading] = results[1 + len(db_specs) :]
    snap = {
        "schema_version": SCHEMA_VERSION,
        "cluster": topo.name,
        "site_name": topo.site.name,
        "site_url": topo.site_url,
        "hosts": [r.row for r in readings],
        "lb": lb,
        "faults": active_faults(cluster),
        "db": _db(cluster, facts, {r.row["name"]: r.answers for r in readings}),
        "monitoring": monitoring_status(cluster),
    }
    snap["health"] = health(snap)
    return snap


def _read_host(cluster: Cluster, hp: HostPlan) -> HostReading:
    machine = cluster.hosts[hp.name]
    services = []
    answers: dict[str, HttpResponse] = {}
    for svc in hp.services:
        known = machine.service_status(svc.name)
        if known.running and svc.name in READ_ANSWER_OF and svc.probe.kind in ("http", "https"):
            answer = _probe_answer(machine, svc.probe)
            if answer is not None:
                answers[svc.name] = answer
            ok = answer is not None and 200 <= answer.status < 300  # what the probe itself asks
            state = supervisor.ServiceState.RUNNING if ok else supervisor.ServiceState.STARTING
        else:
            state = supervisor.state_of(machine, svc, known)
        services.append({"name": svc.name, "state": state.value, "pid": known.pid})
    row = {
        "name": hp.name,
        "address": hp.address,
        "roles": list(hp.roles),
        "up": machine.is_up(),
        "services": services,
        "code_version": _code_version(answers.get("app")) if "app" in hp.roles else None,
    }
    return HostReading(row, answers)


def _probe_answer(machine: Machine, probe: Probe) -> HttpResponse | None:
    """The service's HTTP(S) probe, made from its machine as `Machine.probe` makes it; the answer, or None
    when nothing answered."""
    try:
        return machine.http(probe_request(probe, PROBE_TIMEOUT))
    except (HttpFailure, CommandError, MachineUnreachable):  # no answer, or the host is gone
        return None


def _json_of(answer: HttpResponse | None) -> dict[str, Any] | None:
    """A 200 answer's JSON object, else None."""
    if answer is None or answer.status != 200:
        return None
    try:
        data = json.loads(answer.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _code_version(answer: HttpResponse | None) -> str | None:
    """The code version the host's app runs, as its /healthz says (None when it does not answer)."""
    version = (_json_of(answer) or {}).get("version")
    return str(version) if version is not None else None


def _lb(cluster: Cluster) -> dict[str, Any]:
    topo = cluster.topology
    holder = _vip_holder(cluster)
    # Report the LB that serves the site: the VIP holder of a pair, else the first that answers.
    candidates = sorted(topo.with_role(Role.LB), key=lambda h: h.name != holder)
    lb = cluster.plan.host(candidates[0].name)
    by_name: dict[str, haproxy.ServerStat] = {}
    requests: dict[str, int] = {}  # reads and writes: both site backends
    reachable = False
    for spec in candidates:
        try:
            stats = haproxy.runtime_for(cluster.hosts[spec.name], cluster.plan.host(spec.name)).servers()
        except haproxy.RuntimeApiError:
            continue
        lb, reachable = cluster.plan.host(spec.name), True
        for row in stats:
            if row.backend == "site":
                by_name[row.name] = row
            if row.backend in haproxy.SITE_BACKENDS:
                requests[row.name] = requests.get(row.name, 0) + row.total_sessions
        break
    backends = []
    for web in topo.with_role(Role.WEB):
        stat = by_name.get(web.name)
        backends.append(
            {
                "name": web.name,
                "address": str(topo.address_of(web.name)),
                "weight": stat.weight if stat else web.lb_weight,
                "configured_weight": web.lb_weight,
                "state": _backend_state(stat) if stat else "unknown",
                "backup": web.is_backup,
                "sessions_total": requests.get(web.name) if stat else None,
                "check": stat.check_status.lstrip("* ") if stat else "",
            }
        )
    return {
        "vip": str(topo.vip) if topo.vip else None,
        "vip_holder": holder,
        "hosts": [h.name for h in topo.with_role(Role.LB)],
        "host": lb.name,
        "address": lb.address,
        "runtime_api": reachable,
        "route_writes_to": topo.lb.route_writes_to,
        "backends": backends,
    }


def _backend_state(stat: haproxy.ServerStat) -> str:
    s = stat.status.upper()
    for word, state in (
        ("MAINT", "maint"),
        ("DRAIN", "drain"),
        ("NOLB", "drain"),
        ("DOWN", "down"),
        ("UP", "up"),
    ):
        if s.startswith(word):
            return state
    return s.lower() or "unknown"


def _db_facts(cluster: Cluster, name: str) -> mariadb.DbFacts:
    hp = cluster.plan.host(name)
    machine = cluster.hosts[name]
    if not supervisor.running(machine, hp.service("mariadb")):
        return mariadb.DbFacts(reachable=False)
    return mariadb.facts(machine, hp)


def _db(
    cluster: Cluster, facts_of: dict[str, mariadb.DbFacts], answers_of: dict[str, dict[str, HttpResponse]]
) -> dict[str, Any]:
    """The DB part, from each node's facts and its agent's /status (read with the host's probes)."""
    topo = cluster.topology
    primary = topo.db_primary

    def node(spec: HostSpec) -> dict[str, Any]:
        hp = cluster.plan.host(spec.name)
        facts = facts_of[spec.name]
        agent = _json_of(answers_of[spec.name].get("agent")) if topo.ha else None
        if topo.ha:
            role = (agent or {}).get("role") or ("unknown" if facts.reachable else "down")
        else:
            role = spec.db_role
        return {
            "name": spec.name,
            "address": hp.address,
            "role": role,
            "lease": _lease(agent, spec.name) if topo.ha else None,
            "reachable": facts.reachable,
            "read_only": facts.read_only if facts.reachable else None,
            "gtid": facts.gtid_current_pos if facts.reachable else None,
            "replicating_from": facts.replicating_from or None,
            "io_running": facts.io_running or None,
            "sql_running": facts.sql_running or None,
            "lag_seconds": facts.lag_seconds,
            "error": facts.last_error or None,
        }

    nodes = [node(spec) for spec in topo.with_role(Role.DB)]
    if topo.ha:
        writable = [n["name"] for n in nodes if n["role"] == "primary"]
        current = writable[0] if len(writable) == 1 else None
    else:
        current = primary.name if primary else None
    return {
        "ha": topo.ha,
        "primary": current,
        "replicas": [n for n in nodes if n["role"] == "replica"],
        "nodes": nodes,
    }


def _lease(agent: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """Who holds the leader lease and for how long still, as this node's agent sees it."""
    if not agent:
        return None
    return {"holder": agent.get("leader"), "seconds_left": agent.get("lease_ttl_left")}


def _vip_holder(cluster: Cluster) -> str | None:
    return ",".join(hastate.vip_holders(cluster)) or None


# ---- health: what `status` exits with (docs/CLI.md) ----

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
DELIBERATE = ("up", "drain", "maint")  # backend states that are not a problem


def health(snap: dict[str, Any]) -> dict[str, Any]:
    """From a snapshot: `down` when the site cannot serve (no load balancer answering, no backend up, no
    primary database); `degraded` when it serves with something missing (a host or service down, a backend
    down, replication broken, a fault injected); else `healthy`. Pure, so it is unit-tested."""
    down: list[str] = []
    degraded: list[str] = []
    lb = snap["lb"]
    backends = lb["backends"]
    if not lb["runtime_api"]:
        down.append("no load balancer's runtime API answers")
    elif not any(b["state"] == "up" for b in backends):
        down.append("no load-balancer backend is up")
    if snap["db"]["primary"] is None:
        down.append("no primary database")
    for host in snap["hosts"]:
        if not host["up"]:
            degraded.append(f"host {host['name']} is down")
            continue
        degraded += [
            f"{s['name']} on {host['name']} is {s['state']}" for s in host["services"] if s["state"] != "running"
        ]
    if lb["runtime_api"]:
        # A backend drained or in maintenance is an operator's choice (weight 0, a deploy cycling it): not a fault.
        degraded += [f"backend {b['name']} is {b['state']}" for b in backends if b["state"] not in DELIBERATE]
    for node in snap["db"]["replicas"]:
        threads = (node.get("io_running"), node.get("sql_running"))
        if node.get("error") or any(t not in (None, "Yes") for t in threads):
            degraded.append(f"replication on {node['name']} is broken ({node.get('error') or 'not running'})")
    degraded += [f"fault on {host}: {what}" for host, what in (snap.get("faults") or {}).items()]
    state = DOWN if down else DEGRADED if degraded else HEALTHY
    return {"state": state, "problems": down + degraded}
