"""Security with real clients: HTTPS end to end, a firewall in every host, least privilege.

One cluster, `tsec` (198.18.31.0/24), with the secure defaults ([tls] and `firewall` left out): an LB pair
with a VIP, two web+app servers, and the databases on their own hosts, so every flow crosses the network.
Clients: nmap and sslscan (Debian), openssl-backed Python ssl/httpx, the mariadb client, all bounded.
A second cluster, `tsecha` (198.18.32.0/24), is examples/hardened.toml: its firewall, and etcd's TLS (clients
and peers) and auth (anonymous, wrong users and plain HTTP refused; the agents' user held to its prefix).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from clusterkit import backend_states, bring_up, cli, site, take_down, trust, wait_for

from webinfra.agent.dcs import DcsAuthError, DcsError, DcsUnreachable, EtcdClient, EtcdCredentials
from webinfra.control import etcd_access
from webinfra.control.cluster import Cluster
from webinfra.model import Role
from webinfra.ops import scale
from webinfra.plan import firewall as fwplan
from webinfra.plan.ha import dcs_prefix
from webinfra.runtime.emulated.process import read_pidfile
from webinfra.services import mariadb, pki

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
SUBNET = "198.18.31"
TOPOLOGY = f"""
name = "tsec"
[network]
subnet = "{SUBNET}.0/24"
[lb]
route_writes_to = "any"
check_interval_ms = 500

[[hosts]]
name = "lb-01"
roles = ["lb"]

[[hosts]]
name = "lb-02"
roles = ["lb"]

[[hosts]]
name = "web-01"
roles = ["web", "app"]

[[hosts]]
name = "web-02"
roles = ["web", "app"]

[[hosts]]
name = "db-01"
roles = ["db"]
db_role = "primary"

[[hosts]]
name = "db-02"
roles = ["db"]
db_role = "replica"
"""
# nmap from the client side, bounded: on a local bridge a dropped probe needs no long wait.
NMAP_FAST = ["-n", "-Pn", "-sT", "--open", "-T5", "--max-retries", "1", "--max-rtt-timeout", "100ms", "-oG", "-"]

needs = pytest.mark.skipif(
    not (shutil.which("nmap") and shutil.which("sslscan")), reason="nmap and sslscan (Debian) are needed"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = bring_up(TOPOLOGY, tmp_path_factory.mktemp("state-sec"))
    wait_for(lambda: set(backend_states(c).values()) == {"up"}, 20, "both servers up behind the LB")
    wait_for(lambda: _answers(c), 20, "the site answering at the VIP")
    yield c
    take_down(c)


def _answers(cluster: Cluster) -> bool:
    try:
        return httpx.get(cluster.topology.site_url + "healthz", timeout=1, verify=trust(cluster)).status_code == 200
    except httpx.HTTPError:
        return False


def addr(cluster: Cluster, host: str) -> str:
    return str(cluster.topology.address_of(host))


def open_ports(grepable: str) -> dict[str, set[int]]:
    """{address: open TCP ports} from nmap's grepable output."""
    out: dict[str, set[int]] = {}
    for line in grepable.splitlines():
        m = re.match(r"Host: (\S+) .*Ports: (.*?)(\tIgnored|$)", line)
        if m:
            out[m.group(1)] = {int(p.split("/")[0]) for p in m.group(2).split(", ") if "/open/" in p}
    return out


def nmap(*args: str, netns: str | None = None, timeout: float = 90) -> dict[str, set[int]]:
    argv = (["ip", "netns", "exec", netns] if netns else []) + ["nmap", *NMAP_FAST, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
    return open_ports(proc.stdout)


# ---- firewall ----


@needs
def test_port_scan_from_the_client_side_finds_exactly_the_allowed_ports(cluster: Cluster) -> None:
    topo = cluster.topology
    vip = str(topo.vip)
    targets = [vip, *(addr(cluster, h.name) for h in topo.hosts)]
    found = nmap("-p", "1-10000", "--min-rate", "10000", *targets)
    for target in targets:
        found.setdefault(target, set())
    # What the topology allows from anywhere: the LBs' HTTP and HTTPS, nothing else on any host.
    allowed = {addr(cluster, f.dest): set(f.ports) for f in fwplan.flows(topo) if f.sources is None}
    expected = {t: allowed.get(t, set()) for t in targets}
    expected[vip] = {80, 443}
    assert found == expected
    assert allowed == {addr(cluster, "lb-01"): {80, 443}, addr(cluster, "lb-02"): {80, 443}}
    # ...although the hosts listen on much more: the firewall, not an absent service, hides it.
    listening = cluster.hosts["db-01"].run(["ss", "-Htln"]).stdout
    assert re.search(r":3306\b", listening)
    listening = cluster.hosts["web-01"].run(["ss", "-Htln"]).stdout
    assert re.search(r":8000\b", listening) and re.search(r":443\b", listening)


@needs
def test_from_inside_the_lb_only_the_web_port_of_the_servers_is_reachable(cluster: Cluster) -> None:
    netns = cluster.hosts["lb-01"].netns
    dbs = [addr(cluster, "db-01"), addr(cluster, "db-02")]
    webs = [addr(cluster, "web-01"), addr(cluster, "web-02")]
    found = nmap("-p", "443,3306,8000", *dbs, *webs, netns=netns)
    assert {a: found.get(a, set()) for a in dbs + webs} == {
        dbs[0]: set(),  # MariaDB: unreachable from the LB
        dbs[1]: set(),
        webs[0]: {443},  # nginx (TLS), but not the app server behind it
        webs[1]: {443},
    }
    # An app host does reach MariaDB (the flow exists), so the refusal above is the firewall's.
    assert nmap("-p", "3306", dbs[0], netns=cluster.hosts["web-01"].netns).get(dbs[0]) == {3306}


def test_cli_prints_the_rendered_and_the_loaded_ruleset(cluster: Cluster) -> None:
    rendered = cli(cluster, "firewall", "db-01").stdout
    assert "policy drop;" in rendered
    assert f"ip saddr {{ {addr(cluster, 'web-01')}, {addr(cluster, 'web-02')} }} tcp dport 3306 accept" in rendered
    assert 'comment "app -> mariadb"' in rendered and 'comment "replication (db <-> db)"' in rendered
    live = cli(cluster, "firewall", "db-01", "--live").stdout
    assert "table inet webinfra" in live and "policy drop" in live and '"app -> mariadb"' in live
    assert "8000" not in live and "443" not in live


# ---- HTTPS at the load balancer ----


@needs
def test_tls_scan_finds_only_tls12_and_tls13_and_no_weak_cipher(cluster: Cluster) -> None:
    vip = str(cluster.topology.vip)
    proc = subprocess.run(
        ["sslscan", "--no-colour", "--xml=-", f"{vip}:443"], capture_output=True, text=True, timeout=60, check=True
    )
    doc = ET.fromstring(proc.stdout[proc.stdout.index("<?xml") :])
    protocols = {f"{p.get('type')}v{p.get('version')}".lower(): p.get("enabled") == "1" for p in doc.iter("protocol")}
    assert {name for name, on in protocols.items() if on} == {"tlsv1.2", "tlsv1.3"}, protocols
    assert {"sslv2", "sslv3", "tlsv1.0", "tlsv1.1"} <= {name for name, on in protocols.items() if not on}
    ciphers = [(c.get("sslversion"), c.get("cipher"), int(c.get("bits") or 0)) for c in doc.iter("cipher")]
    assert ciphers
    for version, name, bits in ciphers:
        assert str(version).lower() in ("tlsv1.2", "tlsv1.3"), (version, name)
        assert bits >= 128, name
        # Forward secrecy and AEAD only: ECDHE/DHE key exchange (implicit in TLS 1.3), GCM or ChaCha20.
        assert re.fullmatch(r"TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)", name) or re.fullmatch(
            r"(ECDHE|DHE)-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)", name
        ), name
        assert not re.search(r"RC4|3DES|DES-|NULL|EXP|MD5|anon|CBC|SHA$", name), name


def test_http_redirects_to_https_which_carries_hsts(cluster: Cluster) -> None:
    vip = str(cluster.topology.vip)
    plain = httpx.get(f"http://{vip}/api/entries?limit=3", timeout=5, headers={"Host": "www.foobar.com"})
    assert plain.status_code == 301
    assert plain.headers["location"] == "https://www.foobar.com/api/entries?limit=3"
    assert "x-served-by" not in plain.headers  # answered by HAProxy itself, never forwarded in clear
    post = httpx.post(f"http://{vip}/api/entries", json={"text": "in clear"}, timeout=5)
    assert post.status_code == 301
    with site(cluster) as client:
        assert cluster.topology.site_url == f"https://{vip}/"
        resp = client.post("/api/entries", json={"text": "over https"})
        assert resp.status_code == 201 and resp.headers["x-db"] == "db-01"
        assert resp.headers["strict-transport-security"] == "max-age=63072000"
        read = client.get("/api/entries")
        assert read.status_code == 200 and read.headers["x-db"] == "db-02"


def test_the_site_certificate_verifies_for_the_name_and_the_vip(cluster: Cluster) -> None:
    ca = cli(cluster, "ca").stdout.strip()
    assert ca == str(cluster.layout.ca_cert) and Path(ca).is_file()
    vip = str(cluster.topology.vip)
    context = ssl.create_default_context(cafile=ca)
    for server_name in ("www.foobar.com", vip):
        with (
            socket.create_connection((vip, 443), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLCertVerificationError), socket.create_connection((vip, 443), timeout=5) as raw:
        context.wrap_socket(raw, server_hostname="www.example.org")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_tls_sessions_resume(cluster: Cluster, version: ssl.TLSVersion) -> None:
    vip = str(cluster.topology.vip)
    context = ssl.create_default_context(cafile=str(cluster.layout.ca_cert))
    context.minimum_version = context.maximum_version = version
    session, reused = None, []
    for _ in range(3):
        with (
            socket.create_connection((vip, 443), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=vip, session=session) as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: www.foobar.com\r\nConnection: close\r\n\r\n")
            while tls.recv(65536):  # read to the end: a TLS 1.3 session ticket arrives after the handshake
                pass
            reused.append(tls.session_reused)
            session = tls.session
    assert reused == [False, True, True]


# ---- the hop behind the load balancer ----


def test_nginx_speaks_only_tls_with_a_certificate_for_its_host(cluster: Cluster) -> None:
    web = addr(cluster, "web-01")
    ca = str(cluster.layout.ca_cert)

    def plain() -> httpx.Response:
        return httpx.get(f"http://{web}:443/healthz", timeout=5)

    def verified(name: str) -> str:
        context = ssl.create_default_context(cafile=ca)
        with (
            socket.create_connection((web, 443), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            return str(tls.version())

    lb = cluster.hosts["lb-01"]
    assert lb.inside(plain).status_code == 400  # "plain HTTP request was sent to HTTPS port"
    assert lb.inside(lambda: verified("web-01")) in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLCertVerificationError):
        lb.inside(lambda: verified("web-02"))  # web-01's certificate is not web-02's


def test_haproxy_refuses_a_backend_with_the_wrong_certificate(cluster: Cluster) -> None:
    """web-02's nginx gets a certificate with the right names from another CA: HAProxy marks it down and
    sends nothing there; with its own certificate back, it is up again."""
    layout = cluster.layout
    cert, key = layout.host_cert("web-02"), layout.host_key("web-02")
    good = cert.read_bytes(), key.read_bytes()
    now = dt.datetime.now(dt.UTC)
    rogue_key, rogue_ca = pki.new_ca("rogue", now)
    req = next(r for r in pki.wanted_certs(cluster.topology) if r.stem == "web-02")
    bad_key, bad_cert = pki.issue(rogue_key, rogue_ca, req, now)
    nginx = cluster.plan.host("web-02").service("nginx")

    def install(cert_pem: bytes, key_pem: bytes) -> None:
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        proc = read_pidfile(nginx.pidfile)
        assert proc is not None
        os.kill(proc.pid, signal.SIGHUP)  # nginx re-reads its certificate

    install(pki.pem_cert(bad_cert), pki.pem_key(bad_key))
    try:
        wait_for(lambda: backend_states(cluster)["web-02"] == "down", 10, "web-02 marked down (bad certificate)")
        stat = next(s for s in cluster.runtime().servers() if s.backend == "site" and s.name == "web-02")
        assert stat.check_status.lstrip("* ").startswith("L6"), stat  # failed at the TLS layer
        with site(cluster) as client:
            assert {client.get("/healthz").headers["x-served-by"] for _ in range(10)} == {"web-01"}
    finally:
        install(*good)
    wait_for(lambda: backend_states(cluster)["web-02"] == "up", 15, "web-02 up again with its own certificate")


# ---- MariaDB: TLS, least privilege ----


def _mariadb(cluster: Cluster, on: str, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["mariadb", f"--host={addr(cluster, db)}", "--connect-timeout=3", "--batch", "--skip-column-names", *args]
    return cluster.hosts[on].run(argv, check=False, timeout=15)


def test_remote_root_fails_and_the_site_account_needs_tls(cluster: Cluster) -> None:
    ca = str(cluster.layout.ca_cert)
    for db in ("db-01", "db-02"):
        for root in (["--user=root", "--ssl", f"--ssl-ca={ca}"], ["--user=root", "--skip-ssl"]):
            proc = _mariadb(cluster, "web-01", db, *root, "-e", "SELECT 1")
            assert proc.returncode != 0 and "ERROR 1045" in proc.stderr, proc.stderr
    password = cluster.layout.secret("db-site").read_text().strip()
    site_login = [f"--user={mariadb.SITE_USER}", f"--password={password}", "site"]
    proc = _mariadb(cluster, "web-01", "db-01", *site_login, "--skip-ssl", "-e", "SELECT 1")
    assert proc.returncode != 0 and "ERROR 1045" in proc.stderr, proc.stderr  # REQUIRE SSL
    tls = ["--ssl", f"--ssl-ca={ca}", "--ssl-verify-server-cert"]
    proc = _mariadb(cluster, "web-01", "db-01", *site_login, *tls, "-e", "SHOW STATUS LIKE 'Ssl_version'")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1] in ("TLSv1.2", "TLSv1.3")
    # The site may read, add and delete entries; it may not change the schema or touch other tables.
    for sql in ("DROP TABLE entries", "CREATE TABLE t (i INT)", "SELECT * FROM mysql.user", "UPDATE entries SET id=id"):
        proc = _mariadb(cluster, "web-01", "db-01", *site_login, *tls, "-e", sql)
        assert proc.returncode != 0 and re.search(r"ERROR 11(42|43|44)", proc.stderr), (sql, proc.stderr)


def test_accounts_are_least_privilege_on_every_db_node(cluster: Cluster) -> None:
    who = mariadb.host_pattern(cluster.topology.network.subnet)
    for db in ("db-01", "db-02"):
        hp, host = cluster.plan.host(db), cluster.hosts[db]
        accounts = set(mariadb.admin_sql(host, hp, "SELECT User, Host FROM mysql.global_priv;").splitlines())
        assert accounts == {"mariadb.sys\tlocalhost", "root\tlocalhost", f"site\t{who}", f"repl\t{who}"}
        grants = mariadb.admin_sql(host, hp, f"SHOW GRANTS FOR 'site'@'{who}'; SHOW GRANTS FOR 'repl'@'{who}';")
        lines = grants.splitlines()
        assert any(line.startswith("GRANT USAGE ON *.* TO `site`") and line.endswith("REQUIRE SSL") for line in lines)
        assert f"GRANT SELECT, INSERT, DELETE ON `site`.* TO `site`@`{who}`" in lines
        assert any(
            line.startswith("GRANT REPLICATION SLAVE ON *.* TO `repl`") and line.endswith("REQUIRE SSL")
            for line in lines
        )
        assert len(lines) == 3, lines
    replica = mariadb.query_row(cluster.hosts["db-02"], cluster.plan.host("db-02"), "SHOW SLAVE STATUS")
    assert replica["Master_SSL_Allowed"] == "Yes" and replica["Master_SSL_Verify_Server_Cert"] == "Yes"
    assert replica["Slave_IO_Running"] == "Yes" and replica["Master_SSL_CA_File"] == str(cluster.layout.ca_cert)


# ---- secrets ----


def test_secrets_and_keys_are_private_and_never_printed(cluster: Cluster) -> None:
    layout = cluster.layout
    assert layout.secrets.stat().st_mode & 0o777 == 0o700
    assert layout.pki.stat().st_mode & 0o777 == 0o700
    private = [*layout.secrets.glob("*.password"), *layout.pki.glob("*.key"), layout.site_pem]
    assert len(private) >= 3 + 1 + 5
    for path in private:
        assert path.stat().st_mode & 0o777 == 0o600, path
    secrets = [p.read_text().strip() for p in layout.secrets.glob("*.password")]
    outputs = [
        cli(cluster, "status", "--json", check=False).stdout,
        cli(cluster, "status", check=False).stdout,
        *(p.read_text(errors="replace") for p in layout.cluster_dir.glob("hosts/*/log/*") if p.is_file()),
        *(p.read_text(errors="replace") for p in layout.cluster_dir.glob("hosts/*/etc/*") if p.is_file()),
    ]
    bad = cli(cluster, "sql", "db-01", "-e", "SELECT nonsense FROM nowhere", check=False)
    outputs.append(bad.stdout + bad.stderr)
    for secret in secrets:
        assert len(secret) >= 24
        assert not any(secret in text for text in outputs)
    assert json.loads(outputs[0])["site_url"] == cluster.topology.site_url


def test_second_up_changes_nothing(cluster: Cluster) -> None:
    actions: list[tuple[str, str, str]] = []
    cluster.up(lambda host, what, action: actions.append((host, what, action)))
    changed = [a for a in actions if a[2] in ("loaded", "started", "restarted", "reloaded") or a[0] == "pki"]
    assert not changed, changed
    assert ("db-01", "firewall", "unchanged") in actions


# ---- the hardened example (needs the HA agent): firewall, and etcd's TLS and auth ----

needs_agent = pytest.mark.skipif(
    importlib.util.find_spec("webinfra.agent") is None or importlib.util.find_spec("webinfra.agent.__main__") is None,
    reason="the HA agent (webinfra.agent) is not there yet",
)


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """examples/hardened.toml as `tsecha` on 198.18.32.0/24: lb-01 .10, lb-02 .11 (lb + etcd), web-01 .12,
    web-02 .13 (web, app, db + agent), etcd-01 .14 (etcd only)."""
    text = (ROOT / "examples" / "hardened.toml").read_text().replace("198.18.0.", "198.18.32.")
    text = re.sub(r'^name = "webinfra"$', 'name = "tsecha"', text, count=1, flags=re.M)
    c = bring_up(text, tmp_path_factory.mktemp("state-secha"))
    try:
        wait_for(lambda: _answers(c), 20, "the site answering at the VIP")
        yield c
    finally:
        take_down(c)


def _in(cluster: Cluster, host: str, fn: Callable[[], T]) -> T:
    """Run `fn` inside `host` (its addresses, its firewall's view of the network)."""
    return cluster.hosts[host].inside(fn)  # type: ignore[attr-defined]  # the emulated machine's


def _etcd(cluster: Cluster, member: str, creds: EtcdCredentials | None, scheme: str = "https") -> EtcdClient:
    url = f"{scheme}://{addr(cluster, member)}:{cluster.topology.etcd.client_port}"
    return EtcdClient([url], timeout=3, ca_file=cluster.layout.ca_cert, credentials=creds)


def _refusal(fn: Callable[[], object]) -> BaseException | None:
    try:
        fn()
    except (DcsError, DcsUnreachable) as exc:
        return exc
    return None


@needs
@needs_agent
def test_hardened_example_firewall(hardened: Cluster) -> None:
    c = hardened
    topo = c.topology
    targets = [str(topo.vip), *(str(topo.address_of(h.name)) for h in topo.hosts)]
    found = nmap("-p", "1-10000", "--min-rate", "10000", *targets)
    assert {t: found.get(t, set()) for t in targets} == {
        t: ({80, 443} if t in (targets[0], targets[1], targets[2]) else set()) for t in targets
    }
    a = {h: addr(c, h) for h in ("lb-02", "web-02", "etcd-01")}
    web01 = c.hosts["web-01"].netns  # an agent's host: etcd's client port only (2380 is for members)
    from_web = nmap("-p", "2379,2380,2381,3306,8008", a["lb-02"], a["etcd-01"], a["web-02"], netns=web01)
    assert from_web == {a["lb-02"]: {2379}, a["etcd-01"]: {2379}, a["web-02"]: {3306, 8008}}
    lb01 = c.hosts["lb-01"].netns  # an etcd member: the other members' peer port, nothing else
    from_lb = nmap("-p", "2379,2380,2381,3306,8008", a["lb-02"], a["web-02"], netns=lb01)
    assert from_lb.get(a["lb-02"], set()) == {2380} and from_lb.get(a["web-02"], set()) == set()
    with site(c) as client:
        assert client.post("/api/entries", json={"text": "hardened"}).status_code == 201
    assert httpx.get(f"http://{topo.vip}/", timeout=5, verify=trust(c)).status_code == 301
    # A switchover (its request goes to etcd as the agents' user) through the firewall: the demoted primary
    # replicates from the new one over verified TLS.
    assert "primary: web-01 -> web-02" in cli(c, "switchover").stdout

    def replicating_over_tls() -> bool:
        row = mariadb.query_row(c.hosts["web-01"], c.plan.host("web-01"), "SHOW SLAVE STATUS")
        return row.get("Slave_IO_Running") == "Yes" and row.get("Master_SSL_Verify_Server_Cert") == "Yes"

    wait_for(replicating_over_tls, 20, "web-01 replicating from web-02 over TLS")
    with site(c) as client:
        resp = client.post("/api/entries", json={"text": "after switchover"})
        assert resp.status_code == 201 and resp.headers["x-db"] == "web-02"


@needs_agent
def test_etcd_refuses_plain_http_anonymous_and_wrong_users(hardened: Cluster) -> None:
    c = hardened
    agent = etcd_access.credentials(c, "agent")
    assert agent is not None
    key = dcs_prefix(c.topology) + "leader"
    # From an agent's host, which the firewall lets in: only the right user over TLS gets an answer.
    assert _in(c, "web-01", lambda: _etcd(c, "lb-02", agent).get(key)) is not None
    plain = _in(c, "web-01", lambda: _refusal(lambda: _etcd(c, "lb-02", agent, "http").get(key)))
    assert isinstance(plain, DcsUnreachable), plain
    anonymous = _in(c, "web-01", lambda: _refusal(lambda: _etcd(c, "lb-02", None).get(key)))
    assert isinstance(anonymous, DcsError) and "user name is empty" in str(anonymous), anonymous
    for user, password in (("agent", "wrong"), ("root", agent.password), ("nobody", agent.password)):
        creds = EtcdCredentials(user, password)
        refused = _in(c, "web-01", lambda creds=creds: _refusal(lambda: _etcd(c, "etcd-01", creds).get(key)))
        assert isinstance(refused, DcsAuthError), (user, refused)


@needs_agent
def test_the_agent_user_cannot_write_outside_its_prefix(hardened: Cluster) -> None:
    c = hardened
    agent = etcd_access.credentials(c, "agent")
    prefix = dcs_prefix(c.topology)
    client = _etcd(c, "etcd-01", agent)

    def attempts() -> list[BaseException | None]:
        client.put(prefix + "test-security", "mine")  # its own prefix: fine
        client.delete(prefix + "test-security")
        return [
            _refusal(lambda: client.put("/webinfra/other/leader", "x")),
            _refusal(lambda: client.put("/outside", "x")),
            _refusal(lambda: client.get_prefix("/webinfra/")),  # every cluster's keys
            _refusal(lambda: client.call("/v3/auth/user/add", {"name": "evil", "password": "x"})),
            _refusal(lambda: client.call("/v3/auth/disable", {})),
        ]

    for refused in _in(c, "web-01", attempts):
        assert isinstance(refused, DcsError) and refused.code == 7, refused  # PermissionDenied


@needs_agent
def test_etcd_peers_speak_tls_and_need_a_certificate_from_the_ca(hardened: Cluster) -> None:
    c = hardened
    layout = c.layout
    peer = f"{addr(c, 'lb-02')}:{c.topology.etcd.peer_port}"
    ca = ssl.create_default_context(cafile=layout.ca_cert)
    member = ssl.create_default_context(cafile=layout.ca_cert)
    member.load_cert_chain(layout.host_cert("lb-01"), layout.host_key("lb-01"))

    def get(url: str, verify: ssl.SSLContext | bool) -> int | str:
        try:
            return httpx.get(url, verify=verify, timeout=3).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    answers = _in(
        c,
        "lb-01",
        lambda: {
            "plain": get(f"http://{peer}/members", False),
            "no client certificate": get(f"https://{peer}/members", ca),
            "member certificate": get(f"https://{peer}/members", member),
        },
    )
    assert answers["member certificate"] == 200, answers
    assert answers["plain"] != 200 and answers["no client certificate"] != 200, answers
    # Every member advertises https peer and client URLs (so raft traffic between them is TLS).
    members = _in(
        c, "web-01", lambda: _etcd(c, "lb-01", etcd_access.credentials(c, "agent")).call("/v3/cluster/member/list", {})
    )["members"]
    assert len(members) == 3
    for m in members:
        assert all(u.startswith("https://") for u in m["peerURLs"] + m["clientURLs"]), m


@needs_agent
def test_etcd_metrics_stay_on_a_plain_http_port(hardened: Cluster) -> None:
    c = hardened
    port = c.topology.etcd.metrics_port
    for member in ("lb-01", "lb-02", "etcd-01"):
        url = f"http://{addr(c, member)}:{port}/metrics"
        resp = _in(c, member, lambda url=url: httpx.get(url, timeout=3))
        assert resp.status_code == 200 and "etcd_server_has_leader 1" in resp.text, member


@needs_agent
def test_etcd_auth_survives_a_restart_of_every_member_and_a_second_up(hardened: Cluster) -> None:
    c = hardened
    members = [h.name for h in c.topology.with_role(Role.ETCD)]
    for member in members:
        cli(c, "stop", member, "etcd")
    for member in members:
        cli(c, "start", member, "etcd")

    def writes() -> bool:
        try:
            with site(c) as client:
                return client.post("/api/entries", json={"text": "after etcd restart"}).status_code == 201
        except httpx.HTTPError:
            return False

    # The agents' tokens died with the members: they log in again by themselves.
    wait_for(writes, 60, "a write through the site after every etcd member restarted")
    assert etcd_access.ensure_auth(c) == []
    actions: list[tuple[str, str, str]] = []
    c.up(lambda host, what, action: actions.append((host, what, action)))
    assert not [a for a in actions if a[1] == "auth"], actions
    assert not [a for a in actions if a[1] in ("etcd", "agent") and a[2] != "unchanged" and a[0] in members]
    secrets = c.layout.secrets
    for name in ("etcd-root", "etcd-agent"):
        assert (secrets / f"{name}.password").stat().st_mode & 0o777 == 0o600


@needs_agent
def test_a_replica_added_by_scale_logs_in_to_etcd(hardened: Cluster, tmp_path: Path) -> None:
    c = hardened
    topo_file = tmp_path / "hardened.toml"
    topo_file.write_text(c.layout.topology_file.read_text())
    scale.add_replica(c, "db-03", topology_file=topo_file)
    now = Cluster.existing(c.topology.name, c.layout.cluster_dir.parent)
    member_key = dcs_prefix(now.topology) + "members/db-03"
    agent = etcd_access.credentials(now, "agent")

    def registered() -> bool:  # its agent logged in as `agent` and wrote its member key
        try:
            return _in(now, "web-01", lambda: _etcd(now, "etcd-01", agent).get(member_key)) is not None
        except (DcsError, DcsUnreachable):
            return False

    wait_for(registered, 30, "db-03's agent registered in etcd")
    # The new DB host may reach etcd's client port (the members' firewalls were re-derived), nothing more.
    found = nmap("-p", "2379,2380,2381", addr(now, "etcd-01"), netns=now.hosts["db-03"].netns)
    assert found.get(addr(now, "etcd-01"), set()) == {2379}
    scale.remove_replica(now, "db-03", topology_file=topo_file)
