"""The watcher's look on servers: from the monitoring server, over the network.

On emulated hosts the watcher looks into every host (its namespace, its HAProxy's unix socket). On servers it
runs on the monitoring server, which holds no SSH key to the others (a compromised monitoring host must not
own the fleet), so it reads what the other servers already publish to it, through the flows the firewall
admits for Prometheus's scrapes:

    backends     each LB's HAProxy metrics (`haproxy_server_status{proxy="site",server=...,state=...}`),
                 the VIP holder's first
    VIP holder   each LB's node exporter: `keepalived_vrrp_state{state="MASTER"} 1`, the VRRP state
                 keepalived's notify script writes for the textfile collector (the latest MASTER, when a
                 killed keepalived left its file saying MASTER)
    primary      HA: the DB agents' `/primary` (200 on the writable primary), as hastate asks it
    services     not seen from there (no process table of another server): the commands that stop and
                 start services record those events themselves

The parsers are pure (unit-tested); `look_over_network` does the requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from webinfra.model import Role, Topology
from webinfra.observe.monitor import UNKNOWN, View, backend_state

# A sample line of Prometheus's text format: name, labels, value.
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
SITE_BACKEND = "site"
TIMEOUT = 1.0

Get = Callable[[str], tuple[int, str] | None]  # url -> (status, body), or None when nothing answered


def samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    """The samples of `metric` in a /metrics page, as (labels, value). Pure."""
    out = []
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None or found.group(1) != metric:
            continue
        try:
            value = float(found.group(3))
        except ValueError:
            continue
        out.append((dict(_LABEL.findall(found.group(2) or "")), value))
    return out


def backend_states(text: str, backend: str = SITE_BACKEND) -> dict[str, str]:
    """{server: up/down/maint/drain} from HAProxy's exporter page: the state whose sample is 1. Pure."""
    out: dict[str, str] = {}
    for labels, value in samples(text, "haproxy_server_status"):
        if value == 1 and labels.get("proxy") == backend and "server" in labels:
            out[labels["server"]] = backend_state(labels.get("state", ""))
    return out


def master_since(text: str) -> float | None:
    """When keepalived became MASTER, if a node exporter's page says it is (else None). Pure."""
    if not any(v == 1 and labels.get("state") == "MASTER" for labels, v in samples(text, "keepalived_vrrp_state")):
        return None
    changed = [v for _, v in samples(text, "keepalived_vrrp_state_change_timestamp_seconds")]
    return max(changed, default=0.0)


def vip_holder_of(masters: dict[str, float]) -> str | None:
    """The LB that became MASTER last. Two pages saying MASTER is one stale file, not a split: a keepalived
    killed (SIGKILL, OOM) runs no notify script, so its last MASTER stays until it starts again. Pure."""
    return max(masters, key=lambda lb: masters[lb]) if masters else None


def http_get(url: str) -> tuple[int, str] | None:
    import httpx

    try:
        response = httpx.get(url, timeout=TIMEOUT)
    except httpx.HTTPError:
        return None
    return response.status_code, response.text


def look_over_network(topo: Topology, get: Get = http_get) -> View:
    mon = topo.monitoring
    address = {h.name: str(topo.address_of(h.name)) for h in topo.hosts}
    lbs = [h.name for h in topo.with_role(Role.LB)]

    masters: dict[str, float] = {}
    if topo.vip is not None:
        for lb in lbs:
            page = get(f"http://{address[lb]}:{mon.node_exporter_port}/metrics")
            since = master_since(page[1]) if page is not None and page[0] == 200 else None
            if since is not None:
                masters[lb] = since
    holder = vip_holder_of(masters)
    holders = [holder] if holder else []

    backends = {w.name: UNKNOWN for w in topo.with_role(Role.WEB)}
    for lb in sorted(lbs, key=lambda name: name not in holders):
        page = get(f"http://{address[lb]}:{mon.haproxy_metrics_port}/metrics")
        if page is None or page[0] != 200:
            continue
        backends.update(backend_states(page[1]))
        break

    if topo.ha:
        primaries = []
        for db in topo.with_role(Role.DB):
            answer = get(f"http://{address[db.name]}:{topo.db.agent_port}/primary")
            if answer is not None and answer[0] == 200:
                primaries.append(db.name)
        primary = primaries[0] if len(primaries) == 1 else None
    else:
        spec = topo.db_primary
        primary = spec.name if spec else None
    return View(backends=backends, vip_holder=holder, primary=primary, services={})
