"""The alert rules Prometheus evaluates (rendered into `alert-rules.yml` on the monitoring host). Pure.

Each rule comes from the topology: only the alerts for what it runs (HA, an LB pair, TLS), with the bounds of
`[monitoring]`. Every alert carries a `severity` label, a one-line `summary` and a `runbook_url` pointing at its
section of docs/RUNBOOK.md (what it means, what to check, which webinfra command fixes it).

Labels the routing relies on (plan/daemons/alertmanager.py): `host` always names the host the alert is about, so that
Alertmanager's inhibition "a host that is down silences the alerts about its services" can match on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webinfra.model import Topology
from webinfra.plan.render import yaml_text

# Seconds. Conditions that come and go in a normal failover (a few seconds without a leader, an etcd election)
# must hold for longer than that before they page anyone.
NO_LEADER_FOR = 15
TWO_LEADERS_FOR = 10
SEMI_SYNC_FALLBACK_FOR = 10
ETCD_MEMBER_DOWN_FOR = 20
ETCD_NO_QUORUM_FOR = 10
KEEPALIVED_FAULT_FOR = 15
VIP_NOT_HELD_FOR = 10
DISK_FOR = 300
FLAPPING_WINDOW = "15m"
FLAPPING_CHANGES = 3  # etcd leader changes in FLAPPING_WINDOW
FENCED_WINDOW = "10m"  # FencingHappened stays firing this long after a fence


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_s: float
    severity: str
    summary: str

    def rule(self, runbook: str) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_s > 0:
            rule["for"] = f"{self.for_s:g}s"
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {"summary": self.summary, "runbook_url": f"{runbook}#{self.name.lower()}"}
        return rule


SITE_LB = 'job="haproxy",proxy="site"'


def _service_alerts(topo: Topology) -> list[Alert]:
    mon = topo.monitoring
    down = mon.down_after_seconds
    # HAProxy reports a backend under the LB's `host`: the rule moves that to `lb` and names the web server
    # `host`, the host the alert is about.
    backend_down = (
        f'label_replace(label_replace(haproxy_server_status{{{SITE_LB},state="DOWN"}} == 1, '
        '"lb", "$1", "host", "(.*)"), "host", "$1", "server", "(.*)")'
    )
    return [
        Alert(
            "HostDown",
            "max by (host) (up) == 0",
            down,
            "critical",
            "{{ $labels.host }} is down: none of its exporters answers",
        ),
        Alert(
            "InstanceDown",
            'up{job!="etcd"} == 0',
            down,
            "critical",
            "{{ $labels.job }} on {{ $labels.host }} ({{ $labels.instance }}) does not answer scrapes",
        ),
        Alert(
            "BackendDown",
            backend_down,
            down,
            "critical",
            "backend {{ $labels.server }} is down (health checks of {{ $labels.lb }})",
        ),
        Alert(
            "SiteDown",
            f"sum by (host) (haproxy_backend_active_servers{{{SITE_LB}}})"
            f" + sum by (host) (haproxy_backend_backup_servers{{{SITE_LB}}}) == 0",
            down,
            "critical",
            "no backend of {{ $labels.host }} is up: the site answers 503",
        ),
        Alert("MysqlDown", "mysql_up == 0", down, "critical", "MariaDB on {{ $labels.host }} does not answer"),
        Alert(
            "ReplicationBroken",
            "mysql_slave_status_slave_io_running == 0 or mysql_slave_status_slave_sql_running == 0",
            down,
            "critical",
            "replication on {{ $labels.host }} is stopped (from {{ $labels.master_host }})",
        ),
        Alert(
            "ReplicationLag",
            f"mysql_slave_status_seconds_behind_master > {mon.max_replication_lag_seconds:g}",
            down,
            "warning",
            "{{ $labels.host }} is {{ $value }}s behind its primary",
        ),
        Alert(
            "FailoverHappened",
            "increase(webinfra_primary_changes_total[5m]) > 0",
            0,
            "warning",
            "the primary database changed in the last 5 minutes (see `webinfra events`)",
        ),
        Alert(
            "HighErrorRate",
            f'sum by (host) (rate(haproxy_frontend_http_responses_total{{{SITE_LB},code="5xx"}}[1m]))'
            f" / sum by (host) (rate(haproxy_frontend_http_requests_total{{{SITE_LB}}}[1m]))"
            f" > {mon.max_error_ratio:g}",
            10,
            "warning",
            "{{ $value | humanizePercentage }} of the site's answers through {{ $labels.host }} are 5xx",
        ),
        Alert(
            "HighLatencyP99",
            "histogram_quantile(0.99, sum by (host, le) "
            '(rate(site_request_duration_seconds_bucket{route!="/healthz"}[1m])))'
            f" > {mon.max_p99_seconds:g}",
            10,
            "warning",
            "p99 latency of the app on {{ $labels.host }} is {{ $value | humanizeDuration }}",
        ),
        Alert(
            "DiskFilling",
            '(node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|squashfs|nsfs|overlay"}'
            ' / node_filesystem_size_bytes{fstype!~"tmpfs|ramfs|squashfs|nsfs|overlay"})'
            f" < {mon.min_disk_free_ratio:g} and node_filesystem_readonly == 0",
            DISK_FOR,
            "warning",
            "{{ $labels.mountpoint }} on {{ $labels.host }} has {{ $value | humanizePercentage }} free",
        ),
    ]


# A leader is an agent that holds the lease AND renewed it recently: an agent cut off from etcd keeps believing it
# holds the lease (agent_is_leader 1) while it fences itself; counting it would hide the missing leader.
LEADERS = "sum(agent_is_leader * agent_lease_fresh)"


def _ha_alerts() -> list[Alert]:
    """The HA database (agents with a leader lease in etcd)."""
    return [
        Alert(
            "DbNoLeader",
            f"({LEADERS} or vector(0)) < 1",
            NO_LEADER_FOR,
            "critical",
            "no DB agent holds the leader lease: writes fail",
        ),
        Alert(
            "DbTwoLeaders",
            f"{LEADERS} > 1",
            TWO_LEADERS_FOR,
            "critical",
            "{{ $value }} DB agents say they hold the leader lease",
        ),
        Alert(
            "SemiSyncFallback",
            'agent_semi_sync{state="fallback"} == 1',
            SEMI_SYNC_FALLBACK_FOR,
            "critical",
            "the primary on {{ $labels.host }} replicates asynchronously: acknowledged writes are at risk",
        ),
        Alert(
            "FencingHappened",
            f"max_over_time(agent_fenced[{FENCED_WINDOW}]) == 1",
            0,
            "warning",
            f"the agent on {{{{ $labels.host }}}} fenced its MariaDB in the last {FENCED_WINDOW}",
        ),
        Alert(
            "EtcdMemberDown",
            'up{job="etcd"} == 0',
            ETCD_MEMBER_DOWN_FOR,
            "warning",
            "etcd on {{ $labels.host }} does not answer (the others still hold quorum unless EtcdNoQuorum fires)",
        ),
        Alert(
            "EtcdNoQuorum",
            'sum(up{job="etcd"}) < (count(up{job="etcd"}) + 1) / 2 or max(etcd_server_has_leader) == 0',
            ETCD_NO_QUORUM_FOR,
            "critical",
            "etcd has no quorum: no DB agent can renew or take the leader lease",
        ),
        Alert(
            "EtcdLeaderFlapping",
            f"max(increase(etcd_server_leader_changes_seen_total[{FLAPPING_WINDOW}])) > {FLAPPING_CHANGES}",
            0,
            "warning",
            f"etcd changed its leader more than {FLAPPING_CHANGES} times in {FLAPPING_WINDOW}",
        ),
    ]


def _lb_pair_alerts() -> list[Alert]:
    return [
        Alert(
            "VipMoved",
            "increase(webinfra_vip_moves_total[5m]) > 0",
            0,
            "warning",
            "the site's virtual IP moved to another load balancer in the last 5 minutes",
        ),
        Alert(
            "VipNotHeld",
            "sum(webinfra_vip_holder) != 1",
            VIP_NOT_HELD_FOR,
            "critical",
            "{{ $value }} load balancers hold the site's virtual IP (must be exactly 1)",
        ),
        Alert(
            "KeepalivedFault",
            'keepalived_vrrp_state{state="FAULT"} == 1',
            KEEPALIVED_FAULT_FOR,
            "warning",
            "keepalived on {{ $labels.host }} is in FAULT (its HAProxy check fails): it cannot take the VIP",
        ),
    ]


def alerts(topo: Topology) -> list[Alert]:
    """The alerts of this topology (docs/MONITORING.md lists them, docs/RUNBOOK.md explains each)."""
    out = _service_alerts(topo)
    if topo.ha:
        out += _ha_alerts()
    if topo.lb_pair:
        out += _lb_pair_alerts()
    if topo.tls.enabled:
        # Only with TLS: the watcher exports the certificates' expiry (webinfra_cert_not_after_seconds);
        # `cert` is "ca", "site" or the name of the host the certificate belongs to.
        out.append(
            Alert(
                "CertificateExpiringSoon",
                f"webinfra_cert_not_after_seconds - time() < {topo.monitoring.cert_expiry_days * 86400}",
                0,
                "warning",
                "certificate {{ $labels.cert }} expires in {{ $value | humanizeDuration }}",
            )
        )
    return out


def alert_rules(topo: Topology) -> list[dict[str, Any]]:
    runbook = topo.monitoring.runbook_url
    return [a.rule(runbook) for a in alerts(topo)]


def render_alert_rules(topo: Topology) -> str:
    header = f"# Rendered by webinfra ({topo.name}). Do not edit: `webinfra up` rewrites it.\n"
    return header + yaml_text({"groups": [{"name": "webinfra", "rules": alert_rules(topo)}]})
