"""Small topology files shared by the unit tests: a good base, and a table of bad ones with the part of the
error line each must produce (field path, value and message).

`host()` writes one [[hosts]] table; keyword values are raw TOML so a case can give any field any type.
"""

from __future__ import annotations

import pytest

from testkit import EXAMPLES


def host(name: str, *roles: str, **fields: str) -> str:
    lines = ["[[hosts]]", f'name = "{name}"', "roles = [" + ", ".join(f'"{r}"' for r in roles) + "]"]
    lines += [f"{key} = {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n\n"


LB = host("lb-01", "lb")
PRIMARY = host("web-01", "web", "app", "db", db_role='"primary"')
REPLICA = host("web-02", "web", "app", "db", db_role='"replica"')
# The reference design (lb-01 .10, web-01 .11 primary, web-02 .12 replica): a good file to break one field of.
GOOD = LB + PRIMARY + REPLICA

# Split tiers, used where a rule needs web-only / app-only / db-only hosts.
WEB_ONLY = host("web-01", "web")
APP_ONLY = host("app-01", "app")
DB_PRIMARY = host("db-01", "db", db_role='"primary"')
DB_REPLICA = host("db-02", "db", db_role='"replica"')
SPLIT = '[lb]\nroute_writes_to = "any"\n\n' + LB + WEB_ONLY + APP_ONLY + DB_PRIMARY + DB_REPLICA


def _case(case_id: str, text: str, expected: str) -> object:
    return pytest.param(text, expected, id=case_id)


BAD_TOPOLOGIES = [
    # ---- not TOML at all ----
    _case("toml-unclosed-string", 'name = "seed\n' + GOOD, "invalid TOML: "),
    _case("toml-unclosed-table", "[[hosts]\n" + GOOD, "invalid TOML: "),
    _case("toml-duplicate-key", 'name = "a"\nname = "b"\n' + GOOD, "invalid TOML: "),
    _case("toml-bare-value", "this is not toml\n", "invalid TOML: "),
    # ---- unknown fields ----
    _case("unknown-top-level", 'colour = "blue"\n' + GOOD, "colour = 'blue': unknown field"),
    _case("unknown-in-section", '[lb]\nalgorithm = "leastconn"\n' + GOOD, "lb.algorithm = 'leastconn': unknown field"),
    _case(
        "unknown-host-field",
        LB + host("web-01", "web", "app", "db", db_role='"primary"', port="8080") + REPLICA,
        "hosts[1].port = 8080: unknown field",
    ),
    _case("unknown-section", "[cache]\nsize = 10\n" + GOOD, "cache = {'size': 10}: unknown field"),
    _case("newline-in-key-stays-on-one-line", '[lb]\n"a\\nb" = 1\n' + GOOD, "lb.'a\\nb' = 1: unknown field"),
    # ---- missing ----
    _case("missing-hosts", 'name = "seed"\n', "hosts: required field is missing"),
    _case("empty-hosts", "hosts = []\n", "hosts = []: Tuple should have at least 1 item"),
    _case("missing-host-name", '[[hosts]]\nroles = ["lb"]\n', "hosts[0].name: required field is missing"),
    _case("missing-host-roles", '[[hosts]]\nname = "lb-01"\n', "hosts[0].roles: required field is missing"),
    _case("empty-roles", LB + host("web-01", db_role='"primary"'), "hosts[1].roles = []: Tuple should have at least"),
    # ---- wrong types and values ----
    _case("hosts-is-a-table", '[hosts]\nname = "lb-01"\n', "hosts = {'name': 'lb-01'}: Input should be a valid tuple"),
    _case("roles-is-a-string", '[[hosts]]\nname = "lb-01"\nroles = "lb"\n', "hosts[0].roles = 'lb': "),
    _case("unknown-role", LB + host("web-01", "cache") + REPLICA, "hosts[1].roles[0] = 'cache': Input should be"),
    _case(
        "role-twice",
        LB + host("web-01", "web", "web", "app", "db", db_role='"primary"') + REPLICA,
        "hosts[1].roles = ['web', 'web', 'app', 'db']: a role is listed twice",
    ),
    _case(
        "host-name-is-number",
        '[[hosts]]\nname = 5\nroles = ["lb"]\n',
        "hosts[0].name = 5: Input should be a valid string",
    ),
    _case(
        "host-name-uppercase", host("LB_01", "lb") + PRIMARY + REPLICA, "hosts[0].name = 'LB_01': String should match"
    ),
    _case(
        "weight-is-string",
        LB + host("web-01", "web", "app", "db", db_role='"primary"', weight='"2"') + REPLICA,
        "hosts[1].weight = '2': Input should be a valid integer",
    ),
    _case(
        "weight-is-bool",
        LB + PRIMARY + host("web-02", "web", "app", "db", db_role='"replica"', weight="true"),
        "hosts[2].weight = True: Input should be a valid integer",
    ),
    _case(
        "weight-is-float",
        LB + PRIMARY + host("web-02", "web", "app", "db", db_role='"replica"', weight="1.5"),
        "hosts[2].weight = 1.5: Input should be a valid integer",
    ),
    _case(
        "backup-is-string",
        LB + PRIMARY + host("web-02", "web", "app", "db", db_role='"replica"', backup='"yes"'),
        "hosts[2].backup = 'yes': Input should be a valid boolean",
    ),
    _case(
        "backup-is-int",
        LB + PRIMARY + host("web-02", "web", "app", "db", db_role='"replica"', backup="1"),
        "hosts[2].backup = 1: Input should be a valid boolean",
    ),
    _case(
        "db-role-unknown",
        LB + host("web-01", "web", "app", "db", db_role='"master"') + REPLICA,
        "hosts[1].db_role = 'master': Input should be 'primary' or 'replica'",
    ),
    _case("port-is-string", '[lb]\nport = "80"\n' + GOOD, "lb.port = '80': Input should be a valid integer"),
    _case("port-zero", "[web]\nport = 0\n" + GOOD, "web.port = 0: Input should be greater than or equal to 1"),
    _case(
        "port-too-big", "[app]\nport = 70000\n" + GOOD, "app.port = 70000: Input should be less than or equal to 65535"
    ),
    _case("site-is-string", 'site = "www.foobar.com"\n' + GOOD, "site = 'www.foobar.com': "),
    _case(
        "route-writes-unknown",
        '[lb]\nroute_writes_to = "all"\n' + GOOD,
        "lb.route_writes_to = 'all': Input should be 'primary' or 'any'",
    ),
    _case(
        "ryw-wait-is-string",
        '[db]\nryw_wait_seconds = "1"\n' + GOOD,
        "db.ryw_wait_seconds = '1': Input should be a valid number",
    ),
    _case("subnet-is-int", "[network]\nsubnet = 5\n" + GOOD, "network.subnet = 5: Input should be a string"),
    _case(
        "address-is-int",
        LB + host("web-01", "web", "app", "db", db_role='"primary"', address="3323068427") + REPLICA,
        "hosts[1].address = 3323068427: Input should be a string",
    ),
    _case(
        "address-not-an-address",
        LB + host("web-01", "web", "app", "db", db_role='"primary"', address='"198.18.0.256"') + REPLICA,
        "hosts[1].address = '198.18.0.256': Input is not a valid IPv4 address",
    ),
    # ---- names ----
    _case("cluster-name-uppercase", 'name = "Seed"\n' + GOOD, "name = 'Seed': String should match pattern"),
    _case("cluster-name-too-long", 'name = "seedling1"\n' + GOOD, "name = 'seedling1': String should match pattern"),
    _case("cluster-name-hyphen", 'name = "my-web"\n' + GOOD, "name = 'my-web': String should match pattern"),
    _case(
        "site-name-space",
        '[site]\nname = "www foobar.com"\n' + GOOD,
        "site.name = 'www foobar.com': String should match",
    ),
    _case("site-name-empty-label", '[site]\nname = "www..com"\n' + GOOD, "site.name = 'www..com': String should match"),
    _case(
        "site-name-url", '[site]\nname = "http://www.foobar.com/"\n' + GOOD, "site.name = 'http://www.foobar.com/': "
    ),
    # ---- network ----
    _case(
        "subnet-host-bits",
        '[network]\nsubnet = "198.18.0.5/24"\n' + GOOD,
        "network.subnet = '198.18.0.5/24': Input is not a valid IPv4 network",
    ),
    _case(
        "subnet-prefix-too-long",
        '[network]\nsubnet = "198.18.0.0/29"\n' + GOOD,
        "network.subnet = '198.18.0.0/29': prefix length must be between /16 and /28",
    ),
    _case(
        "subnet-prefix-too-short",
        '[network]\nsubnet = "10.0.0.0/8"\n' + GOOD,
        "network.subnet = '10.0.0.0/8': prefix length must be between /16 and /28",
    ),
    _case(
        "address-out-of-subnet",
        LB + host("web-01", "web", "app", "db", db_role='"primary"', address='"10.0.0.5"') + REPLICA,
        "hosts[1].address = '10.0.0.5': must be a usable host address in 198.18.0.0/24",
    ),
    _case(
        "address-is-gateway",
        LB + host("web-01", "web", "app", "db", db_role='"primary"', address='"198.18.0.1"') + REPLICA,
        "hosts[1].address = '198.18.0.1': must be a usable host address in 198.18.0.0/24 other than 198.18.0.1",
    ),
    _case(
        "address-is-network",
        host("lb-01", "lb", address='"198.18.0.0"') + PRIMARY + REPLICA,
        "hosts[0].address = '198.18.0.0': must be a usable host address",
    ),
    _case(
        "address-is-broadcast",
        host("lb-01", "lb", address='"198.18.0.255"') + PRIMARY + REPLICA,
        "hosts[0].address = '198.18.0.255': must be a usable host address",
    ),
    _case(
        "address-taken-by-numbered-host",
        LB + PRIMARY + host("web-02", "web", "app", "db", db_role='"replica"', address='"198.18.0.10"'),
        "hosts[2].address = '198.18.0.10': address already used by lb-01",
    ),
    _case(
        "address-taken-twice-explicitly",
        host("lb-01", "lb", address='"198.18.0.50"')
        + host("web-01", "web", "app", "db", db_role='"primary"', address='"198.18.0.50"')
        + REPLICA,
        "hosts[1].address = '198.18.0.50': address already used by lb-01",
    ),
    _case(
        "numbering-runs-out-of-subnet",
        '[network]\nsubnet = "198.18.0.0/28"\n'
        + GOOD
        + host("app-01", "app")
        + host("app-02", "app")
        + host("app-03", "app"),
        "hosts[5].address = '198.18.0.15': must be a usable host address in 198.18.0.0/28",
    ),
    # The 7th numbered host would be 255.255.255.256: an error line, not an AddressValueError.
    _case(
        "numbering-runs-past-the-address-space",
        '[network]\nsubnet = "255.255.255.240/28"\n' + GOOD + "".join(host(f"app-0{i}", "app") for i in range(1, 5)),
        "hosts[5].address = '255.255.255.255': must be a usable host address",
    ),
    # ---- hosts ----
    _case(
        "duplicate-host-name",
        LB + PRIMARY + host("web-01", "web", "app", "db", db_role='"replica"'),
        "hosts[2].name = 'web-01': duplicate host name (also hosts[1])",
    ),
    _case(
        "weight-too-big",
        LB + host("web-01", "web", "app", "db", db_role='"primary"', weight="257") + REPLICA,
        "hosts[1].weight = 257: Input should be less than or equal to 256",
    ),
    _case(
        "weight-negative",
        LB + PRIMARY + host("web-02", "web", "app", "db", db_role='"replica"', weight="-1"),
        "hosts[2].weight = -1: Input should be greater than or equal to 0",
    ),
    _case(
        "weight-on-lb",
        host("lb-01", "lb", weight="2") + PRIMARY + REPLICA,
        "hosts[0].weight = 2: only a 'web' host (a load-balancer backend) has a weight",
    ),
    _case(
        "backup-on-db-only-host",
        SPLIT.replace('name = "db-02"', 'name = "db-02"\nbackup = true'),
        "hosts[4].backup = True: only a 'web' host (a load-balancer backend) can be a backup",
    ),
    _case(
        "db-host-without-db-role",
        LB + PRIMARY + host("web-02", "web", "app", "db"),
        'hosts[2].db_role = None: a \'db\' host needs db_role = "primary" or "replica"',
    ),
    _case(
        "db-role-without-db",
        host("lb-01", "lb", db_role='"replica"') + PRIMARY + REPLICA,
        "hosts[0].db_role = 'replica': only a host with the 'db' role has a db_role",
    ),
    _case(
        "two-primaries",
        LB + PRIMARY + host("web-02", "web", "app", "db", db_role='"primary"'),
        "hosts = ['web-01', 'web-02']: 2 'db' hosts have db_role = \"primary\": exactly one may",
    ),
    _case(
        "no-primary",
        LB + host("web-01", "web", "app", "db", db_role='"replica"') + REPLICA,
        "hosts: no 'db' host has db_role = \"primary\" (db hosts: web-01, web-02): make one the primary",
    ),
    _case(
        "no-database-at-all",
        LB + host("web-01", "web", "app"),
        "hosts: no host has the 'db' role: add one with db_role = \"primary\"",
    ),
    _case("no-lb", PRIMARY + REPLICA, "hosts = []: one host (single LB) or two (an LB pair) must have 'lb'"),
    _case(
        "three-lbs",
        LB + host("lb-02", "lb") + host("lb-03", "lb") + PRIMARY + REPLICA,
        "hosts = ['lb-01', 'lb-02', 'lb-03']: one host (single LB) or two (an LB pair) must have 'lb'",
    ),
    _case(
        "even-etcd-members",
        host("lb-01", "lb", "etcd") + host("web-01", "web", "app", "db", "etcd", db_role='"primary"') + REPLICA,
        "hosts = ['lb-01', 'web-01']: the 'etcd' role needs an odd number of hosts",
    ),
    _case(
        "etcd-election-too-short",
        "[etcd]\nheartbeat_ms = 500\nelection_timeout_ms = 500\n" + GOOD,
        "etcd.election_timeout_ms = 500: etcd needs at least 5 x heartbeat_ms (2500)",
    ),
    _case(
        "agent-loop-too-slow-for-the-lease",
        "[db]\nloop_interval_ms = 1600\n" + GOOD,
        "db.loop_interval_ms = 1600: the agents renew their lease once a cycle",
    ),
    _case(
        "vip-without-pair",
        '[lb]\nvip = "198.18.0.100"\n' + GOOD,
        "lb.vip = '198.18.0.100': a virtual IP needs two 'lb' hosts",
    ),
    _case(
        "vip-on-a-host-address",
        '[lb]\nvip = "198.18.0.11"\n' + LB + host("lb-02", "lb") + PRIMARY + REPLICA,
        "lb.vip = '198.18.0.11': must be a free usable address in 198.18.0.0/24",
    ),
    _case(
        "no-web",
        LB + host("app-01", "app", "db", db_role='"primary"'),
        "hosts = []: at least one host must have the 'web' role",
    ),
    _case(
        "every-web-host-backup",
        LB
        + host("web-01", "web", "app", "db", db_role='"primary"', backup="true")
        + host("web-02", "web", "app", "db", db_role='"replica"', backup="true"),
        "hosts = ['web-01', 'web-02']: every 'web' host is a backup: at least one must be active",
    ),
    _case(
        "every-web-host-weight-0",
        LB
        + host("web-01", "web", "app", "db", db_role='"primary"', weight="0")
        + host("web-02", "web", "app", "db", db_role='"replica"', weight="0", backup="true"),
        "hosts = ['web-01', 'web-02']: every 'web' host has weight 0: no host would get traffic",
    ),
    _case(
        "no-app-at-all",
        '[lb]\nroute_writes_to = "any"\n' + LB + WEB_ONLY + DB_PRIMARY,
        "hosts = []: at least one host must have the 'app' role",
    ),
    _case(
        "web-only-host-without-app-only-hosts",
        GOOD + host("web-03", "web"),
        "hosts[3].roles = ['web']: a 'web' host without 'app' needs app-only hosts to proxy to",
    ),
    _case(
        "app-only-host-without-web-only-host",
        GOOD + host("app-01", "app"),
        "hosts[3].roles = ['app']: an app-only host is reached by no web host",
    ),
    _case(
        "writes-to-primary-that-is-no-web-host",
        SPLIT.replace('route_writes_to = "any"', 'route_writes_to = "primary"'),
        "lb.route_writes_to = 'primary': the primary DB host 'db-01' is not a 'web' host; use \"any\"",
    ),
    _case(
        "writes-to-primary-by-default",
        SPLIT.replace('[lb]\nroute_writes_to = "any"\n', ""),
        "lb.route_writes_to = 'primary': the primary DB host 'db-01' is not a 'web' host",
    ),
    _case(
        "port-clash-lb-and-web",
        "[tls]\nenabled = false\n" + host("lb-01", "lb", "web", "app") + PRIMARY + REPLICA,
        "hosts[0].roles = ['lb', 'web', 'app']: two services on this host would listen on port 80",
    ),
    _case(
        # With TLS, the LB takes 443 for HTTPS and nginx 443 for the re-encrypted hop.
        "port-clash-lb-and-web-tls",
        host("lb-01", "lb", "web", "app") + PRIMARY + REPLICA,
        "hosts[0].roles = ['lb', 'web', 'app']: two services on this host would listen on port 443",
    ),
    _case("tls-cert-without-key", '[tls]\ncert_file = "/etc/site.crt"\n' + GOOD, "tls.key_file = None: cert_file and"),
    _case("tls-relative-path", '[tls]\ncert_file = "site.crt"\nkey_file = "/k"\n' + GOOD, "must be an absolute path"),
    _case("tls-ca-alone", '[tls]\nca_file = "/etc/ca.pem"\n' + GOOD, "tls.ca_file = '/etc/ca.pem': names the CA"),
    _case("tls-enabled-string", '[tls]\nenabled = "yes"\n' + GOOD, "tls.enabled = 'yes': Input should be a valid bool"),
    _case("tls-unknown-key", '[tls]\nprotocols = ["TLSv1"]\n' + GOOD, "tls.protocols = ['TLSv1']: unknown field"),
    _case("firewall-not-bool", "firewall = 1\n" + GOOD, "firewall = 1: Input should be a valid boolean"),
    _case(
        "port-clash-app-and-db",
        "[app]\nport = 3306\n" + GOOD,
        "hosts[1].roles = ['web', 'app', 'db']: two services on this host would listen on port 3306",
    ),
]


def haproxy_sections(cfg: str) -> dict[str, list[str]]:
    """A rendered haproxy.cfg by section ("global", "defaults", "frontend site", "backend site", ...):
    the section's lines, stripped, without comments and blank lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in cfg.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw[0].isspace():
            current = sections.setdefault(line, [])
        else:
            current.append(line)
    return sections


# The monitoring host, and the switches that keep a plan plain (no TLS, no firewall), for monitoring tests.
MON = host("mon-01", "monitoring")
PLAIN = "firewall = false\n[tls]\nenabled = false\n"


def hardened_with_monitoring() -> str:
    text = (EXAMPLES / "hardened.toml").read_text()
    return text.replace(
        'name = "webinfra"', 'name = "webinfra"\n' + PLAIN.replace("[tls]\nenabled = false\n", ""), 1
    ) + ('\n[[hosts]]\nname = "mon-01"\nroles = ["monitoring"]\n')
