"""Alertmanager on the monitoring host: the service and its `alertmanager.yml`, from `[monitoring.alerts]`. Pure.

Prometheus sends every firing alert to it (`alerting:` in prometheus.yml); it groups them, drops the ones an
inhibition rule covers, holds silences (`webinfra silence`), and notifies the routes of the topology:

    webhook_urls   a POST of Alertmanager's JSON (version 4) to each URL, firing and resolved
    email_to       one mail per group through `smarthost`, from `email_from`

Grouping is by cluster and alert name: one notification says "InstanceDown on web-01 and web-02".

Inhibition (why an alert that fires is not sent):
    HostDown      silences every other alert about the same `host` (its services, its backend): one page
                  for one dead host, not five
    SiteDown      silences BackendDown (the site being down says it all)
    EtcdNoQuorum  silences EtcdMemberDown
    critical      silences the warning of the same alert name on the same host

Alertmanager runs alone (no gossip cluster: `--cluster.listen-address=` empty), keeps silences in its data
directory, and re-reads its config on SIGHUP.
"""

from __future__ import annotations

from typing import Any

from webinfra.model import Topology
from webinfra.plan.render import yaml_text
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec
from webinfra.state import HostDirs

RECEIVER = "webinfra"
GROUP_BY = ("cluster", "alertname")
RETENTION = "120h"  # silences and notification log
BINARY = "prometheus-alertmanager"  # Debian's name for the alertmanager binary

INHIBIT_RULES: list[dict[str, Any]] = [
    {"source_matchers": ["alertname=HostDown"], "target_matchers": ["alertname!=HostDown"], "equal": ["host"]},
    {"source_matchers": ["alertname=SiteDown"], "target_matchers": ["alertname=BackendDown"], "equal": ["cluster"]},
    {
        "source_matchers": ["alertname=EtcdNoQuorum"],
        "target_matchers": ["alertname=EtcdMemberDown"],
        "equal": ["cluster"],
    },
    {
        "source_matchers": ["severity=critical"],
        "target_matchers": ["severity=warning"],
        "equal": ["alertname", "host"],
    },
]


def url(topo: Topology) -> str | None:
    """Alertmanager's base URL (on the monitoring host's address), or None without a monitoring host."""
    host = topo.monitoring_host
    if host is None:
        return None
    return f"http://{topo.address_of(host.name)}:{topo.monitoring.alertmanager_port}/"


def config(topo: Topology) -> dict[str, Any]:
    alerts = topo.monitoring.alerts
    receiver: dict[str, Any] = {"name": RECEIVER}
    if alerts.webhook_urls:
        receiver["webhook_configs"] = [{"url": u, "send_resolved": True} for u in alerts.webhook_urls]
    if alerts.email_to:
        receiver["email_configs"] = [{"to": ", ".join(alerts.email_to), "send_resolved": True}]
    global_: dict[str, Any] = {"resolve_timeout": "5m"}
    if alerts.email_to:
        global_ |= {"smtp_from": alerts.email_from, "smtp_smarthost": alerts.smarthost, "smtp_require_tls": True}
    return {
        "global": global_,
        "route": {
            "receiver": RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": f"{alerts.group_wait_seconds}s",
            "group_interval": f"{alerts.group_interval_seconds}s",
            "repeat_interval": f"{alerts.repeat_interval_minutes}m",
        },
        "inhibit_rules": INHIBIT_RULES,
        "receivers": [receiver],
    }


def render_config(topo: Topology, host: str) -> str:
    header = f"# Rendered by webinfra for {host} ({topo.name}). Do not edit: `webinfra up` rewrites it.\n"
    if not (topo.monitoring.alerts.webhook_urls or topo.monitoring.alerts.email_to):
        header += "# No route in [monitoring.alerts]: alerts are grouped and can be silenced, but sent nowhere.\n"
    return header + yaml_text(config(topo), allow_unicode=False)


def files_and_service(topo: Topology, name: str, dirs: HostDirs) -> tuple[list[FileSpec], ServiceSpec]:
    address, port = str(topo.address_of(name)), topo.monitoring.alertmanager_port
    cfg = dirs.etc / "alertmanager.yml"
    service = ServiceSpec(
        name="alertmanager",
        argv=(
            BINARY,
            f"--config.file={cfg}",
            f"--storage.path={dirs.data / 'alertmanager'}",
            f"--data.retention={RETENTION}",
            f"--web.listen-address={address}:{port}",
            "--cluster.listen-address=",  # one instance: no gossip port
            "--log.level=warn",
        ),
        probe=Probe("http", address, port, "/-/ready"),
        pidfile=dirs.run / "alertmanager.svc.pid",
        log=dirs.log / "alertmanager.log",
        configs=(cfg,),
        reload_signal="HUP",
    )
    return [FileSpec(cfg, render_config(topo, name))], service


def prometheus_alerting(topo: Topology) -> dict[str, Any]:
    """The `alerting:` section of prometheus.yml: send to Alertmanager on the monitoring host's address."""
    host = topo.monitoring_host
    assert host is not None
    target = f"{topo.address_of(host.name)}:{topo.monitoring.alertmanager_port}"
    return {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": [target]}]}]}
