"""Rendering: every config of the default, seed and split topologies passes its own tool's check
(`haproxy -c`, `nginx -t`), and says what the topology says (weights, backups, write routing, replication
roles, read preference, start order). Nothing is started: the files are written under a tmp dir only."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from topology_cases import GOOD, haproxy_sections, host

from testkit import EXAMPLES
from webinfra.model import Role, Topology, load_topology, parse_topology
from webinfra.plan.build import build_plan
from webinfra.plan.daemons.haproxy import render_haproxy
from webinfra.plan.daemons.mariadb import server_id_of
from webinfra.plan.spec import ClusterPlan, HostPlan
from webinfra.services import pki
from webinfra.site import SiteConfig
from webinfra.state import SOCKET_ROOT_ENV, STATE_ROOT_ENV, Layout

GOLDEN = Path(__file__).resolve().parent / "golden"
ROOT_PLACEHOLDER = "@ROOT@"
# The non-HA designs; the hardened default (HA, LB pair) has its own checks in test_plan_ha.py.
TOPOLOGIES = {"seed": EXAMPLES / "seed.toml", "split": EXAMPLES / "split.toml"}


def _tool(name: str) -> str | None:
    found = shutil.which(name) or f"/usr/sbin/{name}"
    return found if os.access(found, os.X_OK) else None


HAPROXY, NGINX = _tool("haproxy"), _tool("nginx")


@dataclass(frozen=True)
class Rendered:
    topo: Topology
    plan: ClusterPlan
    root: Path

    def text(self, host: str, file: str) -> str:
        return (self.plan.host(host).dirs.etc / file).read_text()


@pytest.fixture(scope="module", params=list(TOPOLOGIES))
def rendered(request: pytest.FixtureRequest, module_roots: Path) -> Rendered:
    """A topology's plan written to disk under tmp state and socket roots, with every directory it names."""
    topo = load_topology(TOPOLOGIES[request.param])
    root = module_roots / "state"
    layout = Layout.for_cluster(topo.name, root)
    pki.ensure_pki(topo, layout)  # the certificates the configs name, so the tools can load them
    plan = build_plan(topo, layout, python="/usr/bin/python3")
    for hp in plan.hosts:
        for d in hp.dirs.all():
            assert d.is_relative_to(module_roots), d
            d.mkdir(parents=True, exist_ok=True)
        for f in hp.files:
            assert f.path.is_relative_to(hp.dirs.etc)
            f.path.write_text(f.content)
    return Rendered(topo, plan, module_roots)


def hosts_with(r: Rendered, role: Role) -> list[HostPlan]:
    return [r.plan.host(h.name) for h in r.topo.with_role(role)]


# ---- the tools' own checks ----


@pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")
def test_haproxy_cfg_passes_haproxy_check(rendered: Rendered) -> None:
    for hp in hosts_with(rendered, Role.LB):
        # The server-state file is read on start: give it the version header HAProxy writes, so the check
        # has nothing to warn about.
        (hp.dirs.data / "haproxy-server-state").write_text("1\n")
        cfg = hp.dirs.etc / "haproxy.cfg"
        proc = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        assert "ALERT" not in output and "WARNING" not in output, output


@pytest.mark.skipif(NGINX is None, reason="nginx not installed")
def test_nginx_conf_passes_nginx_test(rendered: Rendered) -> None:
    webs = hosts_with(rendered, Role.WEB)
    assert webs
    for hp in webs:
        conf = hp.dirs.etc / "nginx.conf"
        errlog = hp.dirs.log / "nginx-test-error.log"
        argv = [NGINX, "-t", "-c", str(conf), "-p", str(hp.dirs.root), "-e", str(errlog)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "[warn]" not in proc.stderr and "[emerg]" not in proc.stderr, proc.stderr


def test_nginx_proxies_to_the_hosts_app_upstreams(rendered: Rendered) -> None:
    topo = rendered.topo
    for hp in hosts_with(rendered, Role.WEB):
        conf = rendered.text(hp.name, "nginx.conf")
        upstream = conf.split("upstream app {", 1)[1].split("}", 1)[0]
        servers = [line.split()[1] for line in upstream.splitlines() if line.strip().startswith("server ")]
        assert servers == [f"{topo.address_of(a.name)}:{topo.app.port}" for a in topo.app_upstreams_of(hp.name)]
        assert f"listen 0.0.0.0:{topo.web.port} " in conf
        assert f"server_name {topo.site.name} _;" in conf
        assert "daemon off;" in conf


def test_every_config_is_under_the_layout_root(rendered: Rendered) -> None:
    for hp in rendered.plan.hosts:
        for f in hp.files:
            assert f.path.is_relative_to(rendered.root)
        for svc in hp.services:
            assert svc.pidfile.is_relative_to(hp.dirs.run)
            assert svc.log.is_relative_to(hp.dirs.log)


# ---- MariaDB ----


def read_cnf(text: str) -> configparser.ConfigParser:
    cnf = configparser.ConfigParser(allow_no_value=True, strict=True, interpolation=None)
    cnf.read_string(text)  # strict: a key given twice in a section is an error
    return cnf


def test_my_cnf_server_ids_are_unique_and_read_only_is_on_replicas_only(rendered: Rendered) -> None:
    topo = rendered.topo
    dbs = hosts_with(rendered, Role.DB)
    assert len(dbs) == 2
    server_ids = {}
    for hp in dbs:
        spec = topo.host(hp.name)
        mysqld = read_cnf(rendered.text(hp.name, "my.cnf"))["mariadbd"]
        server_ids[hp.name] = int(mysqld["server-id"])
        assert server_ids[hp.name] == server_id_of(topo, hp.name) > 0
        assert mysqld["read-only"] == ("ON" if spec.db_role == "replica" else "OFF"), hp.name
        assert mysqld["port"] == str(topo.db.port)
        assert mysqld["datadir"] == str(hp.dirs.data / "mariadb")
        assert mysqld["log-error"] == str(hp.dirs.log / "mariadb.err")
        assert mysqld["binlog-format"] == "ROW" and mysqld["log-slave-updates"] == "ON"
    assert len(set(server_ids.values())) == len(server_ids)
    # Hosts without the db role get no my.cnf.
    for hp in rendered.plan.hosts:
        assert (hp.dirs.etc / "my.cnf").exists() == (Role.DB.value in hp.roles)


# ---- the app's site.json ----


def test_site_json_writer_is_the_primary_and_readers_prefer_the_local_replica(rendered: Rendered) -> None:
    topo = rendered.topo
    assert topo.db_primary is not None
    primary = str(topo.address_of(topo.db_primary.name))
    replicas = [h.name for h in topo.db_replicas]
    for hp in hosts_with(rendered, Role.APP):
        config = json.loads(rendered.text(hp.name, "site.json"))
        assert config["host"] == hp.name
        assert config["site_name"] == topo.site.name
        db = config["db"]
        assert db["writer"] == {"name": topo.db_primary.name, "host": primary, "port": topo.db.port}
        names = [r["name"] for r in db["readers"]]
        assert sorted(names) == sorted(replicas)
        if hp.name in replicas:
            assert names[0] == hp.name
        for reader in db["readers"]:
            assert reader["host"] == str(topo.address_of(reader["name"]))
        assert Path(db["password_file"]).is_relative_to(rendered.root)
        # Cookie signing key and admin token: cluster secrets, the same files for every app server.
        secrets = Path(db["password_file"]).parent
        assert config["signing_key_file"] == str(secrets / "site-signing.password")
        assert config["admin_token_file"] == str(secrets / "site-admin.password")
        assert next(f for f in hp.files if f.path.name == "site.json").mode == 0o600
        SiteConfig.model_validate(config)
        app = hp.service("app")
        assert dict(app.env)["WEBINFRA_SITE_CONFIG"] == str(hp.dirs.etc / "site.json")


def test_site_json_readers_of_the_seed_design() -> None:
    topo = load_topology(EXAMPLES / "seed.toml")
    plan = build_plan(topo, Layout(Path("/state/seed")), python="/usr/bin/python3")
    readers = {
        hp.name: [r["host"] for r in json.loads(hp.files_of(hp.service("app"))[0].content)["db"]["readers"]]
        for hp in plan.hosts
        if "app" in hp.roles
    }
    # web-01 holds the primary: it reads from web-02's replica; web-02 reads its own replica.
    assert readers == {"web-01": ["198.18.0.12"], "web-02": ["198.18.0.12"]}


# ---- HAProxy ----


def test_haproxy_backends_follow_the_topology(rendered: Rendered) -> None:
    topo = rendered.topo
    (lb,) = hosts_with(rendered, Role.LB)
    sections = haproxy_sections(rendered.text(lb.name, "haproxy.cfg"))
    site = sections["backend site"]
    assert "balance roundrobin" in site
    servers = [line.split(" check-ssl")[0].split() for line in site if line.startswith("server ")]
    expected = [
        ["server", w.name, f"{topo.address_of(w.name)}:{topo.web.port}", "weight", str(w.lb_weight), "check"]
        + (["backup"] if w.is_backup else [])
        for w in topo.with_role(Role.WEB)
    ]
    assert servers == expected
    frontend = sections["frontend site"]
    assert f"bind 0.0.0.0:{topo.lb.port}" in frontend
    assert "default_backend site" in frontend
    if topo.backend_tls:  # the re-encrypted hop: nginx's certificate verified against our CA, for that host
        for line, w in zip([x for x in site if x.startswith("server ")], topo.with_role(Role.WEB), strict=True):
            tls = f" check-ssl ssl verify required ca-file {rendered.plan.layout.ca_cert} verifyhost {w.name}"
            assert line.endswith(tls), line
    primary = topo.db_primary
    assert primary is not None
    if topo.lb.route_writes_to == "primary":
        assert "use_backend site_writes if is_write" in frontend
        writes = [line.split() for line in sections["backend site_writes"] if line.startswith("server ")]
        assert [w[1:3] for w in writes] == [[primary.name, f"{topo.address_of(primary.name)}:{topo.web.port}"]]
    else:
        assert "backend site_writes" not in sections
        assert not any("site_writes" in line for line in frontend)


def test_haproxy_runtime_api_is_a_unix_socket_only(rendered: Rendered) -> None:
    (lb,) = hosts_with(rendered, Role.LB)
    cfg = rendered.text(lb.name, "haproxy.cfg")
    sections = haproxy_sections(cfg)
    sockets = [line.split() for line in sections["global"] if line.startswith("stats socket")]
    assert len(sockets) == 1
    (socket,) = sockets
    path = socket[2]
    assert path == str(lb.dirs.sockets / "haproxy.sock")  # an absolute path: a unix socket, not ipv4@/host:port
    assert ":" not in path and "@" not in path
    assert socket[socket.index("level") + 1] == "admin"
    assert socket[socket.index("mode") + 1] == "600"
    # No HTTP stats page and no other listener: the only binds are the site's frontend (HTTP, and HTTPS with TLS),
    # and with a monitoring host, HAProxy's Prometheus exporter on the host's own address (test_monitoring_plan.py).
    monitored = rendered.topo.monitoring_host is not None
    frontends = ["frontend site", "frontend metrics"] if monitored else ["frontend site"]
    assert [name for name in sections if name.startswith(("listen", "frontend"))] == frontends
    binds = (2 if rendered.topo.tls.enabled else 1) + monitored
    assert sum(line.startswith("bind ") for lines in sections.values() for line in lines) == binds
    for lines in sections.values():
        for line in lines:
            assert not line.startswith(("stats enable", "stats uri", "stats admin", "stats auth")), line


@pytest.mark.parametrize(
    ("text", "weights"),
    [
        pytest.param(GOOD, [("web-01", "1", False), ("web-02", "1", False)], id="defaults"),
        pytest.param(
            host("lb-01", "lb")
            + host("web-01", "web", "app", "db", db_role='"primary"', weight="3")
            + host("web-02", "web", "app", "db", db_role='"replica"', weight="0")
            + host("web-03", "web", "app", backup="true", weight="7"),
            [("web-01", "3", False), ("web-02", "0", False), ("web-03", "7", True)],
            id="weights-and-backup",
        ),
    ],
)
def test_haproxy_weights_and_backup_as_configured(text: str, weights: list[tuple[str, str, bool]]) -> None:
    topo = parse_topology(text)
    cfg = render_haproxy(topo, Layout(Path("/state/webinfra")), "lb-01")
    servers = [line.split() for line in haproxy_sections(cfg)["backend site"] if line.startswith("server ")]
    assert [(s[1], s[s.index("weight") + 1], "backup" in s) for s in servers] == weights


def test_haproxy_writes_backend_only_when_routing_writes_to_the_primary() -> None:
    layout = Layout(Path("/state/webinfra"))
    to_primary = haproxy_sections(render_haproxy(parse_topology(GOOD), layout, "lb-01"))
    to_any = haproxy_sections(render_haproxy(parse_topology('[lb]\nroute_writes_to = "any"\n' + GOOD), layout, "lb-01"))
    assert "backend site_writes" in to_primary
    assert "backend site_writes" not in to_any
    assert to_primary["backend site"] == to_any["backend site"]


# ---- services ----


def test_start_order(rendered: Rendered) -> None:
    topo = rendered.topo
    order = [(hp.name, svc.name) for hp, svc in rendered.plan.start_order()]
    assert topo.db_primary is not None
    expected = (
        [(topo.db_primary.name, "mariadb")]
        + [(h.name, "mariadb") for h in topo.db_replicas]
        + [(h.name, "app") for h in topo.with_role(Role.APP)]
        + [(h.name, "nginx") for h in topo.with_role(Role.WEB)]
        + [(h.name, "haproxy") for h in topo.with_role(Role.LB)]
    )
    if topo.monitoring_host is not None:  # exporters after their daemon, Prometheus and the watcher last
        exporters = [(h.name, "mysqld-exporter") for h in [topo.db_primary, *topo.db_replicas]]
        at = len(topo.with_role(Role.DB))
        expected[at:at] = exporters
        first = [topo.db_primary.name]  # ties go to the primary's host first
        nodes = first + [h.name for h in topo.hosts if h.name not in first]
        expected += [(n, "node-exporter") for n in nodes]
        expected += [(topo.monitoring_host.name, "prometheus"), (topo.monitoring_host.name, "monitor")]
    assert order == expected


def test_start_order_puts_the_primary_first_wherever_it_is_listed() -> None:
    topo = parse_topology(
        host("lb-01", "lb")
        + host("web-01", "web", "app", "db", db_role='"replica"')
        + host("web-02", "web", "app", "db", db_role='"replica"')
        + host("web-03", "web", "app", "db", db_role='"primary"')
    )
    plan = build_plan(topo, Layout(Path("/state/webinfra")), python="/usr/bin/python3")
    order = [(hp.name, svc.name) for hp, svc in plan.start_order()]
    assert order[:3] == [("web-03", "mariadb"), ("web-01", "mariadb"), ("web-02", "mariadb")]
    assert [svc for _, svc in order[3:]] == ["app"] * 3 + ["nginx"] * 3 + ["haproxy"]


def test_split_start_order_is_explicit() -> None:
    topo = load_topology(EXAMPLES / "split.toml")
    plan = build_plan(topo, Layout(Path("/state/split")), python="/usr/bin/python3")
    assert [(hp.name, svc.name) for hp, svc in plan.start_order()] == [
        ("db-01", "mariadb"),
        ("db-02", "mariadb"),
        ("app-01", "app"),
        ("app-02", "app"),
        ("web-01", "nginx"),
        ("web-02", "nginx"),
        ("lb-01", "haproxy"),
    ]


def test_services_match_roles(rendered: Rendered) -> None:
    by_role = {"db": "mariadb", "app": "app", "web": "nginx", "lb": "haproxy", "monitoring": "prometheus"}
    monitored = rendered.topo.monitoring_host is not None
    for hp in rendered.plan.hosts:
        expected = {by_role[r] for r in hp.roles}
        if monitored:  # exporters everywhere (plan/daemons/exporters.py)
            expected |= {"node-exporter"} | ({"mysqld-exporter"} if "db" in hp.roles else set())
            expected |= {"monitor"} if "monitoring" in hp.roles else set()
        assert {svc.name for svc in hp.services} == expected
        assert hp.address == str(rendered.topo.address_of(hp.name))
        for svc in hp.services:
            assert svc.probe.address == hp.address
            assert all(c in {f.path for f in hp.files} for c in svc.configs)


# ---- golden ----


def test_default_haproxy_cfg_matches_golden() -> None:
    base = Path(os.environ[STATE_ROOT_ENV]).parent  # the state and socket roots are tmp dirs under it
    topo = load_topology(None)
    cfg = render_haproxy(topo, Layout.for_cluster(topo.name), "lb-01").replace(str(base), ROOT_PLACEHOLDER)
    golden = GOLDEN / "haproxy-default.cfg"
    if os.environ.get("WEBINFRA_UPDATE_GOLDEN") == "1":
        golden.write_text(cfg)
    assert cfg == golden.read_text(), "rendered haproxy.cfg changed: review it, then WEBINFRA_UPDATE_GOLDEN=1"


def test_unix_socket_paths_fit_with_the_default_roots_and_longest_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_ROOT_ENV)
    monkeypatch.delenv(SOCKET_ROOT_ENV)
    long_host = "web-" + "x" * 28  # host names are at most 32 characters
    text = 'name = "abcdefgh"\n' + host("l" * 32, "lb") + host(long_host, "web", "app", "db", db_role='"primary"')
    topo = parse_topology(text)
    plan = build_plan(topo, Layout.for_cluster(topo.name), python="/usr/bin/python3")  # paths only, no I/O
    sockets = {m for hp in plan.hosts for f in hp.files for m in re.findall(r"/\S+\.sock\b", f.content)}
    assert len(sockets) == 2  # haproxy's runtime API and mariadb's
    for path in sockets:
        assert len(path.encode()) < 108, path  # sockaddr_un.sun_path, with its NUL
