"""The cross-field rules of a topology: what one field alone cannot say (unique names and addresses, role
counts, ports that clash, the user's certificate, alert routes). `check_topology` returns the problems as
(field path, value, message), so that model/load.py can name the offending field in one line.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from webinfra.model.errors import NO_VALUE
from webinfra.model.machines import check_machines
from webinfra.model.topology import HostSpec, Role, Topology, listeners

Problem = tuple[str, Any, str]


def check_topology(topo: Topology) -> list[Problem]:
    """Cross-field rules. Returns problems as (field path, value, message); empty when the topology is usable."""
    subnet = topo.network.subnet
    if not 16 <= subnet.prefixlen <= 28:
        return [("network.subnet", str(subnet), "prefix length must be between /16 and /28")]
    problems = _check_hosts(topo) + check_machines(topo.machines, [h.name for h in topo.hosts])
    if problems:  # the rules below count roles and addresses: they need each host right first
        return problems
    primaries = [h for h in topo.hosts if h.db_role == "primary"]
    problems += _check_tiers(topo)
    problems += _check_primary(topo, primaries)
    problems += _check_role_pairs(topo)
    problems += _check_ports(topo)
    problems += _check_tls(topo)
    problems += _check_alerts(topo)
    if topo.lb.route_writes_to == "primary" and len(primaries) == 1 and not primaries[0].has(Role.WEB) and not topo.ha:
        problems.append(
            (
                "lb.route_writes_to",
                "primary",
                f"the primary DB host {primaries[0].name!r} is not a 'web' host; use \"any\"",
            )
        )
    return problems


def _check_hosts(topo: Topology) -> list[Problem]:
    """Each host alone: a unique name and address in the subnet, no role twice, the fields its roles allow."""
    problems: list[Problem] = []
    subnet = topo.network.subnet
    seen_names: dict[str, int] = {}
    seen_addrs: dict[ipaddress.IPv4Address, str] = {}
    for i, host in enumerate(topo.hosts):
        at = f"hosts[{i}]"
        if host.name in seen_names:
            problems.append((f"{at}.name", host.name, f"duplicate host name (also hosts[{seen_names[host.name]}])"))
        seen_names.setdefault(host.name, i)
        if len(set(host.roles)) != len(host.roles):
            problems.append((f"{at}.roles", [r.value for r in host.roles], "a role is listed twice"))
        try:
            addr = topo.address_of(host.name)
        except ipaddress.AddressValueError:  # numbered past 255.255.255.255 (a subnet at the top of the space)
            problems.append((f"{at}.address", None, f"no address left in {subnet} for this host"))
            continue
        # On servers the subnet's first address is no longer this machine's: only emulated hosts keep off it.
        reserved = (subnet.network_address, subnet.broadcast_address) + (() if topo.machines.ssh else (topo.gateway,))
        if addr not in subnet or addr in reserved:
            problems.append(
                (
                    f"{at}.address",
                    str(addr),
                    f"must be a usable host address in {subnet} other than {topo.gateway}",
                )
            )
        elif addr in seen_addrs:
            problems.append((f"{at}.address", str(addr), f"address already used by {seen_addrs[addr]}"))
        seen_addrs.setdefault(addr, host.name)
        if not host.has(Role.WEB):
            if host.weight is not None:
                problems.append(
                    (f"{at}.weight", host.weight, "only a 'web' host (a load-balancer backend) has a weight")
                )
            if host.backup is not None:
                problems.append(
                    (
                        f"{at}.backup",
                        host.backup,
                        "only a 'web' host (a load-balancer backend) can be a backup",
                    )
                )
        if host.has(Role.DB) and host.db_role is None:
            problems.append((f"{at}.db_role", None, 'a \'db\' host needs db_role = "primary" or "replica"'))
        if not host.has(Role.DB) and host.db_role is not None:
            problems.append((f"{at}.db_role", host.db_role, "only a host with the 'db' role has a db_role"))
    return problems


def _check_tiers(topo: Topology) -> list[Problem]:
    """How many hosts have each role, and the settings that depend on them (timings, the VIP)."""
    problems: list[Problem] = []
    subnet = topo.network.subnet
    lbs, webs, apps = topo.with_role(Role.LB), topo.with_role(Role.WEB), topo.with_role(Role.APP)
    if len(lbs) not in (1, 2):
        problems.append(("hosts", [h.name for h in lbs], "one host (single LB) or two (an LB pair) must have 'lb'"))
    monitors = topo.with_role(Role.MONITORING)
    if len(monitors) > 1:
        problems.append(("hosts", [h.name for h in monitors], "at most one host may have the 'monitoring' role"))
    if topo.etcd.election_timeout_ms < 5 * topo.etcd.heartbeat_ms:
        problems.append(
            (
                "etcd.election_timeout_ms",
                topo.etcd.election_timeout_ms,
                f"etcd needs at least 5 x heartbeat_ms ({5 * topo.etcd.heartbeat_ms})",
            )
        )
    if topo.db.loop_interval_ms * 2 > topo.db.lease_ttl_seconds * 1000:
        problems.append(
            (
                "db.loop_interval_ms",
                topo.db.loop_interval_ms,
                f"the agents renew their lease once a cycle: keep it at most half of "
                f"lease_ttl_seconds ({topo.db.lease_ttl_seconds * 500} ms)",
            )
        )
    etcds = topo.with_role(Role.ETCD)
    if etcds and len(etcds) % 2 == 0:
        problems.append(("hosts", [h.name for h in etcds], "the 'etcd' role needs an odd number of hosts (3 for HA)"))
    if topo.lb_pair and topo.vip is not None:
        vip = topo.vip
        used = {topo.address_of(h.name) for h in topo.hosts}
        if vip not in subnet or vip in (subnet.network_address, subnet.broadcast_address, topo.gateway) or vip in used:
            problems.append(("lb.vip", str(vip), f"must be a free usable address in {subnet}"))
    if topo.lb.vip is not None and not topo.lb_pair:
        problems.append(("lb.vip", str(topo.lb.vip), "a virtual IP needs two 'lb' hosts (an LB pair)"))
    if not webs:
        problems.append(("hosts", [], "at least one host must have the 'web' role"))
    elif all(h.is_backup for h in webs):
        problems.append(("hosts", [h.name for h in webs], "every 'web' host is a backup: at least one must be active"))
    elif all(h.lb_weight == 0 for h in webs):
        # HAProxy sends nothing to a server of weight 0: the site would answer 503 to every request.
        problems.append(("hosts", [h.name for h in webs], "every 'web' host has weight 0: no host would get traffic"))
    if not apps:
        problems.append(("hosts", [], "at least one host must have the 'app' role"))
    return problems


def _check_role_pairs(topo: Topology) -> list[Problem]:
    """A web host without 'app' needs app-only hosts, and an app-only host needs a web host without 'app'."""
    problems: list[Problem] = []
    apps, webs = topo.with_role(Role.APP), topo.with_role(Role.WEB)
    app_only_exists = any(not h.has(Role.WEB) for h in apps)  # computed once: checks stay linear in hosts
    web_only_exists = any(not w.has(Role.APP) for w in webs)
    for i, host in enumerate(topo.hosts):
        if host.has(Role.WEB) and not host.has(Role.APP) and not app_only_exists:
            problems.append(
                (
                    f"hosts[{i}].roles",
                    [r.value for r in host.roles],
                    "a 'web' host without 'app' needs app-only hosts to proxy to",
                )
            )
        if host.has(Role.APP) and not host.has(Role.WEB) and not web_only_exists:
            problems.append(
                (
                    f"hosts[{i}].roles",
                    [r.value for r in host.roles],
                    "an app-only host is reached by no web host (add a 'web' host without 'app')",
                )
            )
    return problems


def _check_ports(topo: Topology) -> list[Problem]:
    """No two services of one host on the same port."""
    problems: list[Problem] = []
    for i, host in enumerate(topo.hosts):
        ports = [port for _, port in listeners(topo, host)]
        clash = sorted({port for port in ports if ports.count(port) > 1})
        if clash:
            problems.append(
                (
                    f"hosts[{i}].roles",
                    [r.value for r in host.roles],
                    f"two services on this host would listen on port {clash[0]}; change one of the ports",
                )
            )
    return problems


def _check_primary(topo: Topology, primaries: list[HostSpec]) -> list[Problem]:
    """Exactly one db host is the (initial) primary; the message says which way it is wrong."""
    if len(primaries) == 1:
        return []
    if len(primaries) > 1:
        names = [h.name for h in primaries]
        return [("hosts", names, f"{len(names)} 'db' hosts have db_role = \"primary\": exactly one may")]
    dbs = topo.with_role(Role.DB)
    if not dbs:
        return [("hosts", NO_VALUE, "no host has the 'db' role: add one with db_role = \"primary\"")]
    db_names = ", ".join(h.name for h in dbs)
    return [("hosts", NO_VALUE, f"no 'db' host has db_role = \"primary\" (db hosts: {db_names}): make one the primary")]


def _check_tls(topo: Topology) -> list[Problem]:
    """The user's own certificate: both files or neither, absolute paths (whether they can be read is checked
    where files are read, by `up`, not here)."""
    tls = topo.tls
    problems: list[Problem] = []
    for field in ("cert_file", "key_file", "ca_file"):
        value = getattr(tls, field)
        if value is not None and not value.startswith("/"):
            problems.append((f"tls.{field}", value, "must be an absolute path"))
    if (tls.cert_file is None) != (tls.key_file is None):
        field = "tls.key_file" if tls.key_file is None else "tls.cert_file"
        problems.append((field, None, "cert_file and key_file go together: give both or neither"))
    if tls.ca_file is not None and tls.cert_file is None:
        problems.append(("tls.ca_file", tls.ca_file, "names the CA of your own certificate: give cert_file too"))
    return problems


def _check_alerts(topo: Topology) -> list[Problem]:
    """E-mail needs a sender and a relay; routes need Alertmanager, which runs on the monitoring host."""
    alerts = topo.monitoring.alerts
    problems: list[Problem] = []
    if alerts.email_to:
        if alerts.email_from is None:
            problems.append(("monitoring.alerts.email_from", NO_VALUE, "email_to needs a sender address (email_from)"))
        if alerts.smarthost is None:
            problems.append(("monitoring.alerts.smarthost", NO_VALUE, 'email_to needs an SMTP relay ("host:port")'))
    routed = alerts.webhook_urls or alerts.email_to
    if routed and topo.monitoring_host is None:
        problems.append(
            (
                "monitoring.alerts",
                list(alerts.webhook_urls or alerts.email_to),
                "alert routes need a host with the 'monitoring' role (Alertmanager runs there)",
            )
        )
    return problems
