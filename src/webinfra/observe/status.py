"""`webinfra status`: one snapshot of the cluster, as the documented JSON contract (docs/STATUS.md) and as
rows for the table. Reading status never changes anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from webinfra.control import hastate
from webinfra.control.cluster import Cluster
from webinfra.model import HostSpec, Role
from webinfra.observe.prom import monitoring_status
from webinfra.ops.faults import active_faults
from webinfra.parallel import map_ordered
from webinfra.plan.spec import HostPlan
from webinfra.runtime import CommandError, client_on
from webinfra.services import haproxy, mariadb, supervisor

SCHEMA_VERSION = 1


# Reading status is mostly waiting (probes, admin SQL, the agents' and the LBs' APIs), each on its own host:
# hosts are read side by side, and the LB and DB parts alongside them.
STATUS_WORKERS = 16


def snapshot(cluster: Cluster) -> dict[str, Any]:
    topo = cluster.topology
    parts: list[Callable[[], Any]] = [
        lambda: map_ordered(lambda hp: _host(cluster, hp), cluster.plan.hosts, max_workers=STATUS_WORKERS),
        lambda: _lb(cluster),
        lambda: _db(cluster),
    ]
    hosts, lb, db = map_ordered(lambda part: part(), parts)
    snap = {
        "schema_version": SCHEMA_VERSION,
        "cluster": topo.name,
        "site_name": topo.site.name,
        "site_url": topo.site_url,
        "hosts": hosts,
        "lb": lb,
        "faults": active_faults(cluster),
        "db": db,
        "monitoring": monitoring_status(cluster),
    }
    snap["health"] = health(snap)
    return snap


def _host(cluster: Cluster, hp: HostPlan) -> dict[str, Any]:
    machine = cluster.hosts[hp.name]
    services = []
    for svc in hp.services:
        known = machine.service_status(svc.name)
        state = supervisor.state_of(machine, svc, known)
        services.append({"name": svc.name, "state": state.value, "pid": known.pid})
    return {
        "name": hp.name,
        "address": hp.address,
        "roles": list(hp.roles),
        "up": machine.is_up(),
        "services": services,
        "code_version": _code_version(cluster, hp.name) if "app" in hp.roles else None,
    }


def _code_version(cluster: Cluster, host: str) -> str | None:
    """The code version the host's app runs, as its /healthz says (None when it does not answer)."""
    topo = cluster.topology
    url = f"http://{topo.address_of(host)}:{topo.app.port}/healthz"

    try:
        with client_on(cluster.hosts[host], timeout=0.5) as client:
            version = client.get(url, headers={"Host": topo.site.name}).json().get("version")
    except (httpx.HTTPError, ValueError, AttributeError, CommandError):  # CommandError: the host is gone
        return None
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


def _db(cluster: Cluster) -> dict[str, Any]:
    topo = cluster.topology
    primary = topo.db_primary

    def node(spec: HostSpec) -> dict[str, Any]:
        hp = cluster.plan.host(spec.name)
        running = supervisor.running(cluster.hosts[spec.name], hp.service("mariadb"))
        facts = mariadb.facts(cluster.hosts[spec.name], hp) if running else mariadb.DbFacts(reachable=False)
        agent = hastate.agent_status(cluster, spec.name) if topo.ha else None
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

    nodes = map_ordered(node, topo.with_role(Role.DB))
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
