"""The SSH target's pure parts: the server layout, packages per host, daemon users, systemd units, and which
secrets a host receives (servers/units.py, servers/ops.py)."""

from __future__ import annotations

from testkit import EXAMPLES
from webinfra.model import load_topology
from webinfra.plan.build import build_plan
from webinfra.servers import units
from webinfra.servers.ops import PKI_REF, SECRET_REF, ownership, referenced
from webinfra.state import ServerLayout

PYTHON = f"{units.RELEASES}/abc/bin/python"


def seed_plan():  # type: ignore[no-untyped-def]
    return build_plan(load_topology(EXAMPLES / "seed.toml"), ServerLayout(), PYTHON)


def test_the_server_layout_uses_debian_places() -> None:
    web = seed_plan().host("web-01")
    assert {str(f.path) for f in web.files} == {
        "/etc/webinfra/my.cnf",
        "/etc/webinfra/site.json",
        "/etc/webinfra/nginx.conf",
    }
    assert "/var/lib/webinfra/mariadb" in web.files[0].content
    assert web.service("app").argv[0] == PYTHON


def test_packages_are_only_what_the_roles_need() -> None:
    plan = seed_plan()
    assert units.packages(plan.host("lb-01"), firewall=False) == ["haproxy", "python3"]  # python3: the probe helper
    assert units.packages(plan.host("web-01"), firewall=True) == [
        "mariadb-client",
        "mariadb-server",
        "netbase",
        "nftables",
        "nginx",
        "python3",
        "python3-venv",
    ]


def test_each_daemon_runs_as_its_own_user() -> None:
    plan = seed_plan()
    assert units.users(plan.host("web-01")) == ["mysql", "webinfra", "www-data"]
    assert units.users(plan.host("lb-01")) == ["haproxy"]


def test_units_restart_log_to_journald_and_reload_where_the_daemon_can() -> None:
    plan = seed_plan()
    haproxy = units.unit(plan.host("lb-01").service("haproxy"), "seed")
    assert haproxy.name == "webinfra-haproxy.service" and haproxy.reloads
    text = haproxy.text
    assert "User=haproxy" in text and "ExecReload=/bin/kill -USR2 $MAINPID" in text
    assert "Restart=always" in text and "StandardOutput=journal" in text and "WantedBy=multi-user.target" in text
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in text
    app = units.unit(plan.host("web-01").service("app"), "seed")
    assert not app.reloads and "ExecReload" not in app.text
    assert "Environment=WEBINFRA_SITE_CONFIG=/etc/webinfra/site.json" in app.text
    assert f"ExecStart={PYTHON} -m uvicorn" in app.text
    mariadb = units.unit(plan.host("web-01").service("mariadb"), "seed")
    assert "User=mysql" in mariadb.text and "TimeoutStopSec=30" in mariadb.text


def test_a_host_receives_only_the_secrets_its_configs_name() -> None:
    plan = seed_plan()
    assert referenced(plan.host("lb-01"), SECRET_REF) == {}
    assert referenced(plan.host("web-01"), SECRET_REF) == {
        "site-signing.password": {"webinfra"},
        "site-admin.password": {"webinfra"},
        "db-site.password": {"webinfra"},
    }
    assert ownership("db-site.password", {"webinfra"}) == ("webinfra", "webinfra", "600")
    hardened = build_plan(load_topology(None), ServerLayout(), PYTHON)
    for host in hardened.hosts:
        pki = referenced(host, PKI_REF)
        assert "ca.key" not in pki  # the CA key never leaves the management machine
        assert all(name in ("ca.pem", "site.pem") or name.startswith(host.name) for name in pki), (host.name, pki)
    lb = referenced(hardened.host("lb-01"), PKI_REF)  # the LB also runs etcd in the default design
    assert lb == {"site.pem": {"haproxy"}, "ca.pem": {"haproxy", "etcd"}, "lb-01.crt": {"etcd"}, "lb-01.key": {"etcd"}}
    assert ownership("site.pem", {"haproxy"}) == ("haproxy", "webinfra", "600")
    assert ownership("ca.pem", {"haproxy", "etcd"}) == ("root", "root", "644")
    assert ownership("web-01.key", {"www-data", "mysql"}) == ("root", "webinfra", "640")


def test_up_checks_the_ssh_key_before_connecting() -> None:
    import pytest

    from webinfra.control.cluster import UsageError
    from webinfra.model import parse_topology
    from webinfra.servers.run import check_usable

    text = (EXAMPLES / "servers.toml").read_text().replace('key = "~/.ssh/webinfra"\n', "")
    check_usable(parse_topology(text, "s.toml"))  # the hardened design with monitoring and its firewall
    with pytest.raises(UsageError, match="does not exist"):
        check_usable(
            parse_topology(text.replace("\nbecome = true\n", '\nbecome = true\nkey = "/nonexistent/k"\n'), "s.toml")
        )


def servers_plan():  # type: ignore[no-untyped-def]
    return build_plan(load_topology(EXAMPLES / "servers.toml"), ServerLayout(), PYTHON)


def test_the_monitoring_server_gets_debian_s_prometheus_and_the_watcher_from_the_release() -> None:
    import json

    from webinfra.model import Topology

    plan = servers_plan()
    mon = plan.host("etcd-01")
    assert [s.name for s in mon.services if s.name in ("alertmanager", "prometheus", "monitor")] == [
        "alertmanager",
        "prometheus",
        "monitor",
    ]
    packages = units.packages(mon, firewall=True)
    assert {"prometheus", "prometheus-alertmanager", "prometheus-node-exporter", "python3-venv"} <= set(packages)
    web = units.packages(plan.host("web-01"), firewall=True)
    assert {"prometheus-mysqld-exporter", "prometheus-nginx-exporter", "prometheus-node-exporter"} <= set(web)
    # The watcher reads the topology shipped next to it (no state directory of the management machine there).
    watcher = mon.service("monitor")
    assert watcher.argv[:4] == (PYTHON, "-m", "webinfra.observe.monitor", "--topology")
    shipped = next(f for f in mon.files if f.path == watcher.configs[0])
    assert shipped.mode == 0o640 and Topology.model_validate_json(shipped.content).name == "srv"
    assert units.unit(watcher, "srv").text.count("User=webinfra") == 1
    assert json.loads(shipped.content)["machines"]["kind"] == "ssh"


def test_no_monitoring_port_is_opened_to_the_management_machine_on_servers() -> None:
    plan = servers_plan()
    rules = next(f for f in plan.host("etcd-01").files if f.path.name == "firewall.nft").content
    assert "management -> prometheus" not in rules  # the CLI asks through SSH instead
    assert "management -> ssh" in rules
    web = next(f for f in plan.host("web-01").files if f.path.name == "firewall.nft").content
    assert "monitoring -> node, dbproxy, site, mysqld, agent, nginx" in web  # Prometheus scrapes it


def test_mysqld_exporter_s_client_file_is_written_from_the_management_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from webinfra.servers.ops import CLIENT_FILES
    from webinfra.state import Layout

    web = servers_plan().host("web-01")
    path, content = CLIENT_FILES["mysqld-exporter"](web, Layout(tmp_path))
    password = (tmp_path / "secrets" / "db-exporter.password").read_text().strip()
    assert str(path) == "/etc/webinfra/mysqld-exporter.cnf"
    assert f"password = {password}" in content and "user = exporter" in content
