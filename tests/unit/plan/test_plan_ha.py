"""Rendering of the hardened default (LB pair + HA database + monitoring): every config passes its own
tool's check (haproxy -c, keepalived -t, nginx -t), and each piece says what the design says: every DB
starts read-only (the agent makes the leader writable), semi-sync AFTER_SYNC, apps reach the DB through
their local routing, the LBs share a VIP. Nothing is started."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from webinfra.agent.config import AgentConfig
from webinfra.model import Role, load_topology, parse_topology
from webinfra.plan.build import build_plan
from webinfra.plan.daemons.dbproxy import check_intervals
from webinfra.plan.spec import ClusterPlan
from webinfra.proving.bench_scale import scale_topology_text
from webinfra.services import pki
from webinfra.state import Layout


def _tool(name: str) -> str | None:
    found = shutil.which(name) or f"/usr/sbin/{name}"
    return found if os.access(found, os.X_OK) else None


@pytest.fixture(scope="module")
def plan(module_roots: Path) -> ClusterPlan:
    topo = load_topology(None)
    layout = Layout.for_cluster(topo.name, module_roots / "state")
    pki.ensure_pki(topo, layout)
    plan = build_plan(topo, layout, python="/usr/bin/python3")
    for hp in plan.hosts:
        for d in hp.dirs.all():
            d.mkdir(parents=True, exist_ok=True)
        for f in hp.files:
            f.path.parent.mkdir(parents=True, exist_ok=True)
            f.path.write_text(f.content)
            f.path.chmod(f.mode)
    return plan


def test_every_db_starts_read_only_with_lossless_semi_sync(plan: ClusterPlan) -> None:
    for spec in plan.topology.with_role(Role.DB):
        cnf = configparser.ConfigParser(allow_no_value=True, strict=False)
        cnf.read_string((plan.host(spec.name).dirs.etc / "my.cnf").read_text())
        mysqld = cnf["mariadbd"]
        assert mysqld["read-only"] == "ON", spec.name
        assert mysqld["rpl-semi-sync-master-wait-point"] == "AFTER_SYNC"
        assert mysqld["rpl-semi-sync-slave-enabled"] == "ON"
        assert mysqld["report-host"] == spec.name
        assert mysqld["event-scheduler"] == "ON"  # the agent's watchdog event runs in mysqld


def test_apps_reach_the_db_through_their_local_routing(plan: ClusterPlan) -> None:
    for spec in plan.topology.with_role(Role.APP):
        db = json.loads((plan.host(spec.name).dirs.etc / "site.json").read_text())["db"]
        assert db["writer"] == {"name": "writer", "host": "127.0.0.1", "port": plan.topology.db.writer_port}
        assert db["readers"] == [{"name": "reader", "host": "127.0.0.1", "port": plan.topology.db.reader_port}]
        assert db["identify_servers"] is True and db["write_retry_seconds"] > 0
        cfg = (plan.host(spec.name).dirs.etc / "dbproxy.cfg").read_text()
        assert "uri /primary" in cfg and "uri /read" in cfg and "on-marked-down shutdown-sessions" in cfg
        # This host's own DB is the preferred reader; the other one is a backup.
        other = next(d.name for d in plan.topology.with_role(Role.DB) if d.name != spec.name)
        assert f"server {other} " in cfg and "backup" in cfg.split(f"server {other} ")[-1].splitlines()[0]


@pytest.mark.skipif(_tool("haproxy") is None, reason="haproxy is not installed")
def test_every_haproxy_config_is_valid(plan: ClusterPlan) -> None:
    for hp in plan.hosts:
        for f in hp.files:
            if f.path.suffix == ".cfg":
                proc = subprocess.run([_tool("haproxy"), "-c", "-f", str(f.path)], capture_output=True, text=True)
                assert proc.returncode == 0, (hp.name, f.path.name, proc.stderr)


@pytest.mark.skipif(_tool("keepalived") is None, reason="keepalived is not installed")
def test_keepalived_configs_are_valid_and_hold_the_vip(plan: ClusterPlan) -> None:
    lbs = plan.topology.with_role(Role.LB)
    assert len(lbs) == 2
    for lb in lbs:
        path = plan.host(lb.name).dirs.etc / "keepalived.conf"
        text = path.read_text()
        assert f"{plan.topology.vip}/24 dev eth0" in text and "nopreempt" in text and "unicast_peer" in text
        proc = subprocess.run([_tool("keepalived"), "-t", "-f", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr + proc.stdout


def test_agent_configs_load(plan: ClusterPlan) -> None:
    for spec in plan.topology.with_role(Role.DB):
        data = json.loads((plan.host(spec.name).dirs.etc / "agent.json").read_text())
        config = AgentConfig.model_validate(data)
        assert config.host == spec.name and config.initial_primary == "web-01"
        assert len(config.etcd_endpoints) == 3 and config.repl_ssl_ca is not None
        # The pid file the agent checks before releasing is the one my.cnf makes mysqld write.
        cnf = (plan.host(spec.name).dirs.etc / "my.cnf").read_text()
        assert f"pid-file = {config.mariadb.pid_file}" in cnf


def test_start_order_of_the_hardened_design(plan: ClusterPlan) -> None:
    order = [svc.name for _, svc in plan.start_order()]
    firsts = {name: order.index(name) for name in dict.fromkeys(order)}
    assert firsts["etcd"] < firsts["mariadb"] < firsts["agent"] < firsts["dbproxy"] < firsts["app"]
    assert firsts["app"] < firsts["nginx"] < firsts["haproxy"] < firsts["keepalived"]
    assert next(h.name for h, s in plan.start_order() if s.name == "mariadb") == "web-01"


def test_dbproxy_checks_slow_down_with_many_app_hosts_so_each_agent_answers_about_as_many() -> None:
    """Up to 4 app hosts: the fastest checks (the failover goals). Beyond: intervals grow with the count,
    capped at 500 ms (a promotion routed to within it); the rendered dbproxy.cfg says so."""

    def intervals(size: int) -> tuple[int, int]:
        return check_intervals(parse_topology(scale_topology_text(size), "scale.toml"))

    assert intervals(7) == intervals(10) == (250, 100)  # 1 and 4 app hosts
    assert intervals(14) == (500, 200)  # 8 app hosts
    assert intervals(40) == (500, 500)  # 34: capped
    topo = parse_topology(scale_topology_text(40), "scale.toml")
    files = build_plan(topo, Layout.for_cluster(topo.name, Path("/s")), python="/p").host("app-01").files
    cfg = next(f.content for f in files if f.path.name == "dbproxy.cfg")
    assert "inter 500ms fastinter 500ms downinter 500ms" in cfg
