"""Topology -> each host's firewall (an nftables ruleset). Pure.

Nothing is hand-listed: `flows()` derives every inbound flow from the roles and relations of the
topology (who proxies to whom, who reads which database, who holds the VIP, who is in etcd), with the
same ports `listeners()` gives, and `ruleset()` turns the flows that end at one host into its input
chain: policy drop; loopback, replies and ping from the subnet accepted; then one commented accept per
flow. Everything webinfra itself does on a host (readiness probes, status, admin SQL, the HAProxy
runtime API) runs inside that host over loopback or unix sockets, so no management port is opened on
emulated hosts. On servers (`[machines] kind = "ssh"`) the one exception is SSH from the management
machine (`[machines] management`): every server's ruleset accepts it first.

The file loads atomically and idempotently (`table` + `delete table` + the new table, in one
transaction), and never touches the fault-injection table (`inet webinfra_fault`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

from webinfra.model import HostSpec, Role, Topology
from webinfra.plan.daemons import prometheus
from webinfra.plan.render import NOTHING, Contribution, HostContext
from webinfra.plan.spec import FileSpec, Flow

TABLE = "webinfra"


def _addrs(topo: Topology, hosts: Iterable[HostSpec], exclude: str) -> tuple[str, ...]:
    """Addresses of `hosts`, without `exclude` (a host reaches itself over loopback), in file order."""
    return tuple(str(topo.address_of(h.name)) for h in hosts if h.name != exclude)


def management_sources(topo: Topology) -> tuple[str, ...] | None:
    """Where the management SSH may come from: `[machines] management`, None (anywhere) when unset."""
    return tuple(str(net) for net in topo.machines.management) or None


def lb_checks_agents(topo: Topology) -> bool:
    """HAProxy's write backend asks the DB agents' /primary (HA with writes routed to the primary)."""
    return topo.ha and topo.lb.route_writes_to == "primary"


@lru_cache(maxsize=4)  # a few topologies at a time: a long-running process builds plans again and again
def flows(topo: Topology) -> tuple[Flow, ...]:
    """Every inbound flow of the topology, host by host (computed once per topology: each host's ruleset
    picks its own, and plans are built host by host)."""
    out: list[Flow] = []
    lbs, webs, apps = topo.with_role(Role.LB), topo.with_role(Role.WEB), topo.with_role(Role.APP)
    dbs, etcds = topo.with_role(Role.DB), topo.with_role(Role.ETCD)
    web_only = [w for w in webs if not w.has(Role.APP)]
    for host in topo.hosts:
        name = host.name

        def add(
            flow_name: str,
            sources: tuple[str, ...] | None,
            *ports: int,
            proto: Literal["tcp", "vrrp"] = "tcp",
            dest: str = name,
        ) -> None:
            if sources is None or sources:  # no peer of that kind: no rule
                out.append(Flow(flow_name, dest, sources, proto, tuple(ports)))

        if topo.machines.ssh:
            # Servers: the management machine's SSH, first and always, or loading the ruleset would cut off
            # the connection that loads it (and every later `up`). Unknown management (a plan rendered
            # offline): admitted from anywhere rather than locked out; `up` always knows it.
            add("management -> ssh", management_sources(topo), topo.machines.address_of(name).port)

        if host.has(Role.LB):
            ports = (topo.lb.port, topo.lb.https_port) if topo.tls.enabled else (topo.lb.port,)
            add("clients -> haproxy", None, *ports)
            if topo.lb_pair:
                add("vrrp from the lb peer", _addrs(topo, lbs, name), proto="vrrp")
        if host.has(Role.WEB):
            add("lb -> nginx", _addrs(topo, lbs, name), topo.web.port)
        if host.has(Role.APP):
            # The nginx in front of an app: its own host's, or (an app-only host) every web host without an app
            # (Topology.app_upstreams_of, inverted without a loop over the web hosts per app host).
            proxies = [host] if host.has(Role.WEB) else web_only
            add("nginx -> app", _addrs(topo, proxies, name), topo.app.port)
        if host.has(Role.DB):
            add("app -> mariadb", _addrs(topo, apps, name), topo.db.port)
            add("replication (db <-> db)", _addrs(topo, dbs, name), topo.db.port)
            if topo.ha:
                add("dbproxy checks -> agent", _addrs(topo, apps, name), topo.db.agent_port)
                if lb_checks_agents(topo) and host.has(Role.WEB):
                    add("lb write check -> agent", _addrs(topo, lbs, name), topo.db.agent_port)
                add("agent <-> agent", _addrs(topo, dbs, name), topo.db.agent_port)
        if host.has(Role.ETCD):
            add("agents -> etcd", _addrs(topo, dbs, name), topo.etcd.client_port)
            add("etcd peers", _addrs(topo, etcds, name), topo.etcd.peer_port)
            # etcd's /metrics port is opened to Prometheus with the other scrape targets (prometheus.flows).
    # Monitoring (a host with the 'monitoring' role): it scrapes every exporter; the management side
    # reaches Prometheus. plan/daemons/prometheus.py knows its targets.
    out += prometheus.flows(topo)
    return tuple(out)  # cached: immutable


@lru_cache(maxsize=4)  # a few topologies at a time: a long-running process builds plans again and again
def _flows_by_dest(topo: Topology) -> dict[str, list[Flow]]:
    out: dict[str, list[Flow]] = {}
    for flow in flows(topo):
        out.setdefault(flow.dest, []).append(flow)
    return out


def rulesets(topo: Topology) -> dict[str, str]:
    """Every host's nftables file, from one derivation of the flows (what a whole plan uses)."""
    return {h.name: ruleset(topo, h.name) for h in topo.hosts}


def _set(items: tuple[str, ...] | tuple[int, ...]) -> str:
    return str(items[0]) if len(items) == 1 else "{ " + ", ".join(str(i) for i in items) + " }"


def rule(flow: Flow) -> str:
    match = f"ip saddr {_set(flow.sources)} " if flow.sources is not None else ""
    match += "ip protocol vrrp" if flow.proto == "vrrp" else f"tcp dport {_set(flow.ports)}"
    return f'{match} accept comment "{flow.name}"'


def ruleset(topo: Topology, host: str) -> str:
    """The nftables file for `host`: load with `nft -f` inside the host's namespace (check with `nft -c -f`)."""
    subnet = topo.network.subnet
    rules = [
        'iif "lo" accept comment "loopback: webinfra probes and admin run inside the host"',
        "ct state established,related accept",
        "ct state invalid drop",
        f'ip saddr {subnet} icmp type echo-request accept comment "ping from the subnet"',
        *(rule(f) for f in _flows_by_dest(topo).get(host, ())),
    ]
    body = "\n".join(f"        {r}" for r in rules)
    return f"""# Rendered by webinfra for {host} ({topo.name}). Do not edit: `webinfra up` rewrites it.
# Inbound: dropped unless a flow of the topology needs it. Outbound: not filtered.
# The first two lines make the load idempotent and atomic: the table is replaced as a whole.
table inet {TABLE} {{}}
delete table inet {TABLE}
table inet {TABLE} {{
    chain input {{
        type filter hook input priority filter; policy drop;
{body}
    }}
}}
"""


def delete_rules() -> str:
    """Removes the table whatever state it is in (an empty table is created first, then deleted)."""
    return f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"


def contribute(ctx: HostContext) -> Contribution:
    """The host's ruleset (computed for every host at once by build_plan). Loaded by daemons/firewall.py
    before any service starts: not a service's config."""
    if ctx.firewall_ruleset is None:
        return NOTHING
    return Contribution([FileSpec(ctx.dirs.etc / "firewall.nft", ctx.firewall_ruleset)], [])
