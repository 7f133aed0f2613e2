"""The topology model: a bad file is one `TopologyError` line naming the file, the field and the value; good
files (the built-in default, the examples) load, and the derived views number and order hosts as documented."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topology_cases import BAD_TOPOLOGIES, GOOD, haproxy_sections, host

from testkit import EXAMPLES
from webinfra.model import Role, TopologyError, load_topology, parse_topology
from webinfra.plan.build import build_plan
from webinfra.plan.daemons.haproxy import render_haproxy
from webinfra.state import Layout


def assert_one_line_from(error: TopologyError, source: str) -> str:
    line = str(error)
    assert line.startswith(f"{source}: "), line
    assert len(line.splitlines()) == 1 and "\n" not in line and "\r" not in line, repr(line)
    return line


# ---- bad files ----


@pytest.mark.parametrize(("text", "expected"), BAD_TOPOLOGIES)
def test_bad_topology_is_one_line_naming_file_field_and_value(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    line = assert_one_line_from(info.value, str(path))
    assert expected in line


@pytest.mark.parametrize(("text", "expected"), BAD_TOPOLOGIES)
def test_parse_names_the_given_source(text: str, expected: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "topo.toml")
    assert expected in assert_one_line_from(info.value, "topo.toml")


def test_error_keeps_field_and_value_apart() -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(GOOD.replace('name = "web-02"', 'name = "web-02"\nweight = 300'), "f.toml")
    err = info.value
    assert (err.source, err.field, err.value) == ("f.toml", "hosts[2].weight", 300)


def test_long_values_are_shortened_to_keep_one_line() -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(f'name = "{"x" * 500}"\n' + GOOD, "f.toml")
    line = assert_one_line_from(info.value, "f.toml")
    assert "name = 'xxx" in line and "...: String should match pattern" in line and len(line) < 200


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert assert_one_line_from(info.value, str(path)) == f"{path}: file not found"


def test_directory_and_binary_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(tmp_path)
    assert "cannot read" in assert_one_line_from(info.value, str(tmp_path))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TopologyError) as info:
        load_topology(binary)
    assert "cannot read: UnicodeDecodeError" in assert_one_line_from(info.value, str(binary))


# ---- good files ----


def test_default_topology_is_the_hardened_design() -> None:
    topo = load_topology(None)
    assert topo.name == "webinfra"
    assert topo.site.name == "www.foobar.com"
    assert [(h.name, [r.value for r in h.roles], h.db_role) for h in topo.hosts] == [
        ("lb-01", ["lb", "etcd"], None),
        ("lb-02", ["lb", "etcd"], None),
        ("web-01", ["web", "app", "db"], "primary"),
        ("web-02", ["web", "app", "db"], "replica"),
        # Prometheus (every host then runs its exporters), and the third etcd member: off the DB hosts.
        ("mon-01", ["monitoring", "etcd"], None),
    ]
    assert topo.ha and topo.lb_pair and topo.tls.enabled and topo.firewall
    assert topo.lb.route_writes_to == "any"
    assert topo.site_url == "https://198.18.0.100/"


def test_hardened_example_is_the_default_with_an_etcd_host_instead_of_monitoring() -> None:
    default = load_topology(None)
    hardened = load_topology(EXAMPLES / "hardened.toml")
    assert [h for h in default.hosts if h.name != "mon-01"] == [h for h in hardened.hosts if h.name != "etcd-01"]
    assert [r.value for r in hardened.host("etcd-01").roles] == ["etcd"]
    assert hardened.site_url == default.site_url
    # Neither puts an etcd member on a DB host (a partitioned primary must not cost etcd its leader).
    for topo in (default, hardened):
        assert not [h.name for h in topo.with_role(Role.ETCD) if h.has(Role.DB)]


def test_seed_example() -> None:
    topo = load_topology(EXAMPLES / "seed.toml")
    assert topo.name == "seed"
    assert topo.site.name == "www.foobar.com"
    assert topo.network.subnet == ipaddress.IPv4Network("198.18.0.0/24")
    assert topo.lb.route_writes_to == "primary"
    assert [(h.name, h.roles, h.db_role, h.weight, h.backup) for h in topo.hosts] == [
        ("lb-01", (Role.LB,), None, None, None),
        ("web-01", (Role.WEB, Role.APP, Role.DB), "primary", 1, None),
        ("web-02", (Role.WEB, Role.APP, Role.DB), "replica", 1, None),
    ]
    assert topo.site_url == "http://198.18.0.10/"


def test_seed_example_names_the_weaknesses_it_keeps() -> None:
    text = (EXAMPLES / "seed.toml").read_text().lower()
    for weakness in ("single load balancer", "single primary", "https", "firewall", "monitoring"):
        assert weakness in text, weakness


def test_split_example() -> None:
    topo = load_topology(EXAMPLES / "split.toml")
    assert topo.name == "split"
    assert topo.network.subnet == ipaddress.IPv4Network("198.18.2.0/24")
    assert topo.lb.route_writes_to == "any"
    roles = {h.name: tuple(r.value for r in h.roles) for h in topo.hosts}
    assert roles == {
        "lb-01": ("lb",),
        "web-01": ("web",),
        "web-02": ("web",),
        "app-01": ("app",),
        "app-02": ("app",),
        "db-01": ("db",),
        "db-02": ("db",),
    }
    assert topo.db_primary is not None and topo.db_primary.name == "db-01"
    assert [h.name for h in topo.db_replicas] == ["db-02"]
    assert [h.name for h in topo.app_upstreams_of("web-01")] == ["app-01", "app-02"]
    assert [h.name for h in topo.db_readers_for("app-01")] == ["db-02"]
    assert str(topo.address_of("db-02")) == "198.18.2.16"
    assert topo.site_url == "https://198.18.2.10/"  # secure defaults: HTTPS, TLS behind the LB, firewall
    assert topo.tls.enabled and topo.backend_tls and topo.firewall and topo.web.port == 443


# ---- derived views ----


def test_address_of_numbers_from_10_in_file_order_skipping_explicit_addresses() -> None:
    topo = parse_topology(
        host("lb-01", "lb")
        + host("web-01", "web", "app", "db", db_role='"primary"', address='"198.18.0.50"')
        + host("web-02", "web", "app", "db", db_role='"replica"')
        + host("web-03", "web", "app", address='"198.18.0.200"')
        + host("web-04", "web", "app")
    )
    assert {h.name: str(topo.address_of(h.name)) for h in topo.hosts} == {
        "lb-01": "198.18.0.10",
        "web-01": "198.18.0.50",
        "web-02": "198.18.0.11",
        "web-03": "198.18.0.200",
        "web-04": "198.18.0.12",
    }
    assert str(topo.gateway) == "198.18.0.1"
    with pytest.raises(KeyError):
        topo.address_of("web-99")


def test_address_of_follows_the_subnet() -> None:
    topo = parse_topology('[network]\nsubnet = "10.20.0.0/16"\n' + GOOD)
    assert [str(topo.address_of(h.name)) for h in topo.hosts] == ["10.20.0.10", "10.20.0.11", "10.20.0.12"]
    assert str(topo.gateway) == "10.20.0.1"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("[tls]\nenabled = false\n", "http://198.18.0.10/"),
        ("[tls]\nenabled = false\n[lb]\nport = 8080\n", "http://198.18.0.10:8080/"),
        ('[tls]\nenabled = false\n[site]\nname = "shop.example.org"\n', "http://198.18.0.10/"),
        ("", "https://198.18.0.10/"),
        ("[lb]\nport = 8080\n", "https://198.18.0.10/"),  # with TLS, `port` only redirects
        ("[lb]\nhttps_port = 8443\n", "https://198.18.0.10:8443/"),
    ],
)
def test_site_url(prefix: str, expected: str) -> None:
    assert parse_topology(prefix + GOOD).site_url == expected


def test_site_url_uses_the_lb_address_wherever_it_is_listed() -> None:
    text = (
        host("web-01", "web", "app", "db", db_role='"primary"')
        + host("web-02", "web", "app", "db", db_role='"replica"')
        + host("lb-01", "lb", address='"198.18.0.5"')
    )
    topo = parse_topology(text)
    assert topo.entry_host.name == "lb-01"
    assert topo.site_url == "https://198.18.0.5/"


def test_db_readers_for_puts_the_local_replica_first() -> None:
    topo = parse_topology(
        host("lb-01", "lb")
        + host("web-01", "web", "app", "db", db_role='"replica"')
        + host("web-02", "web", "app", "db", db_role='"primary"')
        + host("web-03", "web", "app", "db", db_role='"replica"')
        + host("web-04", "web", "app", "db", db_role='"replica"')
        + host("web-05", "web", "app")
    )
    readers = {h.name: [r.name for r in topo.db_readers_for(h.name)] for h in topo.with_role(Role.APP)}
    assert readers == {
        "web-01": ["web-01", "web-03", "web-04"],
        "web-02": ["web-01", "web-03", "web-04"],  # the primary reads from the replicas, in file order
        "web-03": ["web-03", "web-01", "web-04"],
        "web-04": ["web-04", "web-01", "web-03"],
        "web-05": ["web-01", "web-03", "web-04"],
    }
    assert topo.db_primary is not None and topo.db_primary.name == "web-02"
    assert all(r.db_role == "replica" for r in topo.db_replicas)


def test_db_readers_for_without_replicas_is_empty() -> None:
    topo = parse_topology(host("lb-01", "lb") + host("web-01", "web", "app", "db", db_role='"primary"'))
    assert topo.db_readers_for("web-01") == ()


def test_app_upstreams_of() -> None:
    topo = parse_topology(
        '[lb]\nroute_writes_to = "any"\n'
        + host("lb-01", "lb")
        + host("app-01", "app")
        + host("web-01", "web", "app")
        + host("web-02", "web")
        + host("app-02", "app", "db", db_role='"primary"')
    )
    # A web host with its own app server proxies to it alone; a web-only host to every app-only host.
    assert [h.name for h in topo.app_upstreams_of("web-01")] == ["web-01"]
    assert [h.name for h in topo.app_upstreams_of("web-02")] == ["app-01", "app-02"]
    with pytest.raises(KeyError):
        topo.app_upstreams_of("web-99")


def test_lb_weight_and_backup_defaults() -> None:
    topo = parse_topology(GOOD.replace('name = "web-02"', 'name = "web-02"\nweight = 0\nbackup = true'))
    web1, web2 = topo.host("web-01"), topo.host("web-02")
    assert (web1.lb_weight, web1.is_backup) == (1, False)
    assert (web2.lb_weight, web2.is_backup) == (0, True)


def test_topology_is_immutable() -> None:
    topo = parse_topology(GOOD)
    with pytest.raises(ValueError):
        topo.hosts[0].name = "other"  # type: ignore[misc]


# ---- properties ----


@st.composite
def web_tiers(draw: st.DrawFn) -> list[tuple[int | None, bool]]:
    """(weight or None for the default, backup) per web host; at least one is active with a weight above 0."""
    tiers = draw(
        st.lists(st.tuples(st.none() | st.integers(0, 256), st.booleans()), min_size=1, max_size=8),
    )
    active = draw(st.integers(0, len(tiers) - 1))
    tiers[active] = (draw(st.none() | st.integers(1, 256)), False)
    return tiers


@settings(max_examples=60, deadline=None)
@given(tiers=web_tiers(), primary_at=st.integers(0, 7), lb_first=st.booleans())
def test_any_valid_web_tier_validates_and_renders(
    tiers: list[tuple[int | None, bool]], primary_at: int, lb_first: bool
) -> None:
    primary_at %= len(tiers)
    webs = []
    for i, (weight, backup) in enumerate(tiers):
        fields = {"db_role": '"primary"' if i == primary_at else '"replica"', "backup": str(backup).lower()}
        if weight is not None:
            fields["weight"] = str(weight)
        webs.append(host(f"web-{i + 1:02d}", "web", "app", "db", **fields))
    lb = host("lb-01", "lb")
    text = "".join([lb, *webs] if lb_first else [*webs, lb])
    topo = parse_topology(text, "prop.toml")

    layout = Layout(Path("/state/webinfra"))
    plan = build_plan(topo, layout, python="/usr/bin/python3")
    assert [h.name for h in plan.hosts] == [h.name for h in topo.hosts]
    cfg = render_haproxy(topo, layout, "lb-01")
    sections = haproxy_sections(cfg)
    servers = [line.split(" check-ssl")[0].split() for line in sections["backend site"] if line.startswith("server ")]
    assert servers == [
        [
            "server",
            f"web-{i + 1:02d}",
            f"{topo.address_of(f'web-{i + 1:02d}')}:{topo.web.port}",
            "weight",
            str(1 if w is None else w),
        ]
        + ["check"]
        + (["backup"] if b else [])
        for i, (w, b) in enumerate(tiers)
    ]
    # Writes go to the primary's web server only, never as a backup.
    writes = [line.split() for line in sections["backend site_writes"] if line.startswith("server ")]
    assert [w[1] for w in writes] == [f"web-{primary_at + 1:02d}"]
    assert all("backup" not in w for w in writes)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_garbage_raises_only_topology_errors(text: str) -> None:
    try:
        parse_topology(text, "garbage.toml")
    except TopologyError as exc:
        assert_one_line_from(exc, "garbage.toml")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "[[hosts]]",
                '[network]\nsubnet = "255.255.255.240/28"',
                'name = "lb-01"',
                'name = "web-01"',
                'roles = ["lb"]',
                'roles = ["web", "app", "db"]',
                'roles = ["app"]',
                'db_role = "primary"',
                'db_role = "replica"',
                "weight = 300",
                "backup = true",
                'address = "198.18.0.1"',
                "[lb]",
                'route_writes_to = "any"',
                "port = 3306",
                '"odd\\nkey" = 1',
            ]
        ),
        max_size=30,
    )
)
def test_toml_shaped_garbage_raises_only_topology_errors(lines: list[str]) -> None:
    try:
        parse_topology("\n".join(lines), "shaped.toml")
    except TopologyError as exc:
        assert_one_line_from(exc, "shaped.toml")
