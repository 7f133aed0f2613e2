"""The firewall on servers: every server's ruleset admits the management machine's SSH (from
`[machines] management`, or from where `up`'s SSH connections come), on the configured SSH port, and only on
servers; the emulated rulesets do not change (tests/unit/test_rendered_golden.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from testkit import EXAMPLES
from webinfra.control.cluster import UsageError
from webinfra.model import TopologyError, parse_topology
from webinfra.model.relocate import seed_text
from webinfra.plan.daemons.firewall import ruleset
from webinfra.servers.run import with_management

SERVERS = (EXAMPLES / "servers.toml").read_text()
RULE = 'tcp dport {port} accept comment "management -> ssh"'


def servers(management: str = "", lb_port: int = 22) -> str:
    text = SERVERS.replace('key = "~/.ssh/webinfra"\n', "")
    text = text.replace("\nkind = ", f"\n{management}\nkind = ")  # the example keeps the default firewall
    return text.replace('ssh = "admin@10.20.0.10:22"', f'ssh = "admin@10.20.0.10:{lb_port}"')


def rule_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "management -> ssh" in line]


def test_every_server_admits_the_management_ssh_on_its_port_first() -> None:
    topo = parse_topology(servers('management = ["203.0.113.5", "10.99.0.0/16"]', lb_port=2222), "s.toml")
    for host in topo.hosts:
        text = ruleset(topo, host.name)
        port = 2222 if host.name == "lb-01" else 22
        assert rule_lines(text) == ["ip saddr { 203.0.113.5/32, 10.99.0.0/16 } " + RULE.format(port=port)]
        # Before every flow of the cluster: the first accept after the fixed lines.
        accepts = [line.strip() for line in text.splitlines() if "accept comment" in line and "ip saddr" in line]
        assert "management -> ssh" in accepts[1], accepts  # [0] is the ping from the subnet


def test_unknown_management_admits_ssh_from_anywhere_rather_than_lock_out() -> None:
    topo = parse_topology(servers(), "s.toml")
    assert rule_lines(ruleset(topo, "web-01")) == [RULE.format(port=22)]


def test_up_derives_management_from_the_ssh_connections_or_refuses_a_lockout() -> None:
    said: list[str] = []
    topo = parse_topology(servers(), "s.toml")
    sources = {h.name: "10.20.0.1" for h in topo.hosts}
    derived = with_management(topo, sources, lambda host, step, line: said.append(line))
    assert [str(n) for n in derived.machines.management] == ["10.20.0.1/32"]
    assert rule_lines(ruleset(derived, "web-02")) == ["ip saddr 10.20.0.1/32 " + RULE.format(port=22)]
    assert said == ["management SSH admitted from 10.20.0.1/32 (derived)"]
    given = parse_topology(servers('management = ["10.20.0.0/28"]'), "s.toml")
    assert with_management(given, sources, lambda *a: None) is given
    with pytest.raises(UsageError, match=r"does not cover where SSH comes from: web-01 \(from 10.9.9.9\)"):
        with_management(given, {**sources, "web-01": "10.9.9.9"}, lambda *a: None)
    # Without the firewall nothing is derived or checked.
    off = parse_topology(servers().replace('name = "srv"', 'name = "srv"\nfirewall = false'), "s.toml")
    assert with_management(off, {"lb-01": "10.9.9.9"}, lambda *a: None) is off


def test_emulated_rulesets_have_no_ssh_rule_and_management_needs_ssh() -> None:
    seed = parse_topology(seed_text().replace("firewall = false", "firewall = true"), "seed.toml")
    assert all(not rule_lines(ruleset(seed, h.name)) for h in seed.hosts)
    bad = seed_text() + '\n[machines]\nmanagement = ["10.0.0.1"]\n'
    with pytest.raises(TopologyError, match=r"machines\.management"):
        parse_topology(bad, "seed.toml")
    with pytest.raises(TopologyError, match=r"machines\.management"):
        parse_topology(servers("management = [5]"), "s.toml")


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_the_server_ruleset_is_valid_nftables(tmp_path: Path) -> None:
    topo = parse_topology(servers('management = ["203.0.113.5"]'), "s.toml")
    path = tmp_path / "rules.nft"
    path.write_text(ruleset(topo, "web-01"))
    result = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    if "Operation not permitted" in result.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert result.returncode == 0, result.stderr


def test_the_hardened_design_on_servers_holds_its_agents_and_stops_mariadb_through_systemd() -> None:
    import json

    from webinfra.plan.build import build_plan
    from webinfra.servers import units
    from webinfra.state import ServerLayout

    topo = parse_topology(servers(), "s.toml")
    plan = build_plan(topo, ServerLayout(), f"{units.RELEASES}/abc/bin/python")
    agent = json.loads(next(f.content for f in plan.host("web-01").files if f.path.name == "agent.json"))
    assert agent["mariadb_control"]["stop"] == ["systemctl", "stop", "webinfra-mariadb.service"]
    assert units.packages(plan.host("lb-01"), firewall=True) == [
        "etcd-server",
        "haproxy",
        "iproute2",
        "keepalived",
        "netbase",
        "nftables",
        "prometheus-node-exporter",  # every server's exporter: the example has a monitoring host
        "python3",
    ]
    assert "mariadb-backup" in units.packages(plan.host("web-01"), firewall=True)
    assert units.users(plan.host("etcd-01")) == ["etcd", "prometheus", "webinfra"]  # and the monitoring host
