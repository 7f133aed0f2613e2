"""The hardened design over SSH (docs/SERVERS.md): examples/servers.toml (two LBs sharing a VIP, two
web/app/db servers under the HA agents, three etcd members, TLS and a firewall per host) deployed with
`webinfra up` to five lab machines (systemd-nspawn Debian 12, testbed/). The site answers through the VIP over
HTTPS; a write is read back; the firewall keeps SSH from the management side open and refuses a flow the
design has not (the LB to MariaDB); a second `up` changes nothing; keepalived killed on the VIP holder moves
the VIP and the site keeps serving; `switchover` moves the primary, and a crash of the primary's server
(`webinfra fail`) is taken over by the other agent, the server rejoining as a replica after `recover`;
`webinfra deploy` rolls a new code base with HTTPS through the VIP answering every request; `webinfra chaos`
runs lb-crash, primary-crash and app-crash on the servers within the emulated chaos tests' bounds.
Monitoring (etcd-01 is also the monitoring host): Prometheus scrapes every target, queried through SSH (no
monitoring port is open to the management side); an exporter stopped with `webinfra stop` fires
InstanceDown in `webinfra alerts`, `silence` adds, lists and expires, `logs --follow` shows the exporter
start again and the alert clears; the dashboard serves a frame with Prometheus's numbers.
Prints the cold and the second `up`'s seconds, the deploy's, the switchover's and the crash's, the chaos
figures and the alert's.

Lab `thard` on 198.18.160.0/24; its image carries the design's daemons (built once, ~3-5 min)."""

from __future__ import annotations

import json
import select
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from clusterkit import copy_site
from labkit import WEBINFRA, Fetch, booted_lab, deploy_under_load, ssh, webinfra

from testkit import free_port, wait_for
from webinfra.services import releases
from webinfra.testbed import lab as labs

NAME, SUBNET = "thard", "198.18.160.0/24"
ROOT = Path(__file__).parents[2]
INCLUDE = (
    "haproxy,nginx,mariadb-server,mariadb-client,mariadb-backup,python3-venv,nftables,netbase,keepalived,etcd-server,"
    "iproute2,prometheus,prometheus-alertmanager,prometheus-node-exporter,prometheus-mysqld-exporter,"
    "prometheus-nginx-exporter"
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
    result, load, elapsed = deploy_under_load(vip_fetch(state), where, code)
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
    # `webinfra events` merges each server's own log with this machine's: the agents' promotions are there.
    shown = webinfra("events", "--json", "-n", "1000", "-f", str(topo), "--state-dir", str(state), timeout=60)
    log = [json.loads(line) for line in shown.stdout.splitlines()]
    assert any(e["source"] == "agent" and e["kind"] == "promoted" for e in log), shown.stdout[-2000:]
    assert any(e["source"] == "webinfra" for e in log), shown.stdout[-2000:]
    assert [e["ts"] for e in log] == sorted(e["ts"] for e in log)


# The emulated chaos tests' bounds (tests/integration/test_chaos.py BOUNDS: recovery in s, availability during
# the fault in %), several times the goals (VIP ≤ 2 s, DB failover ≤ 5 s, no failed read when an app dies).
SERVER_CHAOS = {"lb-crash": (10.0, 30.0), "primary-crash": (25.0, 30.0), "app-crash": (10.0, 90.0)}


def test_chaos_scenarios_on_the_servers(deployed: tuple[Path, Path, str]) -> None:
    """`webinfra chaos SCENARIO -f servers.toml --yes` on the running servers: the load from here to the VIP,
    the fault on the scenario's server (resolved from the roles of the moment), undone, the cluster healthy
    again; the same report as on emulated hosts, marked `runs_on: servers`, within the emulated bounds."""
    from webinfra.proving.chaos.report import ChaosResult

    topo, state, _ = deployed
    for name, (bound, min_during) in SERVER_CHAOS.items():
        # The cluster named by its file, or (app-crash) by its name, as `up` recorded it.
        where = ("-c", "hard") if name == "app-crash" else ("-f", str(topo))
        result = webinfra("chaos", name, "--short", "--json", "--yes", *where, "--state-dir", str(state), timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        r = ChaosResult(**json.loads(result.stdout))
        print(
            f"\nchaos {name} on servers: {r.target}; recovered {r.recovery_seconds} s, failed "
            f"{r.reads_failed} r / {r.writes_failed} w, during {r.availability_during} %, "
            f"lost {r.acked_writes_lost} of {r.acked_writes}"
        )
        assert r.runs_on == "servers" and r.applicable and not r.error, r.error or r.reason
        assert r.acked_writes > 0 and r.acked_writes_lost == 0, r.lost_ids
        assert r.split_brain_windows == 0 and r.split_brain_polls > 0
        assert r.recovery_seconds is not None and r.recovery_seconds <= bound, r.recovery_seconds
        assert r.availability_during is not None and r.availability_during >= min_during, r.availability_during
        if name == "app-crash":
            assert r.reads_failed <= 2  # as emulated: HAProxy retries an idempotent request on the other server
        if name == "lb-crash":
            assert r.vip_after != r.vip_before  # the other LB took the VIP
        if name == "primary-crash":
            assert r.primary_after != r.primary_before  # a replica was promoted; the old primary rejoined
    # Each run ends once the cluster is healthy again: `status` agrees (exit 0: no fault left, nothing degraded).
    status = webinfra("status", "--json", "-f", str(topo), "--state-dir", str(state), timeout=120)
    assert status.returncode == 0, status.stdout[-2000:] + status.stderr
    assert json.loads(status.stdout)["faults"] == {}


def cli(deployed: tuple[Path, Path, str], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    topo, state, _ = deployed
    return webinfra(*argv, "-f", str(topo), "--state-dir", str(state), timeout=timeout)


def test_prometheus_scrapes_every_target_through_ssh_only(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    from webinfra.control.cluster import Cluster
    from webinfra.observe import prom
    from webinfra.plan.daemons.prometheus import targets

    topo, state, _ = deployed
    cluster = Cluster.from_file(str(topo), state)
    wanted = {(t.job, t.host) for t in targets(cluster.topology)}

    def all_up() -> bool:
        try:
            found = prom.targets(cluster)
        except prom.PrometheusError:
            return False
        return {(t["labels"]["job"], t["labels"]["host"]) for t in found if t["health"] == "up"} == wanted

    wait_for(all_up, 60, f"{len(wanted)} Prometheus targets up", interval=1.0)

    # The watcher on etcd-01 sees the VIP over the network (keepalived's state in the LBs' node exporters).
    def one_vip_holder() -> bool:
        holders = prom.query(cluster, "webinfra_vip_holder == 1")
        return [labels["lb"] for labels, _ in holders] == vip_holders(lab)

    try:
        wait_for(one_vip_holder, 30, "the watcher's webinfra_vip_holder on the holder only", interval=1.0)
    except Exception:
        for query in ("webinfra_vip_holder", "keepalived_vrrp_state == 1", "node_textfile_scrape_error"):
            print(query, prom.query(cluster, query))
        for lb in ("lb-01", "lb-02"):
            print(lb, ssh(lab, ADDRESSES[lb], "ls -l /run/webinfra; cat /run/webinfra/keepalived.prom").stdout)
        print(ssh(lab, mon_address(), "journalctl -u webinfra-monitor -n 30 --no-pager").stdout)
        raise
    # Prometheus and Alertmanager answer the CLI through SSH: their ports stay closed to the management side.
    mon = ADDRESSES["etcd-01"]
    assert not reachable(mon, 9090) and not reachable(mon, 9093)


def mon_address() -> str:
    return ADDRESSES["etcd-01"]


def firing(deployed: tuple[Path, Path, str], name: str, host: str) -> dict[str, Any] | None:
    result = cli(deployed, "alerts", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    found = [a for a in json.loads(result.stdout) if a["labels"].get("alertname") == name]
    return next((a for a in found if a["labels"].get("host") == host), None)


def test_an_alert_fires_is_silenced_and_clears_on_servers(deployed: tuple[Path, Path, str]) -> None:
    assert cli(deployed, "alerts", "--json").returncode == 0
    stopped = cli(deployed, "stop", "web-02", "nginx-exporter")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    started = time.monotonic()
    try:
        # InstanceDown: `up == 0` for 5 s, scraped every 2 s; 60 s is many times that.
        wait_for(lambda: firing(deployed, "InstanceDown", "web-02") is not None, 60, "InstanceDown on web-02")
        print(f"\nexporter stopped -> InstanceDown firing in `webinfra alerts`: {time.monotonic() - started:.1f}s")

        added = cli(deployed, "silence", "add", "alertname=InstanceDown", "host=web-02", "--duration", "10m", "--json")
        assert added.returncode == 0, added.stdout + added.stderr
        silence = json.loads(added.stdout)["id"]
        listed = cli(deployed, "silence", "list", "--json")
        assert silence in [s["id"] for s in json.loads(listed.stdout)], listed.stdout

        def silenced() -> bool:
            alert = firing(deployed, "InstanceDown", "web-02")
            return alert is not None and silence in alert.get("alertmanager", {}).get("silencedBy", [])

        wait_for(silenced, 30, "the alert silenced in Alertmanager", interval=1.0)
        expired = cli(deployed, "silence", "expire", silence)
        assert expired.returncode == 0, expired.stdout + expired.stderr
        assert silence not in [s["id"] for s in json.loads(cli(deployed, "silence", "list", "--json").stdout)]
    finally:
        topo, state, _ = deployed
        follow = subprocess.Popen(
            [str(WEBINFRA), "logs", "web-02", "nginx-exporter", *FOLLOW, "-f", str(topo), "--state-dir", str(state)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            time.sleep(3)  # journalctl -f running on web-02 before the start
            again = cli(deployed, "start", "web-02", "nginx-exporter")
            assert again.returncode == 0, again.stdout + again.stderr
            line = first_line(follow, "web-02 webinfra-nginx-exporter.service: ", 30)
            assert line is not None, "no journal line from `logs --follow` after the start"
        finally:
            follow.kill()
            follow.wait()
    wait_for(lambda: firing(deployed, "InstanceDown", "web-02") is None, 60, "InstanceDown cleared")


FOLLOW = ("--follow", "-n", "0")


def first_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str | None:
    """The first line of `proc`'s output that starts with `prefix`, within `timeout` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            return None
        if line.startswith(prefix):
            return line
    return None


def test_the_dashboard_serves_prometheus_numbers_from_servers(deployed: tuple[Path, Path, str]) -> None:
    topo, state, _ = deployed
    port = free_port()
    proc = subprocess.Popen(
        [str(WEBINFRA), "dashboard", "--port", str(port), "-f", str(topo), "--state-dir", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    token_file = state / "hard" / "secrets" / "dashboard-token.password"  # written by the dashboard as it starts
    try:

        def frame() -> dict[str, Any]:
            try:
                token = token_file.read_text().strip()
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/frame", headers={"Authorization": f"Bearer {token}"}
                )
                with urllib.request.urlopen(req, timeout=20) as response:
                    data = json.loads(response.read())
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {}

        def with_prometheus() -> bool:
            return bool(frame().get("prometheus", {}).get("available"))

        wait_for(with_prometheus, 60, "a dashboard frame with Prometheus's numbers", interval=1.0)
        shown = frame()
        assert isinstance(shown.get("alerts"), list), shown
        assert {h["name"] for h in shown["status"]["hosts"]} == set(ADDRESSES)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
