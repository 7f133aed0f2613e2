"""Topology -> ClusterPlan: every daemon's contribution (files rendered, command lines, probes) for every host.

Pure: no I/O beyond reading templates from the package, so a plan can be printed (`webinfra plan`),
golden-tested, and each config checked by its own tool (`haproxy -c`, `nginx -t`). What each daemon renders
is its module's `contribute` in plan/daemons/; this module only assembles them, in CONTRIBUTORS order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

from webinfra.model import Topology
from webinfra.plan.daemons import (
    agent,
    app,
    dbproxy,
    etcd,
    exporters,
    firewall,
    haproxy,
    keepalived,
    mariadb,
    monitor,
    nginx,
)
from webinfra.plan.render import Contribution, HostContext
from webinfra.plan.spec import AppRelease, BackendServer, ClusterPlan, FileSpec, HostPlan, ServiceSpec
from webinfra.state import Layout

# Each daemon's part of a host's plan, in the order a HostPlan lists files and services (golden-tested:
# changing it changes `webinfra plan`). The lifecycle of each service is in daemons/registry.py.
CONTRIBUTORS: tuple[Callable[[HostContext], Contribution], ...] = (
    firewall.contribute,
    mariadb.contribute,
    etcd.contribute,
    agent.contribute,
    dbproxy.contribute,
    app.contribute,
    nginx.contribute,
    haproxy.contribute,
    keepalived.contribute,
    exporters.contribute,  # node-exporter, mysqld-exporter, nginx-exporter
    monitor.contribute,  # the monitoring host: Alertmanager, Prometheus, the watcher
)


def build_plan(
    topo: Topology,
    layout: Layout,
    python: str = sys.executable,
    *,
    releases: Mapping[str, AppRelease] | None = None,
    draining: frozenset[str] = frozenset(),
) -> ClusterPlan:
    """`releases`: the code base each app host runs (deployed by `webinfra deploy`; a host without one runs
    the installed `webinfra.site`, labelled `[app] version`). `draining`: app hosts that every nginx
    in front of them marks `down` (a rolling deploy of app-only hosts)."""
    rulesets = firewall.rulesets(topo) if topo.firewall else {}
    hosts = tuple(
        _host_plan(HostContext(topo, layout, h.name, python, releases or {}, draining, rulesets.get(h.name)))
        for h in topo.hosts
    )
    return ClusterPlan(topology=topo, layout=layout, hosts=hosts)


def _host_plan(ctx: HostContext) -> HostPlan:
    files: list[FileSpec] = []
    services: list[ServiceSpec] = []
    lb_servers: tuple[BackendServer, ...] = ()
    vrrp_peers: tuple[str, ...] = ()
    for contribute in CONTRIBUTORS:
        part = contribute(ctx)
        files += part.files
        services += part.services
        lb_servers += part.lb_servers
        vrrp_peers += part.vrrp_peers
    return HostPlan(
        name=ctx.name,
        address=ctx.address,
        roles=tuple(r.value for r in ctx.spec.roles),
        dirs=ctx.dirs,
        files=tuple(files),
        services=tuple(services),
        lb_servers=lb_servers,
        vrrp_peers=vrrp_peers,
    )
