"""The lab on the real thing: mmdebstrap's Debian 12 booted by systemd-nspawn with systemd as PID 1, sshd
reached with the lab's key, a Debian package installed through the apt-cacher-ng proxy (the machines' only
way out), a second `lab up` fast from the cached image, and `lab down` leaving nothing behind.

Lab `tlab` on 198.18.240.0/24. The image is built once per test run (fixture `lab_images`); the first
`lab up` of a run takes ~2-4 min for it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from labkit import start_lab, stop_lab

from webinfra.cli.main import cli
from webinfra.runtime.emulated import network as netmod
from webinfra.runtime.emulated.process import alive, read_pidfile
from webinfra.testbed import LabUsageError, cgroup
from webinfra.testbed import lab as labs

NAME, SUBNET = "tlab", "198.18.240.0/24"
WEBINFRA = Path(sys.executable).parent / "webinfra"
# Goal: a lab of 2 from the cached image in seconds (~5 s measured on a loaded 2-core machine).
SECOND_UP_BOUND = 60.0


def bring_up(paths: labs.LabPaths) -> labs.Lab:
    """`lab up 2` (labkit: skipped only where nspawn cannot boot systemd at all)."""
    return start_lab(paths, labs.LabSpec.parse(NAME, 2, SUBNET))


def take_down(paths: labs.LabPaths) -> None:
    stop_lab(paths, NAME)


def leftovers(lab: labs.Lab) -> list[str]:
    """What of `lab` still exists on this machine: namespaces, links, mounts, processes, its directory."""
    found = [ns for ns in netmod.existing_namespaces() if ns.startswith(f"wi-{NAME}-")]
    found += [
        dev for dev in [lab.network.bridge, *(link.veth for link in lab.network.links)] if netmod.link_exists(dev)
    ]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {m.rootfs}" for m in lab.machine_list() if f" {m.rootfs} " in mounts]
    found += [str(path) for m in lab.machine_list() for path in cgroup.machine_cgroups(m.netns) if path.exists()]
    if lab.directory.exists():
        found.append(str(lab.directory))
    return found


@pytest.fixture(scope="module")
def lab_paths(tmp_path_factory: pytest.TempPathFactory, lab_images: Path) -> Iterator[labs.LabPaths]:
    paths = labs.LabPaths.under(tmp_path_factory.mktemp("lab-state"), lab_images)
    yield paths
    take_down(paths)


@pytest.fixture(scope="module")
def lab(lab_paths: labs.LabPaths) -> labs.Lab:
    return bring_up(lab_paths)


def ssh(lab: labs.Lab, machine: str, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """Through the CLI, as a user would: `webinfra lab ssh MACHINE -- COMMAND`."""
    argv = [str(WEBINFRA), "lab", "ssh", machine, "--name", NAME, "--state-dir", str(lab.directory.parents[1])]
    argv += ["--user", user] if user else []
    return subprocess.run([*argv, "--", *command], capture_output=True, text=True, timeout=300)


def test_machines_boot_systemd_with_sshd(lab: labs.Lab) -> None:
    state = lab.directory.parents[1]
    result = CliRunner().invoke(cli, ["lab", "status", "--json", "--name", NAME, "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["proxy"]["running"] is True
    assert Path(report["ssh_key"]).stat().st_mode & 0o777 == 0o600
    assert len(Path(report["known_hosts"]).read_text().splitlines()) == 2
    failed = {m["name"]: m["failed_units"] for m in report["machines"] if m["failed_units"]}
    assert not failed, f"units failed at boot: {failed} (see their journals: lab ssh NODE -- journalctl -b -u UNIT)"
    assert [(m["name"], m["address"], m["systemd"], m["ssh"]) for m in report["machines"]] == [
        ("node-01", "198.18.240.11", "running", True),
        ("node-02", "198.18.240.12", "running", True),
    ]
    for machine in ("node-01", "node-02"):
        probe = ssh(lab, machine, "hostname; cat /proc/1/comm; . /etc/os-release; echo $VERSION_ID; ip route")
        assert probe.returncode == 0, probe.stderr
        hostname, pid1, version, *routes = probe.stdout.splitlines()
        assert (hostname, pid1, version) == (machine, "systemd", "12")
        assert not any(route.startswith("default") for route in routes)  # no way out but the proxy
    sudo = ssh(lab, "node-02", "sudo", "-n", "id", "-u", user="lab")
    assert (sudo.returncode, sudo.stdout.strip()) == (0, "0"), sudo.stderr


def test_up_again_changes_nothing(lab: labs.Lab, lab_paths: labs.LabPaths) -> None:
    before = [read_pidfile(m.pidfile) for m in lab.machine_list()]
    again = bring_up(lab_paths)
    assert again == lab
    assert [read_pidfile(m.pidfile) for m in again.machine_list()] == before  # nothing restarted
    with pytest.raises(LabUsageError, match=f"is up with 2 machines on {SUBNET}"):
        labs.up(labs.LabSpec.parse(NAME, 3, SUBNET), lab_paths, None, lambda line: None)
    with pytest.raises(LabUsageError, match=f"overlaps addresses of this machine: wib-{NAME} "):
        labs.up(labs.LabSpec.parse("tlabb", 1, "198.18.240.128/25"), lab_paths, None, lambda line: None)
    assert not netmod.link_exists("wib-tlabb")


def test_a_reboot_inside_a_machine_brings_it_back(lab: labs.Lab) -> None:
    machine = lab.machine("node-02")
    boot_id = machine.run(lab.ssh_dir, ["cat /proc/sys/kernel/random/boot_id; touch /root/kept"]).stdout.strip()
    with contextlib.suppress(subprocess.TimeoutExpired):  # the connection may drop: its result says nothing
        machine.run(lab.ssh_dir, ["systemctl", "reboot"], timeout=15)
    deadline = time.monotonic() + 120
    after = ""
    while time.monotonic() < deadline:
        try:
            probe = machine.run(lab.ssh_dir, ["systemctl is-system-running; cat /proc/sys/kernel/random/boot_id"], 15)
        except subprocess.TimeoutExpired:
            continue
        lines = probe.stdout.split()
        if len(lines) == 2 and lines[0] == "running" and lines[1] != boot_id:
            after = lines[1]
            break
        time.sleep(0.5)
    assert after, f"node-02 did not come back from its reboot within 120s ({machine.console_log})"
    assert machine.run(lab.ssh_dir, ["test", "-e", "/root/kept"]).returncode == 0  # its disk is the same


def test_a_package_installs_through_the_proxy(lab: labs.Lab) -> None:
    install = ssh(
        lab,
        "node-01",
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hello >/dev/null && hello",
    )
    assert install.returncode == 0, install.stderr
    assert install.stdout.strip().endswith("Hello, world!")
    cached = list(lab.cache.rglob("hello_*.deb"))
    assert cached, f"hello's .deb is not in the proxy's cache {lab.cache}"


def test_second_up_is_fast_and_down_leaves_nothing(lab: labs.Lab, lab_paths: labs.LabPaths) -> None:
    processes = [read_pidfile(m.pidfile) for m in lab.machine_list()] + [read_pidfile(lab.proxy.pidfile)]
    labs.down(lab, lambda line: None)
    assert leftovers(lab) == []
    assert not any(alive(proc) for proc in processes)

    started = time.monotonic()
    again = bring_up(lab_paths)
    elapsed = time.monotonic() - started
    assert elapsed < SECOND_UP_BOUND, f"second lab up took {elapsed:.1f}s"
    assert all(row["ssh"] for row in labs.status(again)["machines"])

    processes = [read_pidfile(m.pidfile) for m in again.machine_list()] + [read_pidfile(again.proxy.pidfile)]
    result = CliRunner().invoke(cli, ["lab", "down", "--name", NAME, "--state-dir", str(lab_paths.root.parent)])
    assert result.exit_code == 0, result.output
    assert leftovers(again) == []
    assert not any(alive(proc) for proc in processes)
    assert labs.Lab.load(lab_paths, NAME) is None
