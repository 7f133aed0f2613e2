"""etcd's rendered command line and the agents' etcd settings: TLS for clients and peers with each member's
own certificate (peers must show one from the cluster's CA), no loopback listener, metrics on a plain-HTTP
port of their own, auth credentials for the agents; plain and anonymous only when [tls] is off. Pure."""

from __future__ import annotations

import json
from pathlib import Path

from testkit import EXAMPLES
from webinfra.agent.config import AgentConfig
from webinfra.model import Role, Topology, load_topology, parse_topology
from webinfra.plan.build import build_plan
from webinfra.plan.daemons.etcd import ETCD_AGENT_SECRET, ETCD_AGENT_USER, etcd_endpoints
from webinfra.plan.spec import ClusterPlan
from webinfra.state import Layout


def _plan(topo: Topology, tmp_path: Path) -> ClusterPlan:
    return build_plan(topo, Layout.for_cluster(topo.name, tmp_path), python="/usr/bin/python3")


def _flags(argv: tuple[str, ...]) -> dict[str, str]:
    """etcd's `--flag value` pairs (a flag followed by another flag, or last, maps to "")."""
    out: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            out[arg] = "" if nxt.startswith("--") else nxt
    return out


def test_members_speak_tls_with_their_own_certificate_only(tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / "hardened.toml")
    plan = _plan(topo, tmp_path)
    layout = plan.layout
    members = [h.name for h in topo.with_role(Role.ETCD)]
    assert members == ["lb-01", "lb-02", "etcd-01"]
    for name in members:
        argv = plan.host(name).service("etcd").argv
        flags = _flags(argv)
        address = str(topo.address_of(name))
        assert flags["--listen-client-urls"] == f"https://{address}:2379"  # no loopback listener
        assert flags["--advertise-client-urls"] == f"https://{address}:2379"
        assert flags["--listen-peer-urls"] == flags["--initial-advertise-peer-urls"] == f"https://{address}:2380"
        assert flags["--listen-metrics-urls"] == f"http://{address}:2381"
        assert all(url.split("=", 1)[1].startswith("https://") for url in flags["--initial-cluster"].split(","))
        assert flags["--cert-file"] == flags["--peer-cert-file"] == str(layout.host_cert(name))
        assert flags["--key-file"] == flags["--peer-key-file"] == str(layout.host_key(name))
        assert flags["--peer-trusted-ca-file"] == str(layout.ca_cert)
        assert "--peer-client-cert-auth" in flags
        assert "127.0.0.1" not in " ".join(argv)
        # Each member's command line names its own key and no other host's.
        assert [a for a in argv if a.endswith(".key")] == [str(layout.host_key(name))] * 2


def test_agents_log_in_over_https_with_the_ca(tmp_path: Path) -> None:
    topo = load_topology(None)
    plan = _plan(topo, tmp_path)
    for spec in topo.with_role(Role.DB):
        agent_file = next(f for f in plan.host(spec.name).files if f.path.name == "agent.json")
        config = AgentConfig.model_validate(json.loads(agent_file.content))
        assert config.etcd_endpoints == [
            "https://198.18.0.10:2379",
            "https://198.18.0.11:2379",
            "https://198.18.0.14:2379",
        ]
        assert config.etcd_ca_file == plan.layout.ca_cert
        assert config.etcd_user == ETCD_AGENT_USER
        assert config.etcd_password_file == plan.layout.secret(ETCD_AGENT_SECRET)
        assert config.lease_ttl == 3 and config.fence_margin == 1.0


def test_without_tls_etcd_is_plain_and_anonymous(tmp_path: Path) -> None:
    text = (EXAMPLES / "hardened.toml").read_text().replace("[db]", "[tls]\nenabled = false\n\n[db]", 1)
    topo = parse_topology(text)
    plan = _plan(topo, tmp_path)
    flags = _flags(plan.host("lb-01").service("etcd").argv)
    assert flags["--listen-client-urls"] == "http://198.18.0.10:2379"
    assert "--cert-file" not in flags and "--peer-client-cert-auth" not in flags
    assert all(url.startswith("http://") for url in etcd_endpoints(topo))
    agent_file = next(f for f in plan.host("web-01").files if f.path.name == "agent.json")
    config = AgentConfig.model_validate(json.loads(agent_file.content))
    assert config.etcd_user is None and config.etcd_ca_file is None


def test_metrics_port_is_a_listener_and_can_move(tmp_path: Path) -> None:
    text = (EXAMPLES / "hardened.toml").read_text().replace("[db]", "[etcd]\nmetrics_port = 12381\n\n[db]", 1)
    topo = parse_topology(text)
    assert _flags(_plan(topo, tmp_path).host("etcd-01").service("etcd").argv)["--listen-metrics-urls"] == (
        "http://198.18.0.14:12381"
    )


def test_the_plan_is_deterministic(tmp_path: Path) -> None:
    topo = load_topology(None)
    first, second = _plan(topo, tmp_path), _plan(topo, tmp_path)
    assert first == second


def test_etcd_on_a_db_host_still_validates_without_a_monitoring_host() -> None:
    # Allowed (partition failover is slower then: see docs/HA.md); the examples keep etcd off the DB hosts.
    text = (EXAMPLES / "hardened.toml").read_text()
    text = text[: text.index("# The third etcd member")].replace(
        'roles = ["web", "app", "db"]', 'roles = ["web", "app", "db", "etcd"]', 1
    )
    topo = parse_topology(text)
    assert topo.monitoring_host is None
    assert [h.name for h in topo.with_role(Role.ETCD)] == ["lb-01", "lb-02", "web-01"]
