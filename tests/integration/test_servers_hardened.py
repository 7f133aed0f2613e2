"""The hardened design over SSH (docs/SERVERS.md): examples/servers.toml (two LBs sharing a VIP, two
web/app/db servers under the HA agents, three etcd members, TLS and a firewall per host) deployed with
`webinfra up` to five lab machines (systemd-nspawn Debian 12, testbed/). The site answers through the VIP over
HTTPS; a write is read back; the firewall keeps SSH from the management side open and refuses a flow the
design has not (the LB to MariaDB); a second `up` changes nothing; keepalived killed on the VIP holder moves
the VIP and the site keeps serving; `switchover` moves the primary, and a crash of the primary's server
(`webinfra fail`) is taken over by the other agent, the server rejoining as a replica after `recover`.
Prints the cold and the second `up`'s seconds, the switchover's and the crash's.

Lab `thard` on 198.18.160.0/24; its image carries the design's daemons (built once, ~3-5 min)."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit
from clusterkit import copy_site
from labkit import Fetch, Requests, booted_lab, ssh, webinfra

from testkit import wait_for
from webinfra.services import releases
from webinfra.testbed import lab as labs

NAME, SUBNET = "thard", "198.18.160.0/24"
ROOT = Path(__file__).parents[2]
INCLUDE = (
    "haproxy,nginx,mariadb-server,mariadb-client,mariadb-backup,python3-venv,nftables,netbase,keepalived,etcd-server,"
    "iproute2"
)
ADDRESSES = {
    "lb-01": "198.18.160.11",
    "lb-02": "198.18.160.12",
    "web-01": "198.18.160.13",
    "web-02": "198.18.160.14",
    "etcd-01": "198.18.160.15",
}
VIP = "198.18.160.100"
SITE = "www.foobar.com"
# The cold `up` alone (wheelhouse, packages through the proxy, five servers) takes minutes: above the default.
pytestmark = pytest.mark.timeout(1500)


def topology(lab: labs.Lab) -> str:
    """examples/servers.toml on the lab machines: addresses, root over SSH with the lab's key, eth0."""
    doc = tomlkit.parse((ROOT / "examples" / "servers.toml").read_text())
    doc["name"] = "hard"
    doc["network"]["subnet"] = SUBNET
    doc["lb"]["vip"] = VIP
    for host in doc["hosts"]:
        host["address"] = ADDRESSES[host["name"]]
    machines = doc["machines"]
    machines["key"] = str(lab.ssh_dir / "id_ed25519")
    machines["known_hosts"] = str(lab.ssh_dir / "known_hosts")
    machines["become"] = False
    machines["vip_interface"] = "eth0"
    for name, address in ADDRESSES.items():
        machines["hosts"][name]["ssh"] = f"root@{address}"
    return tomlkit.dumps(doc)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, lab_images: Path) -> Iterator[labs.Lab]:
    paths = labs.LabPaths.under(tmp_path_factory.mktemp("hard-lab"), lab_images)
    with booted_lab(paths, labs.LabSpec.parse(NAME, 5, SUBNET, INCLUDE)) as made:
        yield made


@pytest.fixture(scope="module")
def deployed(lab: labs.Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(topology file, state dir, the cold `up`'s output)."""
    work = tmp_path_factory.mktemp("hard")
    topo = work / "servers.toml"
    topo.write_text(topology(lab))
    state = work / "state"
    started = time.monotonic()
    result = webinfra("up", "-f", str(topo), "--state-dir", str(state))
    print(f"\ncold up (hardened, 5 lab machines): {time.monotonic() - started:.1f}s")
    assert result.returncode == 0, result.stdout + result.stderr
    return topo, state, result.stdout


def request(state: Path, path: str, body: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, str]:
    """HTTPS through the VIP, checked against the cluster's CA (on the management side)."""
    context = ssl.create_default_context(cafile=str(state / "hard" / "pki" / "ca.pem"))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"https://{VIP}{path}",
        data=data,
        method="POST" if data else "GET",
        headers={"Host": SITE, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout, context=context) as response:
        return response.status, response.read().decode()


def serving(state: Path) -> bool:
    try:
        return request(state, "/healthz", timeout=3.0)[0] == 200
    except OSError:
        return False


def vip_holders(lab: labs.Lab) -> list[str]:
    return [
        name
        for name in ("lb-01", "lb-02")
        if f" {VIP}/" in ssh(lab, ADDRESSES[name], "ip -o -4 addr show dev eth0").stdout
    ]


def reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def test_the_site_serves_through_the_vip_over_https(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    _, state, output = deployed
    assert "leader (writable primary)" in output and "holds the VIP" in output, output
    wait_for(lambda: serving(state), 30, "the site through the VIP", interval=0.5)
    status, _ = request(state, "/api/entries", {"text": "hardened over ssh"})
    assert status in (200, 201)
    wait_for(
        lambda: "hardened over ssh" in request(state, "/api/entries")[1],
        20,
        "the entry read back through the VIP",
        interval=0.5,
    )
    # Each host holds only its own key; the CA key stays on the management side.
    assert ssh(lab, ADDRESSES["web-01"], "ls /etc/webinfra/pki").stdout.split().count("web-02.key") == 0
    assert "ca.key" not in ssh(lab, ADDRESSES["lb-01"], "ls /etc/webinfra/pki").stdout
    users = ssh(lab, ADDRESSES["lb-01"], "ps -o user= -C etcd,haproxy | sort -u | tr '\\n' ' '").stdout.split()
    assert sorted(users) == ["etcd", "haproxy"]


def test_the_firewall_keeps_ssh_and_refuses_undeclared_flows(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    for address in ADDRESSES.values():
        assert ssh(lab, address, "systemctl is-active nftables").stdout.strip() == "active"
        assert "management -> ssh" in ssh(lab, address, "nft list table inet webinfra").stdout
    # The management side reaches SSH and the LBs' HTTPS, not MariaDB; the LB does not reach MariaDB either.
    assert reachable(ADDRESSES["web-01"], 22)
    assert not reachable(ADDRESSES["web-01"], 3306)
    from_lb = ssh(lab, ADDRESSES["lb-01"], f"timeout 3 bash -c 'exec 3<>/dev/tcp/{ADDRESSES['web-01']}/3306'")
    assert from_lb.returncode != 0
    from_app = ssh(lab, ADDRESSES["web-02"], f"timeout 3 bash -c 'exec 3<>/dev/tcp/{ADDRESSES['web-01']}/3306'")
    assert from_app.returncode == 0, from_app.stderr


def test_second_up_changes_nothing(deployed: tuple[Path, Path, str]) -> None:
    topo, state, _ = deployed
    started = time.monotonic()
    again = webinfra("up", "-f", str(topo), "--state-dir", str(state))
    print(f"\nsecond up (hardened, 5 lab machines): {time.monotonic() - started:.1f}s")
    assert again.returncode == 0, again.stdout + again.stderr
    for host in ADDRESSES:
        assert any(host in line and "no changes" in line for line in again.stdout.splitlines()), again.stdout


def vip_fetch(state: Path) -> Fetch:
    """One GET of the entries through the VIP over HTTPS: its status and headers (for `Requests`)."""
    context = ssl.create_default_context(cafile=str(state / "hard" / "pki" / "ca.pem"))

    def fetch() -> tuple[int, dict[str, str]]:
        req = urllib.request.Request(f"https://{VIP}/api/entries?limit=1", headers={"Host": SITE})
        with urllib.request.urlopen(req, timeout=5, context=context) as response:
            response.read()
            return response.status, dict(response.headers)

    return fetch


def test_deploy_through_the_vip_with_no_failed_request(deployed: tuple[Path, Path, str], tmp_path: Path) -> None:
    """`webinfra deploy` on the hardened design (backend TLS, two LBs): each app server drained at both LBs,
    switched to the new release, checked and put back, while HTTPS through the VIP answers every request."""
    topo, state, _ = deployed
    where = ("-f", str(topo), "--state-dir", str(state))
    code = copy_site(tmp_path / "site-v2", "v2")
    version = releases.content_hash(code)
    load = Requests(vip_fetch(state))
    wait_for(lambda: load.done >= 20, 30, "requests through the VIP")
    started = time.monotonic()
    result = webinfra("deploy", str(code), *where, timeout=300)
    elapsed = time.monotonic() - started
    seen = load.done
    wait_for(lambda: load.done >= seen + 20, 30, "requests after the deploy")
    load.finish()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"deployed {version} to web-01, web-02" in result.stdout
    assert not load.failed, load.failed[:5]
    assert load.versions[-1] == version
    print(f"\ndeploy over ssh (hardened): {elapsed:.1f}s, {load.done} requests through the VIP, none failed")


def test_the_vip_moves_when_keepalived_dies(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    _, state, _ = deployed
    wait_for(lambda: len(vip_holders(lab)) == 1, 30, "one VIP holder", interval=0.5)
    holder = vip_holders(lab)[0]
    other = "lb-02" if holder == "lb-01" else "lb-01"
    ssh(lab, ADDRESSES[holder], "systemctl kill -s KILL webinfra-keepalived.service")
    wait_for(lambda: vip_holders(lab) == [other], 30, f"the VIP on {other}", interval=0.5)
    wait_for(lambda: serving(state), 30, "the site through the VIP after the move", interval=0.5)


def primary_of(topo: Path, state: Path) -> str | None:
    result = webinfra("status", "--json", "-f", str(topo), "--state-dir", str(state), timeout=120)
    try:  # exit 1 (unhealthy) still prints the snapshot
        primary: str | None = json.loads(result.stdout)["db"]["primary"]
    except (ValueError, KeyError):
        return None
    return primary


def written_and_read(state: Path, text: str) -> bool:
    try:
        if request(state, "/api/entries", {"text": text})[0] not in (200, 201):
            return False
        return text in request(state, "/api/entries")[1]
    except OSError:
        return False


def test_switchover_and_a_primary_host_crash_on_servers(deployed: tuple[Path, Path, str]) -> None:
    """`webinfra switchover` moves the primary role over SSH (the agents, etcd); then `webinfra fail` crashes
    the new primary's server (every unit killed and held, the server partitioned but for management SSH): the
    other agent promotes and writes go on through the VIP; `recover` brings the old primary back as a
    replica."""
    topo, state, _ = deployed
    wait_for(lambda: primary_of(topo, state) is not None, 60, "a primary in status --json", interval=1.0)
    old = primary_of(topo, state)
    result = webinfra("switchover", "--json", "-f", str(topo), "--state-dir", str(state), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    moved = json.loads(result.stdout)
    assert moved["old_primary"] == old and moved["new_primary"] != old, moved
    new = moved["new_primary"]
    print(f"\nswitchover over ssh: {old} -> {new} in {moved['seconds']:.1f}s")
    wait_for(lambda: written_and_read(state, "after the switchover"), 60, "a write after the switchover", interval=1.0)

    crashed = webinfra("fail", new, "-f", str(topo), "--state-dir", str(state), timeout=180)
    assert crashed.returncode == 0, crashed.stdout + crashed.stderr
    try:
        started = time.monotonic()
        wait_for(lambda: written_and_read(state, "after the crash"), 120, "a write after the crash", interval=0.5)
        print(f"primary server crash over ssh -> first write read back: {time.monotonic() - started:.1f}s")
    finally:
        recovered = webinfra("recover", new, "-f", str(topo), "--state-dir", str(state), timeout=180)
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    wait_for(lambda: primary_of(topo, state) == old, 60, f"{old} the primary", interval=1.0)

    def replica_back() -> bool:
        result = webinfra("status", "--json", "-f", str(topo), "--state-dir", str(state), timeout=120)
        try:
            replicas = json.loads(result.stdout)["db"]["replicas"]
        except (ValueError, KeyError):
            return False
        return any(r["name"] == new and r["io_running"] == "Yes" for r in replicas)

    wait_for(replica_back, 120, f"{new} replicating again", interval=2.0)
