"""The lab's pure parts (webinfra.testbed): the Debian mirror read from apt's sources, the image's name and
mmdebstrap command line, apt-cacher-ng's and the machines' apt proxy configuration, the systemd-nspawn and
ssh command lines, and input validation. Nothing here builds, boots or creates anything."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from webinfra.cli.main import cli
from webinfra.testbed import LabUsageError
from webinfra.testbed.image import (
    PACKAGES,
    ImageSpec,
    customize_script,
    debian_mirror_lines,
    mirror_lines_for,
    parse_deb822_sources,
    parse_one_line_sources,
    read_system_sources,
)
from webinfra.testbed.lab import Lab, LabPaths, LabSpec
from webinfra.testbed.machine import hosts_file, keeper_argv, keypair, nspawn_argv, ssh_argv, ssh_config
from webinfra.testbed.proxy import acng_conf, apt_proxy_conf, blocking_listeners

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBF...
 -----END PGP PUBLIC KEY BLOCK-----

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""
ONE_LINE = """\
# a comment
deb [signed-by=/usr/share/keyrings/x.gpg arch=amd64] http://mirror.example/debian/ bookworm main non-free
deb-src http://mirror.example/debian bookworm main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
"""
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)


def test_deb822_sources_skip_disabled_stanzas_and_folded_fields() -> None:
    sources = parse_deb822_sources(DEB822)
    assert [(s.uri, s.suites) for s in sources] == [
        ("http://deb.debian.org/debian", ("bookworm", "bookworm-updates")),
        ("http://deb.debian.org/debian-security", ("bookworm-security",)),
    ]
    assert sources[1].components == ("main", "contrib")


def test_one_line_sources_drop_options_and_keep_types() -> None:
    sources = parse_one_line_sources(ONE_LINE)
    assert [(s.types, s.uri, s.suites) for s in sources] == [
        (("deb",), "http://mirror.example/debian/", ("bookworm",)),
        (("deb-src",), "http://mirror.example/debian", ("bookworm",)),
        (("deb",), "https://packages.cloud.google.com/apt", ("cloud-sdk-bookworm",)),
    ]


def test_mirror_lines_are_the_debian_entries_in_suite_order() -> None:
    assert debian_mirror_lines(parse_deb822_sources(DEB822)) == MIRRORS
    # deb-src and third-party suites are left out; a trailing slash is dropped
    assert debian_mirror_lines(parse_one_line_sources(ONE_LINE)) == ("deb http://mirror.example/debian bookworm main",)


def test_no_bookworm_mirror_is_one_clear_error() -> None:
    with pytest.raises(LabUsageError, match=r"no Debian bookworm mirror.*--mirror"):
        debian_mirror_lines(parse_one_line_sources("deb http://x.example/debian bullseye main\n"))


def test_system_sources_read_list_and_sources_files_only(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://a.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "x.list.disabled-by-farm").write_text("deb http://b.example/debian bookworm main\n")
    uris = [s.uri for s in read_system_sources(tmp_path)]
    assert uris == ["http://a.example/debian", "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"]


def test_mirror_given_on_the_command_line() -> None:
    assert mirror_lines_for("http://deb.debian.org/debian/") == MIRRORS
    with pytest.raises(LabUsageError, match="--mirror 'ftp://x'"):
        mirror_lines_for("ftp://x")


def test_image_name_follows_what_goes_into_it() -> None:
    spec = ImageSpec(MIRRORS)
    assert spec.name == ImageSpec(MIRRORS).name
    assert spec.name.startswith("bookworm-") and len(spec.name) == len("bookworm-") + 12
    assert ImageSpec(MIRRORS, packages=(*PACKAGES, "hello")).name != spec.name
    assert ImageSpec(MIRRORS[:1]).name != spec.name


def test_mmdebstrap_command_line() -> None:
    argv = ImageSpec(MIRRORS).mmdebstrap_argv(Path("/x/rootfs"), Path("/x/hook.sh"))
    assert argv[:2] == ["mmdebstrap", "--variant=minbase"]
    assert "--include=systemd,systemd-sysv,openssh-server,dbus,iproute2,python3,sudo,ca-certificates" in argv
    assert "--customize-hook=/x/hook.sh" in argv
    assert argv[-5:] == ["bookworm", "/x/rootfs", *MIRRORS]


def test_customize_script_is_valid_shell_with_key_only_ssh_and_sudo() -> None:
    script = customize_script()
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert "PermitRootLogin prohibit-password" in script and "PasswordAuthentication no" in script
    assert "ALL=(ALL) NOPASSWD:ALL" in script and 'etc/sudoers.d/lab"' in script
    assert 'rm -f "$root"/etc/ssh/ssh_host_*' in script  # host keys are per machine, never shared


def test_apt_proxy_for_the_machines() -> None:
    conf = apt_proxy_conf("198.18.250.1")
    assert 'Acquire::http::Proxy "http://198.18.250.1:3142/";' in conf
    assert 'Acquire::https::Proxy "http://198.18.250.1:3142/";' in conf
    assert 'Acquire::http::Timeout "20";' in conf and 'Acquire::Retries "5";' in conf  # the proxy's race
    assert 'Acquire::http::Pipeline-Depth "0";' in conf


def test_apt_cacher_ng_config_binds_the_gateway_and_keeps_to_its_dirs() -> None:
    conf = acng_conf(Path("/s/proxy"), Path("/s/cache"), "198.18.250.1", MIRRORS)
    lines = set(conf.splitlines())
    assert {"BindAddress: 198.18.250.1", "Port: 3142", "CacheDir: /s/cache", "LogDir: /s/proxy/log"} <= lines
    assert "SocketPath: /s/proxy/socket" in lines  # never Debian's /run/apt-cacher-ng/socket
    assert not any(line.startswith("PassThroughPattern") for line in lines)
    https = acng_conf(Path("/p"), Path("/c"), "198.18.250.1", ("deb https://deb.debian.org/debian bookworm main",))
    assert r"PassThroughPattern: ^(deb\.debian\.org):443$" in https.splitlines()


def test_listeners_that_would_block_the_proxy() -> None:
    ss = (
        "LISTEN 0 128 0.0.0.0:2024 0.0.0.0:*\n"
        "LISTEN 0 100 198.18.249.1:3142 0.0.0.0:*\n"  # another lab's proxy: no clash
        "LISTEN 0 100 198.18.250.1:3142 0.0.0.0:*\n"
        "LISTEN 0 100 [::]:3142 [::]:*\n"
    )
    assert blocking_listeners(ss, "198.18.250.1") == ["198.18.250.1:3142", "[::]:3142"]
    assert blocking_listeners(ss.splitlines()[1], "198.18.250.1") == []


def test_nspawn_boots_systemd_in_the_machines_namespace() -> None:
    argv = nspawn_argv(Path("/m/rootfs"), "wi-lab-node-01")
    assert argv[0] == "systemd-nspawn"
    assert {
        "--directory=/m/rootfs",
        "--boot",
        "--network-namespace-path=/run/netns/wi-lab-node-01",
        "--register=no",
        "--keep-unit",
        "--machine=wi-lab-node-01",
    } <= set(argv)


def test_keeper_restarts_the_machine_on_reboot_code_133_only(tmp_path: Path) -> None:
    """nspawn exits 133 when the machine reboots: the keeper starts it again; any other code ends it."""
    runs = tmp_path / "runs"
    fake_nspawn = f'echo run >> {runs}; [ "$(wc -l < {runs})" -ge 3 ] && exit 7; exit 133'
    proc = subprocess.run(keeper_argv(["sh", "-c", fake_nspawn]), timeout=10)
    assert proc.returncode == 7
    assert runs.read_text().count("run") == 3


def test_keeper_passes_sigterm_on_and_ends(tmp_path: Path) -> None:
    started, marker = tmp_path / "started", tmp_path / "got-term"
    fake_nspawn = f"trap 'touch {marker}; exit 0' TERM; touch {started}; while :; do sleep 0.1; done"
    proc = subprocess.Popen(keeper_argv(["sh", "-c", fake_nspawn]))
    deadline = time.monotonic() + 10
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert marker.exists()  # the machine got its poweroff signal before the keeper ended


def test_ssh_config_pins_key_and_known_hosts() -> None:
    config = ssh_config([("node-01", "198.18.250.11"), ("node-02", "198.18.250.12")], Path("/l/ssh"))
    assert "Host node-01 198.18.250.11\n    HostName 198.18.250.11\n    User root" in config
    assert "    IdentityFile /l/ssh/id_ed25519" in config
    assert "    UserKnownHostsFile /l/ssh/known_hosts\n    StrictHostKeyChecking yes" in config
    assert config.count("Host ") == 2
    assert ssh_argv(Path("/l/ssh"), "node-01", ["true"], "lab") == [
        "ssh", "-F", "/l/ssh/config", "-l", "lab", "node-01", "true"
    ]  # fmt: skip


def test_hosts_file_names_every_machine_and_the_gateway() -> None:
    text = hosts_file("node-02", [("node-01", "198.18.250.11"), ("node-02", "198.18.250.12")], "198.18.250.1")
    assert "127.0.1.1\tnode-02" in text and "198.18.250.11\tnode-01" in text and "198.18.250.1\tgateway" in text


def test_keypair_is_openssh_ed25519() -> None:
    private, public = keypair("me@lab")
    assert private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert public.startswith("ssh-ed25519 ") and public.endswith(" me@lab")


def test_lab_spec_addresses() -> None:
    spec = LabSpec.parse("lab", 3, "198.18.250.0/24")
    assert spec.gateway == "198.18.250.1"
    assert spec.machines() == [("node-01", "198.18.250.11"), ("node-02", "198.18.250.12"), ("node-03", "198.18.250.13")]


@pytest.mark.parametrize(
    ("name", "count", "subnet", "message"),
    [
        ("lab", 0, "198.18.250.0/24", "N = 0: a lab has 1 to 16 machines"),
        ("lab", 17, "198.18.250.0/24", "N = 17"),
        ("Lab", 2, "198.18.250.0/24", "--name 'Lab'"),
        ("toolongname", 2, "198.18.250.0/24", "--name 'toolongname'"),
        ("lab", 2, "198.18.250.5/24", "--subnet '198.18.250.5/24'"),
        ("lab", 2, "198.18.0.0/16", "overlaps 198.18.0.0/24"),
        ("lab", 2, "192.0.2.0/25", "overlaps 192.0.2.0/24"),
        ("lab", 8, "198.18.250.0/28", "too small for 8 machines"),
    ],
)
def test_lab_spec_rejects_bad_input(name: str, count: int, subnet: str, message: str) -> None:
    with pytest.raises(LabUsageError, match=re.escape(message)):
        LabSpec.parse(name, count, subnet)


def test_extra_packages_for_the_image() -> None:
    assert LabSpec.parse("lab", 1, "198.18.250.0/24", "nginx, haproxy,nginx").include == ("haproxy", "nginx")
    with pytest.raises(LabUsageError, match=re.escape("--include 'rm -rf': not a Debian package name")):
        LabSpec.parse("lab", 1, "198.18.250.0/24", "rm -rf")


def test_lab_record_round_trips(tmp_path: Path) -> None:
    paths = LabPaths.under(tmp_path, tmp_path / "images")
    spec = LabSpec.parse("t1", 2, "198.18.241.0/24")
    lab = Lab(
        "t1",
        "198.18.241.0/24",
        "198.18.241.1",
        "bookworm-x",
        MIRRORS,
        tuple(spec.machines()),
        paths.lab("t1"),
        tmp_path / "c",
    )
    lab.save()
    assert Lab.load(paths, "t1") == lab
    assert paths.labs() == ["t1"] and paths.pick(None) == "t1"
    assert lab.network.subnet == ipaddress.IPv4Network("198.18.241.0/24")
    assert [m.netns for m in lab.machine_list()] == ["wi-t1-node-01", "wi-t1-node-02"]
    with pytest.raises(LabUsageError, match="no machine 'node-09'"):
        lab.machine("node-09")


def test_cli_bad_count_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["lab", "up", "0", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: N = 0: a lab has 1 to 16 machines"]
    assert not (tmp_path / "_lab").exists()


def test_cli_status_without_a_lab_is_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["lab", "status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no lab under" in result.output and "Traceback" not in result.output
