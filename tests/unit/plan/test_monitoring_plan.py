"""Monitoring in the plan: which exporters each host runs, prometheus.yml scraping every target by address,
alert rules that `promtool` accepts and that fire as meant (`promtool test rules`), HAProxy's exporter
frontend, the model's rules for the role, and the firewall flows monitoring needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from topology_cases import GOOD, MON, PLAIN, hardened_with_monitoring, host

from webinfra.model import Role, TopologyError, load_topology, parse_topology
from webinfra.model.topology import listeners
from webinfra.plan.build import build_plan
from webinfra.plan.daemons import alert_rules, prometheus
from webinfra.plan.daemons.haproxy import render_haproxy
from webinfra.state import Layout

PROMTOOL = shutil.which("promtool")
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian: prometheus) not installed")


def services(plan, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [s.name for s in plan.host(name).services]


def write_plan(topo, root: Path):  # type: ignore[no-untyped-def]
    plan = build_plan(topo, Layout.for_cluster(topo.name, root), python="/usr/bin/python3")
    for hp in plan.hosts:
        for f in hp.files:
            f.path.parent.mkdir(parents=True, exist_ok=True)
            f.path.write_text(f.content)
    return plan


# ---- model ----


def test_the_default_topology_has_a_monitoring_host() -> None:
    topo = load_topology(None)
    assert topo.monitoring_host is not None and topo.monitoring_host.name == "mon-01"
    assert str(topo.address_of("mon-01")) == "198.18.0.14"  # after the others: nobody is renumbered


def test_at_most_one_monitoring_host() -> None:
    with pytest.raises(TopologyError, match="at most one host may have the 'monitoring' role"):
        parse_topology(GOOD + MON + host("mon-02", "monitoring"), "t.toml")


def test_exporter_ports_take_part_in_the_port_clash_check() -> None:
    topo = parse_topology(PLAIN + GOOD + MON)
    ports = {h.name: dict(listeners(topo, h)) for h in topo.hosts}
    assert ports["lb-01"]["haproxy-metrics"] == 8405 and ports["lb-01"]["node-exporter"] == 9100
    assert ports["web-01"]["mysqld-exporter"] == 9104
    assert ports["mon-01"]["prometheus"] == 9090 and ports["mon-01"]["monitor"] == 9107
    assert ports["mon-01"]["alertmanager"] == 9093
    assert ports["web-01"]["nginx-exporter"] == 9113 and ports["web-01"]["nginx-status"] == 8081
    with pytest.raises(TopologyError, match="would listen on port 8000"):
        parse_topology(PLAIN + "[monitoring]\nnode_exporter_port = 8000\n" + GOOD + MON, "t.toml")


def test_without_a_monitoring_host_nothing_changes() -> None:
    topo = parse_topology(PLAIN + GOOD)
    assert all(name not in dict(listeners(topo, h)) for h in topo.hosts for name in ("node-exporter", "prometheus"))
    plan = build_plan(topo, Layout(Path("/state/webinfra")), python="/usr/bin/python3")
    assert {s.name for hp in plan.hosts for s in hp.services} == {"mariadb", "app", "nginx", "haproxy"}
    assert "frontend metrics" not in render_haproxy(topo, Layout(Path("/state/webinfra")), "lb-01")
    assert prometheus.targets(topo) == [] and prometheus.flows(topo) == []


# ---- services ----


def test_exporters_run_where_their_daemon_does() -> None:
    topo = parse_topology(PLAIN + GOOD + MON)
    plan = build_plan(topo, Layout(Path("/state/webinfra")), python="/usr/bin/python3")
    assert services(plan, "lb-01") == ["haproxy", "node-exporter"]
    assert services(plan, "web-01") == [
        "mariadb",
        "app",
        "nginx",
        "node-exporter",
        "mysqld-exporter",
        "nginx-exporter",
    ]
    assert services(plan, "mon-01") == ["node-exporter", "alertmanager", "prometheus", "monitor"]
    order = [(h.name, s.name) for h, s in plan.start_order()]
    # An exporter starts after the daemon it reads; Prometheus and the watcher last.
    assert order.index(("web-01", "mysqld-exporter")) > order.index(("web-02", "mariadb"))
    assert order[-2:] == [("mon-01", "prometheus"), ("mon-01", "monitor")]
    for hp in plan.hosts:
        for svc in hp.services:
            assert svc.probe.address == hp.address  # everything listens on the host's own address
    mysqld = plan.host("web-01").service("mysqld-exporter")
    assert f"--config.my-cnf={plan.host('web-01').dirs.etc / 'mysqld-exporter.cnf'}" in mysqld.argv
    assert not any("password" in arg for arg in mysqld.argv)  # the secret is in a 0600 file, not argv
    prom = plan.host("mon-01").service("prometheus")
    assert "--storage.tsdb.retention.time=2d" in prom.argv and prom.reload_signal == "HUP"
    assert prom.probe.path == "/-/ready"


def test_several_app_workers_share_their_metrics_through_files() -> None:
    one = build_plan(parse_topology(PLAIN + GOOD), Layout(Path("/s/w")), python="/usr/bin/python3")
    four = build_plan(parse_topology(PLAIN + "[app]\nworkers = 4\n" + GOOD), Layout(Path("/s/w")), python="/p")
    assert "WEBINFRA_METRICS_DIR" not in dict(one.host("web-01").service("app").env)
    assert dict(four.host("web-01").service("app").env)["WEBINFRA_METRICS_DIR"] == "/s/w/hosts/web-01/tmp/app-metrics"


# ---- prometheus.yml ----


def test_prometheus_scrapes_every_exporter_by_address() -> None:
    topo = parse_topology(PLAIN + GOOD + MON)
    config = yaml.safe_load(prometheus.render_prometheus_config(topo, "mon-01", "/x/rules.yml"))
    assert config["global"]["scrape_interval"] == "2s"
    assert config["rule_files"] == ["/x/rules.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [
        {"targets": [f"{topo.address_of('mon-01')}:9093"]}
    ]
    scraped = {
        (job["job_name"], sc["labels"]["host"], sc["targets"][0])
        for job in config["scrape_configs"]
        for sc in job["static_configs"]
    }
    a = {h.name: str(topo.address_of(h.name)) for h in topo.hosts}
    expected = {("node", h, f"{a[h]}:9100") for h in a}
    expected |= {("haproxy", "lb-01", f"{a['lb-01']}:8405")}
    expected |= {("site", h, f"{a[h]}:8000") for h in ("web-01", "web-02")}
    expected |= {("mysqld", h, f"{a[h]}:9104") for h in ("web-01", "web-02")}
    expected |= {("nginx", h, f"{a[h]}:9113") for h in ("web-01", "web-02")}
    expected |= {("prometheus", "mon-01", f"{a['mon-01']}:9090"), ("webinfra", "mon-01", f"{a['mon-01']}:9107")}
    expected |= {("alertmanager", "mon-01", f"{a['mon-01']}:9093")}
    assert scraped == expected


def test_the_hardened_design_also_scrapes_the_agents_and_the_db_routing() -> None:
    topo = parse_topology(hardened_with_monitoring())
    jobs = {(t.job, t.host) for t in prometheus.targets(topo)}
    assert {("agent", "web-01"), ("agent", "web-02"), ("dbproxy", "web-01"), ("haproxy", "lb-02")} <= jobs
    names = [r["alert"] for r in alert_rules.alert_rules(topo)]
    assert "VipMoved" in names and "FailoverHappened" in names


@needs_promtool
@pytest.mark.parametrize("case", ["default", "hardened", "tls"])
def test_promtool_accepts_the_config_and_the_rules(case: str, tmp_path: Path) -> None:
    text = {
        "default": None,
        "hardened": hardened_with_monitoring(),
        "tls": GOOD + MON,  # TLS and the firewall on (the model's defaults)
    }[case]
    topo = load_topology(None) if text is None else parse_topology(text)
    plan = write_plan(topo, tmp_path)
    etc = plan.host("mon-01").dirs.etc
    for argv in (["check", "config", str(etc / "prometheus.yml")], ["check", "rules", str(etc / "alert-rules.yml")]):
        proc = subprocess.run([PROMTOOL, *argv], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [r["alert"] for r in alert_rules.alert_rules(topo)]
    assert ("CertificateExpiringSoon" in names) == topo.tls.enabled  # only where there are certificates


# ---- the rules fire as meant ----

RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 2s
tests:
  - interval: 2s
    input_series:
      - series: 'up{{job="site",host="web-02",instance="198.18.0.12:8000"}}'
        values: '1 1 0 0 0 0 0 0'
      - series: 'up{{job="node",host="web-02",instance="198.18.0.12:9100"}}'
        values: '1 1 1 1 1 1 1 1'
      - series: 'haproxy_server_status{{job="haproxy",host="lb-01",proxy="site",server="web-02",state="DOWN"}}'
        values: '0 0 1 1 1 1 1 1'
      - series: 'mysql_slave_status_slave_sql_running{{job="mysqld",host="web-02",master_host="198.18.0.11"}}'
        values: '1 1 1 1 1 1 1 1'
      - series: 'mysql_slave_status_seconds_behind_master{{job="mysqld",host="web-02",master_host="198.18.0.11"}}'
        values: '0 0 9 9 9 9 9 9'
      - series: 'webinfra_primary_changes_total{{job="webinfra",host="mon-01"}}'
        values: '0 0 0 1 1 1 1 1'
    alert_rule_test:
      - eval_time: 2s
        alertname: InstanceDown
        exp_alerts: []
      - eval_time: 12s
        alertname: InstanceDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: site, host: web-02, instance: "198.18.0.12:8000"}}
            exp_annotations:
              summary: "site on web-02 (198.18.0.12:8000) does not answer scrapes"
              runbook_url: "docs/RUNBOOK.md#instancedown"
      - eval_time: 12s
        alertname: HostDown
        exp_alerts: []
      - eval_time: 12s
        alertname: BackendDown
        exp_alerts:
          - exp_labels:
              {{severity: critical, job: haproxy, host: web-02, lb: lb-01, proxy: site, server: web-02, state: DOWN}}
            exp_annotations:
              summary: "backend web-02 is down (health checks of lb-01)"
              runbook_url: "docs/RUNBOOK.md#backenddown"
      - eval_time: 12s
        alertname: ReplicationBroken
        exp_alerts: []
      - eval_time: 12s
        alertname: ReplicationLag
        exp_alerts:
          - exp_labels: {{severity: warning, job: mysqld, host: web-02, master_host: "198.18.0.11"}}
            exp_annotations:
              summary: "web-02 is 9s behind its primary"
              runbook_url: "docs/RUNBOOK.md#replicationlag"
      - eval_time: 10s
        alertname: FailoverHappened
        exp_alerts:
          - exp_labels: {{severity: warning, job: webinfra, host: mon-01}}
            exp_annotations:
              summary: "the primary database changed in the last 5 minutes (see `webinfra events`)"
              runbook_url: "docs/RUNBOOK.md#failoverhappened"
"""


@needs_promtool
def test_the_rules_fire_on_the_series_they_watch(tmp_path: Path) -> None:
    topo = parse_topology(PLAIN + GOOD + MON)
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules.render_alert_rules(topo))
    tests = tmp_path / "tests.yml"
    tests.write_text(RULE_TESTS.format(rules=rules))
    proc = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_bounds_come_from_the_topology() -> None:
    section = "[monitoring]\ndown_after_seconds = 15\nmax_replication_lag_seconds = 2.5\nmax_p99_seconds = 0.25\n"
    rules = {r["alert"]: r for r in alert_rules.alert_rules(parse_topology(PLAIN + section + GOOD + MON))}
    assert rules["InstanceDown"]["for"] == "15s" and rules["BackendDown"]["for"] == "15s"
    assert rules["ReplicationLag"]["expr"].endswith("> 2.5")
    assert rules["HighLatencyP99"]["expr"].endswith("> 0.25")


# ---- HAProxy's exporter ----


def test_haproxy_exports_metrics_on_its_own_address_and_denies_them_publicly(tmp_path: Path) -> None:
    topo = parse_topology(PLAIN + GOOD + MON)
    cfg = render_haproxy(topo, Layout.for_cluster(topo.name, tmp_path), "lb-01")
    metrics = cfg.split("frontend metrics", 1)[1]
    assert f"bind {topo.address_of('lb-01')}:8405" in metrics
    assert "http-request use-service prometheus-exporter if { path /metrics }" in metrics
    site = cfg.split("frontend site", 1)[1].split("backend site", 1)[0]
    assert "http-request deny if { path_beg /metrics }" in site
    if HAPROXY:
        plan = write_plan(topo, tmp_path)
        lb = plan.host("lb-01")
        lb.dirs.data.mkdir(parents=True, exist_ok=True)
        (lb.dirs.data / "haproxy-server-state").write_text("1\n")
        lb.dirs.sockets.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([HAPROXY, "-c", "-f", str(lb.dirs.etc / "haproxy.cfg")], capture_output=True, text=True)
        assert proc.returncode == 0 and "WARNING" not in proc.stderr, proc.stderr


def test_dbproxy_exports_metrics_too() -> None:
    topo = parse_topology(hardened_with_monitoring())
    plan = build_plan(topo, Layout(Path("/state/webinfra")), python="/usr/bin/python3")
    text = next(f.content for f in plan.host("web-01").files if f.path.name == "dbproxy.cfg")
    assert f"bind {topo.address_of('web-01')}:8406" in text and "prometheus-exporter" in text


# ---- firewall ----


def test_flows_let_the_monitoring_host_reach_each_exporter() -> None:
    topo = parse_topology(GOOD + MON)  # firewall on
    mon = str(topo.address_of("mon-01"))
    flows = {f.dest: f for f in prometheus.flows(topo)}
    assert flows["lb-01"].sources == (mon,) and set(flows["lb-01"].ports) == {9100, 8405}
    assert set(flows["web-01"].ports) == {9100, 8000, 9104, 9113}
    assert flows["mon-01"].sources == (str(topo.gateway),) and flows["mon-01"].ports == (9090, 9093)
    assert all(f.dest != "mon-01" or f.sources == (str(topo.gateway),) for f in prometheus.flows(topo))
    assert Role.MONITORING.value == "monitoring"
