"""Security, nothing started: the firewall derived from the topology (and accepted by `nft -c`), the PKI
(names, reuse, file modes, the user's own certificate), TLS in every rendered config, and the CLI's
`ca` / `firewall` commands and one-line errors for unreadable certificate files."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from topology_cases import GOOD, SPLIT, host

from testkit import EXAMPLES
from webinfra.cli.main import cli
from webinfra.model import TopologyError, load_topology, parse_topology
from webinfra.plan.build import build_plan
from webinfra.plan.daemons import firewall
from webinfra.plan.daemons.haproxy import render_haproxy
from webinfra.plan.render import TLS12_CIPHERS
from webinfra.services import pki
from webinfra.state import Layout

HARDENED_PRIMARY = (EXAMPLES / "hardened.toml").read_text().replace('route_writes_to = "any"\n', "")
MONITORED_SPLIT = (EXAMPLES / "split.toml").read_text() + host("mon-01", "monitoring")


def rules(topo_text: str) -> dict[str, set[tuple[str, tuple[str, ...] | None, str, tuple[int, ...]]]]:
    topo = parse_topology(topo_text)
    out: dict[str, set[tuple[str, tuple[str, ...] | None, str, tuple[int, ...]]]] = {h.name: set() for h in topo.hosts}
    for f in firewall.flows(topo):
        out[f.dest].add((f.name, f.sources, f.proto, f.ports))
    return out


# ---- firewall: derived flows ----


def test_flows_of_the_reference_design() -> None:
    assert rules(GOOD) == {
        "lb-01": {("clients -> haproxy", None, "tcp", (80, 443))},
        # web-01 and web-02 proxy to their own app (loopback): no app rule; each DB takes the other app.
        "web-01": {
            ("lb -> nginx", ("198.18.0.10",), "tcp", (443,)),
            ("app -> mariadb", ("198.18.0.12",), "tcp", (3306,)),
            ("replication (db <-> db)", ("198.18.0.12",), "tcp", (3306,)),
        },
        "web-02": {
            ("lb -> nginx", ("198.18.0.10",), "tcp", (443,)),
            ("app -> mariadb", ("198.18.0.11",), "tcp", (3306,)),
            ("replication (db <-> db)", ("198.18.0.11",), "tcp", (3306,)),
        },
    }


def test_flows_of_split_tiers_follow_who_talks_to_whom() -> None:
    # lb-01 .10, web-01 .11 (web only), app-01 .12, db-01 .13 primary, db-02 .14 replica; TLS off: port 80.
    assert rules("[tls]\nenabled = false\n" + SPLIT) == {
        "lb-01": {("clients -> haproxy", None, "tcp", (80,))},
        "web-01": {("lb -> nginx", ("198.18.0.10",), "tcp", (80,))},
        "app-01": {("nginx -> app", ("198.18.0.11",), "tcp", (8000,))},
        "db-01": {
            ("app -> mariadb", ("198.18.0.12",), "tcp", (3306,)),
            ("replication (db <-> db)", ("198.18.0.14",), "tcp", (3306,)),
        },
        "db-02": {
            ("app -> mariadb", ("198.18.0.12",), "tcp", (3306,)),
            ("replication (db <-> db)", ("198.18.0.13",), "tcp", (3306,)),
        },
    }


def test_flows_of_the_hardened_design() -> None:
    # lb-01 .10 and lb-02 .11 (lb, etcd), web-01 .12 and web-02 .13 (web, app, db), etcd-01 .14 (etcd only);
    # writes to the primary, so the LBs' write check asks the agents.
    got = rules(HARDENED_PRIMARY)
    lbs = ("198.18.0.10", "198.18.0.11")
    agents = ("198.18.0.12", "198.18.0.13")
    assert got["lb-01"] == {
        ("clients -> haproxy", None, "tcp", (80, 443)),
        ("vrrp from the lb peer", lbs[1:], "vrrp", ()),
        ("agents -> etcd", agents, "tcp", (2379,)),
        ("etcd peers", ("198.18.0.11", "198.18.0.14"), "tcp", (2380,)),
    }
    assert got["lb-02"] == {
        ("clients -> haproxy", None, "tcp", (80, 443)),
        ("vrrp from the lb peer", lbs[:1], "vrrp", ()),
        ("agents -> etcd", agents, "tcp", (2379,)),
        ("etcd peers", ("198.18.0.10", "198.18.0.14"), "tcp", (2380,)),
    }
    assert got["web-01"] == {
        ("lb -> nginx", lbs, "tcp", (443,)),
        ("app -> mariadb", ("198.18.0.13",), "tcp", (3306,)),
        ("replication (db <-> db)", ("198.18.0.13",), "tcp", (3306,)),
        ("dbproxy checks -> agent", ("198.18.0.13",), "tcp", (8008,)),
        ("lb write check -> agent", lbs, "tcp", (8008,)),
        ("agent <-> agent", ("198.18.0.13",), "tcp", (8008,)),
    }
    # No monitoring host: etcd's plain-HTTP metrics port (2381) takes nobody from outside.
    assert got["etcd-01"] == {
        ("agents -> etcd", agents, "tcp", (2379,)),
        ("etcd peers", lbs, "tcp", (2380,)),
    }


def test_prometheus_reaches_etcd_metrics_on_the_default_topology() -> None:
    default = (resources.files("webinfra.model") / "default.toml").read_text()
    got = rules(default)  # etcd on lb-01 .10, lb-02 .11 and mon-01 .14
    for member in ("lb-01", "lb-02"):  # (mon-01 reaches its own member over loopback)
        scrapes = [r for r in got[member] if r[0].startswith("monitoring -> ") and r[1] == ("198.18.0.14",)]
        assert len(scrapes) == 1 and 2381 in scrapes[0][3] and "etcd" in scrapes[0][0]


def test_monitoring_scrapes_pass_and_nothing_else_reaches_the_monitoring_host() -> None:
    got = rules(MONITORED_SPLIT)  # lb-01 .10 ... db-02 .16, mon-01 .17
    mon = ("198.18.2.17",)
    assert ("monitoring -> node, mysqld", mon, "tcp", (9100, 9104)) in got["db-01"]
    assert ("monitoring -> node, site", mon, "tcp", (9100, 8000)) in got["app-01"]
    assert ("monitoring -> node, haproxy", mon, "tcp", (9100, 8405)) in got["lb-01"]
    assert got["mon-01"] == {("management -> prometheus, alertmanager", ("198.18.2.1",), "tcp", (9090, 9093))}


def test_no_flow_reaches_a_port_nothing_listens_on_and_dbproxy_stays_local() -> None:
    from webinfra.model.topology import listeners

    for text in (GOOD, SPLIT, HARDENED_PRIMARY, (EXAMPLES / "split.toml").read_text(), MONITORED_SPLIT):
        topo = parse_topology(text)
        for f in firewall.flows(topo):
            ports = {p for _, p in listeners(topo, topo.host(f.dest))}
            assert set(f.ports) <= ports, f
            assert topo.db.writer_port not in f.ports and topo.db.reader_port not in f.ports


def test_ruleset_text_and_firewall_off() -> None:
    topo = parse_topology(GOOD)
    text = firewall.ruleset(topo, "web-01")
    assert text.index("table inet webinfra {}") < text.index("delete table inet webinfra")
    assert "policy drop;" in text and 'iif "lo" accept' in text and "ct state established,related accept" in text
    assert 'ip saddr 198.18.0.10 tcp dport 443 accept comment "lb -> nginx"' in text
    assert "webinfra_fault" not in text
    plan = build_plan(topo, Layout(Path("/state/webinfra")), python="/usr/bin/python3")
    assert plan.host("web-01").files[0].path.name == "firewall.nft"
    off = build_plan(parse_topology("firewall = false\n" + GOOD), Layout(Path("/s")), python="/usr/bin/python3")
    assert not any(f.path.name == "firewall.nft" for hp in off.hosts for f in hp.files)


def _can_check_nft() -> bool:
    return os.geteuid() == 0 and shutil.which("nft") is not None and shutil.which("unshare") is not None


@pytest.mark.skipif(not _can_check_nft(), reason="nft -c needs root and nftables")
@pytest.mark.parametrize("name", ["seed-with-firewall", "split", "hardened", "hardened-primary", "monitored"])
def test_every_ruleset_passes_nft_check(name: str) -> None:
    text = {
        "seed-with-firewall": (EXAMPLES / "seed.toml").read_text().replace("firewall = false", "firewall = true"),
        "split": (EXAMPLES / "split.toml").read_text(),
        "hardened": (EXAMPLES / "hardened.toml").read_text(),
        "hardened-primary": HARDENED_PRIMARY,
        "monitored": MONITORED_SPLIT,
    }[name]
    topo = parse_topology(text)
    for h in topo.hosts:
        # In a throwaway network namespace: a check only, but never against the machine's own tables.
        proc = subprocess.run(
            ["unshare", "--net", "nft", "-c", "-f", "-"],
            input=firewall.ruleset(topo, h.name),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, (h.name, proc.stderr)


# ---- PKI ----


def test_pki_names_modes_and_reuse(tmp_path: Path) -> None:
    topo = load_topology(EXAMPLES / "hardened.toml")
    layout = Layout(tmp_path / "c")
    # web and DB hosts (nginx, MariaDB) and etcd members each get their own certificate and key.
    assert sorted(pki.ensure_pki(topo, layout)) == ["ca", "etcd-01", "lb-01", "lb-02", "site", "web-01", "web-02"]
    assert pki.ensure_pki(topo, layout) == []  # reused
    assert layout.pki.stat().st_mode & 0o777 == 0o700
    for key in [*layout.pki.glob("*.key"), layout.site_pem]:
        assert key.stat().st_mode & 0o777 == 0o600, key
    ca = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650
    site = x509.load_pem_x509_certificates(layout.site_pem.read_bytes())[0]
    site.verify_directly_issued_by(ca)
    assert pki.names_of(site) == (
        {"www.foobar.com", "lb-01", "lb-02"},
        {"198.18.0.100", "198.18.0.10", "198.18.0.11"},
    )
    web = x509.load_pem_x509_certificate(layout.host_cert("web-02").read_bytes())
    assert pki.names_of(web) == ({"web-02"}, {"198.18.0.13"})
    assert b"PRIVATE KEY" in layout.site_pem.read_bytes()


def test_pki_reissues_only_what_no_longer_fits(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "c")
    pki.ensure_pki(parse_topology(GOOD), layout)
    moved = GOOD.replace('name = "web-02"', 'name = "web-02"\naddress = "198.18.0.50"')
    assert pki.ensure_pki(parse_topology(moved), layout) == ["web-02"]
    renamed = '[site]\nname = "shop.example.org"\n' + moved
    assert pki.ensure_pki(parse_topology(renamed), layout) == ["site"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=pki.LEAF_DAYS - 10)  # within the renewal margin
    assert sorted(pki.ensure_pki(parse_topology(renamed), layout, now=later)) == ["site", "web-01", "web-02"]
    assert pki.ensure_pki(parse_topology("[tls]\nenabled = false\n" + GOOD), layout) == []


def test_users_own_certificate(tmp_path: Path) -> None:
    # A certificate from "another" CA stands in for the user's own.
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = pki.new_ca("theirs", now)
    key, cert = pki.issue(ca_key, ca, pki.CertRequest("x", "www.foobar.com", ("www.foobar.com",), ()), now)
    files = {"cert": pki.pem_cert(cert), "key": pki.pem_key(key), "ca": pki.pem_cert(ca)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    text = (
        f'[tls]\ncert_file = "{tmp_path / "cert"}"\nkey_file = "{tmp_path / "key"}"\nca_file = "{tmp_path / "ca"}"\n'
        + GOOD
    )
    topo = parse_topology(text)
    layout = Layout(tmp_path / "c")
    assert sorted(pki.ensure_pki(topo, layout)) == ["ca", "site", "web-01", "web-02"]
    assert layout.site_pem.read_bytes() == files["cert"] + files["key"]
    assert not (layout.pki / "site.crt").exists()  # no webinfra site certificate then
    assert pki.ca_path(topo, layout) == tmp_path / "ca"
    # The user's key must be the certificate's.
    other_key, _ = pki.new_ca("other", now)
    (tmp_path / "key").write_bytes(pki.pem_key(other_key))
    with pytest.raises(TopologyError) as info:
        pki.check_tls_files(topo, "t.toml")
    assert str(info.value) == f"t.toml: tls.key_file = '{tmp_path / 'key'}': is not the key of tls.cert_file"


# ---- TLS in the rendered configs ----


def test_tls_in_every_config() -> None:
    topo = load_topology(EXAMPLES / "split.toml")
    layout = Layout(Path("/state/split"))
    plan = build_plan(topo, layout, python="/usr/bin/python3")
    cfg = render_haproxy(topo, layout, "lb-01")
    assert "bind 0.0.0.0:443 ssl crt /state/split/pki/site.pem alpn h2,http/1.1" in cfg
    assert "http-request redirect scheme https code 301 unless { ssl_fc }" in cfg
    assert 'http-response set-header Strict-Transport-Security "max-age=63072000"' in cfg
    assert cfg.count("ssl-min-ver TLSv1.2") == 2 and f"ssl-default-bind-ciphers {TLS12_CIPHERS}" in cfg
    nginx = plan.host("web-01").files_of(plan.host("web-01").service("nginx"))[0].content
    assert "listen 0.0.0.0:443 ssl default_server" in nginx and "ssl_protocols TLSv1.2 TLSv1.3;" in nginx
    assert "ssl_certificate /state/split/pki/web-01.crt;" in nginx and "ssl_session_cache shared:SSL:10m;" in nginx
    probe = plan.host("web-01").service("nginx").probe
    assert (probe.kind, probe.port, probe.ca_file) == ("https", 443, "/state/split/pki/ca.pem")
    cnf = plan.host("db-01").files_of(plan.host("db-01").service("mariadb"))[0].content
    assert "ssl-cert = /state/split/pki/db-01.crt" in cnf and "tls-version = TLSv1.2,TLSv1.3" in cnf
    site = json.loads(plan.host("app-01").files_of(plan.host("app-01").service("app"))[0].content)
    assert site["db"]["tls_ca_file"] == "/state/split/pki/ca.pem" and site["db"]["tls_check_hostname"] is True


def test_edge_tls_only_and_no_tls() -> None:
    layout = Layout(Path("/state/webinfra"))
    edge = parse_topology("[tls]\nbackend = false\n" + GOOD)
    assert edge.web.port == 80 and not edge.backend_tls and edge.site_url == "https://198.18.0.10/"
    cfg = render_haproxy(edge, layout, "lb-01")
    assert "bind 0.0.0.0:443 ssl" in cfg and "verify required" not in cfg
    explicit = parse_topology("[web]\nport = 8443\n" + GOOD)
    assert explicit.web.port == 8443 and explicit.backend_tls
    plain = parse_topology("[tls]\nenabled = false\n" + GOOD)
    cfg = render_haproxy(plain, layout, "lb-01")
    assert "ssl" not in cfg and "Strict-Transport-Security" not in cfg and plain.web.port == 80
    single = parse_topology(
        "[tls]\nbackend = false\n[lb]\nport = 8080\nhttps_port = 8443\n"
        + host("aio-01", "lb", "web", "app", "db", db_role='"primary"')
    )
    assert single.site_url == "https://198.18.0.10:8443/"
    assert "redirect location https://%[req.hdr(host),field(1,:)]:8443" in render_haproxy(single, layout, "aio-01")


# ---- CLI ----


def test_cli_firewall_and_ca(tmp_path: Path) -> None:
    runner = CliRunner()
    split = str(EXAMPLES / "split.toml")
    state = ["--state-dir", str(tmp_path)]
    result = runner.invoke(cli, ["firewall", "-f", split, *state, "db-01"])
    assert result.exit_code == 0, result.output
    assert 'ip saddr { 198.18.2.13, 198.18.2.14 } tcp dport 3306 accept comment "app -> mariadb"' in result.output
    result = runner.invoke(cli, ["firewall", "-f", str(EXAMPLES / "seed.toml"), *state, "web-01"])
    assert result.exit_code == 2 and "firewall = false" in result.output
    result = runner.invoke(cli, ["firewall", "-f", split, *state, "nope"])
    assert result.exit_code == 2 and "unknown host 'nope'" in result.output
    result = runner.invoke(cli, ["ca", "-f", split, *state])
    assert result.exit_code == 2 and "run `webinfra up` first" in result.output
    pki.ensure_pki(load_topology(split), Layout.for_cluster("split", tmp_path))
    result = runner.invoke(cli, ["ca", "-f", split, *state])
    assert result.exit_code == 0 and result.output == f"{tmp_path / 'split' / 'pki' / 'ca.pem'}\n"
    result = runner.invoke(cli, ["ca", "-f", str(EXAMPLES / "seed.toml"), *state])
    assert result.exit_code == 2 and "no TLS" in result.output


def test_unreadable_certificate_file_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    missing = tmp_path / "missing.crt"
    bad.write_text(f'[tls]\ncert_file = "{missing}"\nkey_file = "{tmp_path / "k"}"\n' + GOOD)
    for args in (["validate", "-f", str(bad)], ["up", "-f", str(bad), "--state-dir", str(tmp_path / "s")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.output.strip() == f"error: {bad}: tls.cert_file = '{missing}': cannot read: file not found"
    assert not (tmp_path / "s").exists()
