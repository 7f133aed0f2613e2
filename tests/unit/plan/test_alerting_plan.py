"""Alerting in the plan: `[monitoring.alerts]` validated with one-line errors, alertmanager.yml accepted by
`amtool check-config` and routing to the topology's receivers, the new scrape targets (etcd, nginx, keepalived's
state), the new alerts firing on the series they watch (`promtool test rules`), and a runbook section for
every alert."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from topology_cases import GOOD, MON, PLAIN, hardened_with_monitoring

from testkit import REPO
from webinfra.model import Role, TopologyError, load_topology, parse_topology
from webinfra.plan.build import build_plan
from webinfra.plan.daemons import alert_rules, alertmanager, keepalived, prometheus
from webinfra.state import Layout

AMTOOL = shutil.which("amtool")
PROMTOOL = shutil.which("promtool")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool (Debian: prometheus-alertmanager) not installed")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian: prometheus) not installed")

ROUTES = """[monitoring.alerts]
webhook_urls = ["http://198.18.0.1:9999/hook", "https://hooks.example.com/T0/B0"]
email_to = ["oncall@example.com", "sre@example.org"]
email_from = "webinfra@example.com"
smarthost = "mail.example.com:587"
group_wait_seconds = 1
"""


# ---- the model ----


def test_routes_are_read_from_the_topology() -> None:
    alerts = parse_topology(PLAIN + ROUTES + GOOD + MON).monitoring.alerts
    assert alerts.webhook_urls == ("http://198.18.0.1:9999/hook", "https://hooks.example.com/T0/B0")
    assert alerts.email_to == ("oncall@example.com", "sre@example.org") and alerts.group_wait_seconds == 1


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('webhook_urls = ["ftp://x/y"]', r"monitoring\.alerts\.webhook_urls\[0\] = 'ftp://x/y': must be an http"),
        ('webhook_urls = ["http:///nohost"]', r"webhook_urls\[0\] = 'http:///nohost': must be an http"),
        ('webhook_urls = "http://x/"', r"monitoring\.alerts\.webhook_urls = 'http://x/': Input should be a valid"),
        (
            'email_to = ["not-an-address"]\nemail_from = "a@b.c"\nsmarthost = "m:25"',
            r"email_to\[0\] = 'not-an-address': must be an e-mail address",
        ),
        ('email_to = ["a@b.c"]\nsmarthost = "m:25"', r"monitoring\.alerts\.email_from: email_to needs a sender"),
        ('email_to = ["a@b.c"]\nemail_from = "a@b.c"', r"monitoring\.alerts\.smarthost: email_to needs an SMTP relay"),
        ('smarthost = "no port"', r"monitoring\.alerts\.smarthost = 'no port': String should match pattern"),
        ("group_wait_seconds = -1", r"group_wait_seconds = -1: Input should be greater than or equal to 0"),
        ('pager = "x"', r"monitoring\.alerts\.pager = 'x': unknown field"),
    ],
)
def test_bad_routes_are_one_line_errors(section: str, message: str) -> None:
    with pytest.raises(TopologyError) as err:
        parse_topology(PLAIN + "[monitoring.alerts]\n" + section + "\n" + GOOD + MON, "t.toml")
    assert "\n" not in str(err.value)
    assert re.search(message, str(err.value)), str(err.value)


def test_routes_need_a_monitoring_host() -> None:
    with pytest.raises(TopologyError, match="alert routes need a host with the 'monitoring' role"):
        parse_topology(PLAIN + '[monitoring.alerts]\nwebhook_urls = ["http://x/"]\n' + GOOD, "t.toml")


# ---- alertmanager.yml ----


def test_alertmanager_runs_on_the_monitoring_host_and_prometheus_sends_to_it() -> None:
    topo = parse_topology(PLAIN + ROUTES + GOOD + MON)
    plan = build_plan(topo, Layout(Path("/state/webinfra")), python="/usr/bin/python3")
    mon = plan.host("mon-01")
    am = mon.service("alertmanager")
    assert am.argv[0] == "prometheus-alertmanager" and "--cluster.listen-address=" in am.argv
    assert f"--web.listen-address={mon.address}:9093" in am.argv and am.reload_signal == "HUP"
    assert am.probe.path == "/-/ready" and am.configs == (mon.dirs.etc / "alertmanager.yml",)
    config = yaml.safe_load(next(f.content for f in mon.files if f.path.name == "alertmanager.yml"))
    receiver = config["receivers"][0]
    assert [w["url"] for w in receiver["webhook_configs"]] == list(topo.monitoring.alerts.webhook_urls)
    assert receiver["email_configs"] == [{"to": "oncall@example.com, sre@example.org", "send_resolved": True}]
    assert config["global"]["smtp_smarthost"] == "mail.example.com:587"
    assert config["route"]["group_wait"] == "1s" and config["route"]["group_by"] == ["cluster", "alertname"]
    host_down = config["inhibit_rules"][0]
    assert host_down == {
        "source_matchers": ["alertname=HostDown"],
        "target_matchers": ["alertname!=HostDown"],
        "equal": ["host"],
    }
    assert alertmanager.url(topo) == f"http://{mon.address}:9093/"


@needs_amtool
@pytest.mark.parametrize("routes", ["", ROUTES], ids=["no-route", "webhooks-and-email"])
def test_amtool_accepts_the_config_and_routes_to_the_receiver(routes: str, tmp_path: Path) -> None:
    topo = parse_topology(PLAIN + routes + GOOD + MON)
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager.render_config(topo, "mon-01"))
    proc = subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    routed = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={path}", "alertname=HostDown", "host=web-01"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert routed.returncode == 0 and routed.stdout.strip() == alertmanager.RECEIVER, routed.stdout + routed.stderr


# ---- the new scrape targets ----


def test_etcd_nginx_and_keepalived_are_scraped_in_the_hardened_design() -> None:
    topo = parse_topology(hardened_with_monitoring())
    jobs = {(t.job, t.host, t.address.rsplit(":", 1)[1]) for t in prometheus.targets(topo)}
    etcd_port = str(prometheus.etcd_metrics_port(topo))
    members = [h.name for h in topo.with_role(Role.ETCD)]
    assert len(members) == 3 and {("etcd", h, etcd_port) for h in members} <= jobs
    assert {("nginx", h, "9113") for h in ("web-01", "web-02")} <= jobs
    assert {("dbproxy", h, "8406") for h in ("web-01", "web-02")} <= jobs
    plan = build_plan(topo, Layout(Path("/state/webinfra")), python="/usr/bin/python3")
    lb = plan.host("lb-01")
    node = lb.service("node-exporter")
    assert f"--collector.textfile.directory={lb.dirs.run}" in node.argv
    assert "--collector.textfile" not in plan.host("web-01").service("node-exporter").argv  # no keepalived there
    keepalived = next(f.content for f in lb.files if f.path.name == "keepalived.conf")
    notify = lb.dirs.etc / "keepalived-notify.sh"
    assert f'notify "{notify}"' in keepalived and f'notify_stop "{notify} INSTANCE site STOP 0"' in keepalived
    assert notify in lb.service("keepalived").configs
    nginx = next(f.content for f in plan.host("web-01").files if f.path.name == "nginx.conf")
    assert "listen 127.0.0.1:8081;" in nginx and "location = /stub_status {\n            stub_status;" in nginx


def test_the_keepalived_notify_script_writes_a_textfile_node_exporter_reads(tmp_path: Path) -> None:
    topo = parse_topology(hardened_with_monitoring())
    dirs = Layout.for_cluster(topo.name, tmp_path).host("lb-01")
    dirs.run.mkdir(parents=True)
    spec = keepalived.keepalived_notify_file(topo, "lb-01", dirs)
    assert spec is not None
    script = tmp_path / "notify.sh"
    script.write_text(spec.content)
    subprocess.run(["sh", str(script), "INSTANCE", "site", "FAULT", "0"], check=True, timeout=10)
    text = (dirs.run / keepalived.KEEPALIVED_TEXTFILE).read_text()
    assert 'keepalived_vrrp_state{vrrp_instance="site",state="FAULT"} 1' in text
    assert 'keepalived_vrrp_state{vrrp_instance="site",state="MASTER"} 0' in text
    if PROMTOOL:
        proc = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_firewall_lets_the_monitoring_host_reach_the_new_exporters() -> None:
    topo = parse_topology(hardened_with_monitoring().replace("firewall = false\n", ""))
    flows = {f.dest: f for f in prometheus.flows(topo)}
    assert 9113 in flows["web-01"].ports
    for member in (h.name for h in topo.with_role(Role.ETCD)):
        assert prometheus.etcd_metrics_port(topo) in flows[member].ports
    assert flows["mon-01"].ports == (9090, 9093)


# ---- the rules ----


def every_alert_name() -> set[str]:
    """Every alert any topology can have: HA, an LB pair and TLS turn all of them on."""
    topo = parse_topology(hardened_with_monitoring().replace("firewall = false\n", "") + "\n[tls]\nenabled = true\n")
    return {a.name for a in alert_rules.alerts(topo)}


def test_every_alert_links_to_its_runbook_section() -> None:
    runbook = (REPO / "docs" / "RUNBOOK.md").read_text()
    sections = {m.lower() for m in re.findall(r"^## (\w+)$", runbook, flags=re.M)}
    names = every_alert_name()
    assert {"DbNoLeader", "SemiSyncFallback", "EtcdNoQuorum", "DiskFilling", "CertificateExpiringSoon"} <= names
    assert {n.lower() for n in names} <= sections, {n for n in names if n.lower() not in sections}
    topo = load_topology(None)
    for rule in alert_rules.alert_rules(topo):
        assert rule["annotations"]["runbook_url"] == f"docs/RUNBOOK.md#{rule['alert'].lower()}"
    custom = parse_topology(PLAIN + '[monitoring]\nrunbook_url = "https://wiki.example.com/rb"\n' + GOOD + MON)
    assert alert_rules.alert_rules(custom)[0]["annotations"]["runbook_url"] == "https://wiki.example.com/rb#hostdown"


def test_new_alerts_wait_long_enough_not_to_page_on_a_normal_failover() -> None:
    topo = parse_topology(hardened_with_monitoring())
    fors = {a.name: a.for_s for a in alert_rules.alerts(topo)}
    assert fors["DbNoLeader"] >= 15 and fors["EtcdMemberDown"] >= 20 and fors["DiskFilling"] >= 300
    assert all(fors[n] >= 10 for n in ("DbTwoLeaders", "SemiSyncFallback", "EtcdNoQuorum", "VipNotHeld"))


@needs_promtool
def test_promtool_accepts_every_rule(tmp_path: Path) -> None:
    topo = parse_topology(hardened_with_monitoring() + "\n[tls]\nenabled = true\n")
    path = tmp_path / "rules.yml"
    path.write_text(alert_rules.render_alert_rules(topo))
    proc = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_the_new_alerts_fire_on_the_series_they_watch(tmp_path: Path) -> None:
    topo = parse_topology(hardened_with_monitoring() + "\n[tls]\nenabled = true\n")
    rules = tmp_path / "rules.yml"
    rules.write_text(alert_rules.render_alert_rules(topo))
    tests = tmp_path / "tests.yml"
    tests.write_text((Path(__file__).parent / "alert_rule_tests.yml").read_text().replace("RULES", str(rules)))
    proc = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
