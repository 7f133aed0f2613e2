"""SshMachine's pure parts: the ssh argv, the remote shell lines, the fault rulesets, the helper bundle (run by
a bare python3 with the standard library alone), and the machine factory's choice by `[machines] kind`."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from webinfra.model import parse_topology
from webinfra.model.relocate import seed_text
from webinfra.runtime.ssh import (
    SshMachine,
    SshTarget,
    become_line,
    helper_bundle,
    put_script,
    remote_command,
    ssh_argv,
    unit_name,
)
from webinfra.runtime.ssh_faults import FAULT_TABLE, partition_ruleset

TARGET = SshTarget("admin", "203.0.113.10", 2222, "/k/id", "/k/known_hosts", become=True)


def test_ssh_argv_names_key_known_hosts_port_and_shares_the_connection() -> None:
    argv = ssh_argv(TARGET, "true", Path("/tmp/cm"))
    assert argv[0] == "ssh" and argv[-2:] == ["admin@203.0.113.10", "true"]
    joined = " ".join(argv)
    wanted = ("-p 2222", "-i /k/id", "UserKnownHostsFile=/k/known_hosts", "BatchMode=yes", "ControlPath=/tmp/cm/%C")
    for option in wanted:
        assert option in joined
    assert "ControlMaster" not in " ".join(ssh_argv(TARGET, "true", None))


def test_remote_command_quotes_argv_env_and_sudo() -> None:
    line = remote_command(["echo", "a b", "$HOME"], {"X": "1 2"}, become=False)
    assert shlex.split(line) == ["env", "X=1 2", "echo", "a b", "$HOME"]
    wrapped = remote_command(["id", "-u"], become=True)
    assert shlex.split(wrapped) == ["sudo", "-n", "--", "sh", "-c", "id -u"]
    assert become_line("x", False) == "x"


def test_local_argv_runs_the_command_on_the_server() -> None:
    machine = SshMachine("web-01", "198.18.150.12", TARGET)
    argv = machine.local_argv(["ss", "-tlnp"])
    assert argv[-1] == "sudo -n -- sh -c 'ss -tlnp'"


def test_unit_names_match_the_deployed_units() -> None:
    from webinfra.servers import units

    assert unit_name("app") == units.unit_name("app") == "webinfra-app.service"


def test_put_script_writes_atomically_and_reports_a_change(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.conf"
    script = put_script(target, 0o640, None)
    run = lambda data: subprocess.run(["sh", "-c", script], input=data, capture_output=True, check=True).stdout  # noqa: E731
    assert run(b"one") == b"changed\n"
    assert target.read_bytes() == b"one" and oct(target.stat().st_mode & 0o777) == "0o640"
    assert run(b"one") == b"same\n"
    assert run(b"two") == b"changed\n" and target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.conf"]


def test_partition_keeps_the_management_ssh_flow() -> None:
    rules = partition_ruleset("198.18.150.1", 22)
    assert f"table inet {FAULT_TABLE}" in rules and "policy drop" in rules
    assert "ip saddr 198.18.150.1 tcp dport 22 accept" in rules
    assert "ip daddr 198.18.150.1 tcp sport 22 accept" in rules
    assert "ip6 saddr fd00::1" in partition_ruleset("fd00::1", 2222)


def test_the_partition_ruleset_passes_nft_check() -> None:
    nft = subprocess.run(["sh", "-c", "command -v nft"], capture_output=True, text=True).stdout.strip()
    if not nft:
        pytest.skip("no nft here")
    # `nft -c` of the definition alone (the leading delete needs the table to exist, checked or not).
    body = partition_ruleset("198.18.150.1", 22).split("\n", 2)[2]
    result = subprocess.run([nft, "-c", "-f", "-"], input=body, capture_output=True, text=True)
    if "Operation not permitted" in result.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert result.returncode == 0, result.stderr


def test_the_helper_bundle_runs_on_a_bare_python(tmp_path: Path) -> None:
    digest, data = helper_bundle()
    assert len(digest) == 12 and helper_bundle() == (digest, data)  # reproducible: one upload per version
    names = zipfile.ZipFile(BytesIO(data)).namelist()
    assert "__main__.py" in names and "webinfra/runtime/helper.py" in names
    bundle = tmp_path / "helper.pyz"
    bundle.write_bytes(data)
    # -I: no site-packages, so no pydantic or httpx: the closure is the standard library alone.
    request = {"probe": {"kind": "tcp", "address": "127.0.0.1", "port": 9, "argv": []}, "timeout": 0.2}
    result = subprocess.run(
        [sys.executable, "-I", str(bundle), "probe"], input=json.dumps(request), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": False}


def test_the_factory_picks_the_machine_by_kind(tmp_path: Path) -> None:
    from webinfra.control.machines import EmulatedFleet, SshFleet, fleet_for
    from webinfra.state import Layout, ServerLayout

    seed = parse_topology(seed_text(), "seed.toml")
    assert isinstance(fleet_for(seed, Layout(tmp_path / "seed")), EmulatedFleet)
    text = (
        seed_text()
        + '\n[machines]\nkind = "ssh"\nkey = "/k/id"\n'
        + "".join(f'[machines.hosts.{h.name}]\nssh = "root@{seed.address_of(h.name)}"\n' for h in seed.hosts)
    )
    servers = parse_topology(text, "servers.toml")
    fleet = fleet_for(servers, Layout(tmp_path / "srv"))
    assert isinstance(fleet, SshFleet) and fleet.needs_root is False
    assert isinstance(fleet.plan_layout, ServerLayout)
    machine = fleet.hosts["web-01"]
    assert isinstance(machine, SshMachine) and machine.target.key == "/k/id" and machine.target.user == "root"


def test_slow_without_netem_falls_back_to_a_cpu_quota_that_heal_lifts() -> None:
    from webinfra.runtime.ssh_faults import cpu_quota_script, heal_script, slow_script

    assert "exit 4" in slow_script("10.20.0.12", "10.20.0.1")  # no netem: the caller falls back
    quota = cpu_quota_script(10)
    assert "--state=running" in quota and "CPUQuota=10%" in quota and "--runtime" in quota
    assert "exit 6" in quota and "cgroup.controllers" in quota  # not enforced here: lifted again, said
    healed = heal_script("10.20.0.12")
    assert "CPUQuota= " in healed and "--runtime" in healed and "delete table inet webinfra_fault" in healed
    for script in (quota, healed):
        assert subprocess.run(["bash", "-n", "-c", script], capture_output=True).returncode == 0, script
