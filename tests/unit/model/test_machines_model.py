"""`[machines]`: how hosts are reached (model/machines.py), validated with one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from testkit import REPO
from webinfra.cli.main import cli
from webinfra.model import TopologyError, parse_topology
from webinfra.model.machines import SshAddress, parse_ssh_address

SEED = (REPO / "examples" / "seed.toml").read_text()
SSH = """
[machines]
kind = "ssh"
key = "/keys/lab"
vip_interface = "ens3"
[machines.hosts.lb-01]
ssh = "198.18.0.10"
[machines.hosts.web-01]
ssh = "admin@198.18.0.11:2222"
become = true
key = "/keys/web01"
[machines.hosts.web-02]
ssh = "root@web-02.example.org:22"
"""


def test_emulated_is_the_default() -> None:
    topo = parse_topology(SEED, "seed.toml")
    assert topo.machines.kind == "emulated" and not topo.machines.ssh
    assert topo.machines.vip_interface == "eth0"


def test_ssh_machines_parse_with_defaults() -> None:
    m = parse_topology(SEED + SSH, "s.toml").machines
    assert m.ssh
    assert m.address_of("lb-01") == SshAddress("root", "198.18.0.10", 22)
    assert m.address_of("web-01") == SshAddress("admin", "198.18.0.11", 2222)
    assert str(m.address_of("web-02")) == "root@web-02.example.org:22"
    assert (m.key_of("lb-01"), m.key_of("web-01")) == ("/keys/lab", "/keys/web01")
    assert (m.become_of("lb-01"), m.become_of("web-01")) == (False, True)
    assert m.vip_interface == "ens3"


@pytest.mark.parametrize(
    "text",
    ["", "a@b@c", "root@host:0", "root@host:70000", "root@ho st", "Root@host", "root@:22", "root@-x"],
)
def test_bad_ssh_addresses_are_refused(text: str) -> None:
    assert parse_ssh_address(text) is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            SSH.replace('ssh = "198.18.0.10"', 'ssh = "root@x:99999"'),
            "machines.hosts.lb-01.ssh = 'root@x:99999': must be",
        ),
        (SSH.replace('[machines.hosts.web-02]\nssh = "root@web-02.example.org:22"\n', ""), "every host needs"),
        (SSH + '[machines.hosts.db-09]\nssh = "x"\n', "machines.hosts.db-09 = 'x': no host of this name"),
        ('[machines]\n[machines.hosts.lb-01]\nssh = "x"\n', 'SSH addresses need kind = "ssh"'),
        ('[machines]\nkind = "vm"\n', "machines.kind = 'vm'"),
        (SSH.replace('vip_interface = "ens3"', 'vip_interface = "a b"'), "machines.vip_interface = 'a b'"),
        (SSH.replace("become = true", 'become = "yes"'), "machines.hosts.web-01.become = 'yes'"),
        (SSH.replace('key = "/keys/lab"', "port = 22"), "machines.port = 22: unknown field"),
    ],
)
def test_bad_machines_name_file_field_and_value(extra: str, message: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(SEED + extra, "s.toml")
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith("s.toml: machines"), line
    assert message in line, line


def test_servers_may_use_the_subnets_first_address() -> None:
    text = SEED.replace('name = "lb-01"', 'name = "lb-01"\naddress = "198.18.0.1"')
    with pytest.raises(TopologyError, match=r"other than 198\.18\.0\.1"):
        parse_topology(text, "s.toml")
    assert parse_topology(text + SSH, "s.toml").address_of("lb-01").exploded == "198.18.0.1"


def test_validate_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SEED + SSH.replace('ssh = "198.18.0.10"', 'ssh = "root@@x"'))
    result = CliRunner().invoke(cli, ["validate", "-f", str(bad)])
    assert result.exit_code == 2, result.output
    assert f"{bad}: machines.hosts.lb-01.ssh = 'root@@x'" in result.output


def test_keepalived_names_the_vip_interface() -> None:
    from webinfra.plan.build import build_plan
    from webinfra.state import Layout

    default = REPO / "src" / "webinfra" / "model" / "default.toml"
    topo = parse_topology(default.read_text() + '\n[machines]\nvip_interface = "ens5"\n', "d.toml")
    plan = build_plan(topo, Layout(Path("/s/x")))
    conf = next(f.content for h in plan.hosts for f in h.files if f.path.name == "keepalived.conf")
    assert "interface ens5" in conf and "dev ens5" in conf and "eth0" not in conf
