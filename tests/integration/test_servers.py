"""The SSH target on the lab (docs/SERVERS.md): the seed design deployed with `webinfra up` over SSH to three
lab machines (systemd-nspawn Debian 12, testbed/), serving www.foobar.com through the LB; a second `up` with
zero changes that restarts nothing; `plan --diff` clean; a rebooted machine serving again with no webinfra
command; bad SSH input as one line naming the host; `scale add-server` / `remove-server` and `add-replica` /
`remove-replica` of a fourth machine (the spare, not in the topology) under load, with no failed request;
`down` leaving no webinfra service enabled.

Lab `tsrv` on 198.18.150.0/24 (the seed on .11-.13, the spare on .14), booted from the bare image (the one
test_lab.py uses: systemd, sshd, python3): this module's cold `up` runs the whole apt path, every Debian
package the seed needs installed through the lab's apt-cacher-ng proxy, as on fresh servers behind a package
proxy (the hardened lab's image carries its daemons instead, so the suite pays for the apt path once). `scale
add-server` runs the same apt path on the spare, and `scale add-replica` installs mariadb-backup on the
primary and the spare the same way."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit
from clusterkit import copy_site
from labkit import Requests, booted_lab, deploy_under_load, ssh, webinfra

from testkit import wait_for
from webinfra.model.relocate import seed_text
from webinfra.services import releases
from webinfra.testbed import image
from webinfra.testbed import lab as labs

NAME, SUBNET = "tsrv", "198.18.150.0/24"
LB, WEB1, WEB2 = "198.18.150.11", "198.18.150.12", "198.18.150.13"
SPARE = "198.18.150.14"  # a fourth lab machine, not in the topology: `scale add-server` brings it in
SITE = "www.foobar.com"


def topology(lab: labs.Lab, key: Path | None = None, lb_ssh: str | None = None) -> str:
    """examples/seed.toml (the design as drawn) on the lab machines, reached over SSH."""
    doc = tomlkit.parse(seed_text())
    doc["name"] = "srv"
    doc["firewall"] = False
    doc.setdefault("site", tomlkit.table())["name"] = SITE
    doc.setdefault("network", tomlkit.table())["subnet"] = SUBNET
    doc.setdefault("tls", tomlkit.table())["enabled"] = False
    doc.setdefault("lb", tomlkit.table())["route_writes_to"] = "primary"
    addresses = {"lb-01": LB, "web-01": WEB1, "web-02": WEB2}
    for host in doc["hosts"]:
        host["address"] = addresses[host["name"]]
    ssh = lab.ssh_dir
    machines = tomlkit.table()
    machines.update({"kind": "ssh", "key": str(key or ssh / "id_ed25519"), "known_hosts": str(ssh / "known_hosts")})
    hosts = tomlkit.table()
    for name, address in addresses.items():
        entry = tomlkit.table()
        entry["ssh"] = (lb_ssh or f"root@{LB}:22") if name == "lb-01" else f"root@{address}"
        hosts[name] = entry
    machines["hosts"] = hosts
    doc["machines"] = machines
    return tomlkit.dumps(doc)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, lab_images: Path) -> Iterator[labs.Lab]:
    paths = labs.LabPaths.under(tmp_path_factory.mktemp("srv-lab"), lab_images)
    with booted_lab(paths, labs.LabSpec.parse(NAME, 4, SUBNET)) as made:
        yield made


@pytest.fixture(scope="module")
def deployed(lab: labs.Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(topology file, state dir, the first `up`'s output)."""
    work = tmp_path_factory.mktemp("srv")
    topo = work / "servers.toml"
    topo.write_text(topology(lab))
    state = work / "state"
    started = time.monotonic()
    result = webinfra("up", "-f", str(topo), "--state-dir", str(state), timeout=900)
    print(f"\ncold up (seed, 3 bare lab machines, packages through the proxy): {time.monotonic() - started:.1f}s")
    assert result.returncode == 0, result.stdout + result.stderr
    return topo, state, result.stdout


def get(address: str, path: str = "/", timeout: float = 3.0) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(f"http://{address}{path}", headers={"Host": SITE})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, dict(response.headers), response.read().decode()


def serving(address: str) -> bool:
    try:
        return get(address, "/healthz")[0] == 200
    except OSError:
        return False


def main_pids(lab: labs.Lab, address: str) -> dict[str, str]:
    units = ["webinfra-mariadb", "webinfra-app", "webinfra-nginx"] if address != LB else ["webinfra-haproxy"]
    out = ssh(lab, address, f"systemctl show -p Id -p MainPID {' '.join(units)}").stdout
    values = [line.split("=", 1)[1] for line in out.splitlines() if "=" in line]
    return dict(zip(values[1::2], values[0::2], strict=True))


def test_seed_serves_through_the_lb(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    _, _, output = deployed
    assert "web-02" in output and "replica of web-01" in output
    status, _, _ = get(LB, "/healthz")
    assert status == 200
    # Each server runs its daemons as their own users, under webinfra's enabled units.
    users = ssh(lab, WEB1, "ps -o user= -C mariadbd,nginx | sort -u | tr '\\n' ' '").stdout.split()
    assert "mysql" in users and "www-data" in users and "root" not in users
    enabled = ssh(lab, LB, "systemctl is-enabled webinfra-haproxy; systemctl is-enabled haproxy || true").stdout
    assert enabled.split()[:2] == ["enabled", "disabled"]
    # A write through the LB lands on the primary and is read back from either web server.
    body = json.dumps({"text": "deployed over ssh"}).encode()
    request = urllib.request.Request(
        f"http://{LB}/api/entries",
        data=body,
        method="POST",
        headers={"Host": SITE, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status in (200, 201)
    replicated = ssh(
        lab,
        WEB2,
        "mariadb --socket=/run/webinfra/mariadb.sock -N -e "
        "\"SELECT COUNT(*) FROM site.entries WHERE text='deployed over ssh'\"",
    )
    wait_for(
        lambda: ssh(lab, WEB2, 'mariadb -N -e "SELECT COUNT(*) FROM site.entries"').stdout.strip() != "0",
        10,
        "the entry replicated to web-02",
        interval=0.5,
    )
    assert replicated.returncode == 0, replicated.stderr
    # The secret files are the daemon's, 0600; the CA key never left (no TLS here: no pki at all).
    mode = ssh(lab, WEB1, "stat -c '%a %U' /etc/webinfra/secrets/db-site.password").stdout.strip()
    assert mode == "600 webinfra"
    assert ssh(lab, LB, "ls /etc/webinfra/secrets").stdout.strip() == ""  # the LB receives no secret


def test_the_packages_came_through_the_lab_proxy(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    """The bare machines had none of the daemons: `up` installed them with apt, through apt-cacher-ng (their
    only way out), and only what each host's roles need."""
    if all(s.uri.startswith("http://") for s in image.read_system_sources()):  # https is tunnelled, not cached
        cached = {path.name.split("_", 1)[0] for path in lab.cache.rglob("*.deb")}
        assert {"haproxy", "nginx", "mariadb-server", "python3-venv"} <= cached, sorted(cached)
    installed = "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' haproxy nginx mariadb-server 2>/dev/null"
    on_lb = {line.split()[-1] for line in ssh(lab, LB, installed).stdout.splitlines() if line.startswith("ii")}
    assert on_lb == {"haproxy"}, on_lb
    on_web = {line.split()[-1] for line in ssh(lab, WEB1, installed).stdout.splitlines() if line.startswith("ii")}
    assert on_web == {"nginx", "mariadb-server"}, on_web


def test_second_up_changes_nothing(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    topo, state, _ = deployed
    before = {a: main_pids(lab, a) for a in (LB, WEB1, WEB2)}
    started = time.monotonic()
    again = webinfra("up", "-f", str(topo), "--state-dir", str(state))
    elapsed = time.monotonic() - started
    assert again.returncode == 0, again.stdout + again.stderr
    for host in ("lb-01", "web-01", "web-02"):
        assert any(host in line and "no changes" in line for line in again.stdout.splitlines()), again.stdout
    assert "no changes on any server" in again.stdout
    assert {a: main_pids(lab, a) for a in (LB, WEB1, WEB2)} == before  # nothing restarted
    print(f"second up: {elapsed:.1f}s")
    diff = webinfra("plan", "--diff", "-f", str(topo), "--state-dir", str(state))
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert diff.stdout.count("no changes") == 3


def test_a_config_change_reloads_only_its_daemon(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    topo, state, _ = deployed
    before = main_pids(lab, LB)
    changed = topo.with_name("weights.toml")
    doc = tomlkit.parse(topo.read_text())
    next(host for host in doc["hosts"] if host["name"] == "web-02")["weight"] = 2
    changed.write_text(tomlkit.dumps(doc))
    pending = webinfra("plan", "--diff", "-f", str(changed), "--state-dir", str(state))
    assert pending.returncode == 3, pending.stdout + pending.stderr
    assert "file /etc/webinfra/haproxy.cfg" in pending.stdout
    result = webinfra("up", "-f", str(changed), "--state-dir", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    assert main_pids(lab, LB) == before  # HAProxy reloaded in place (same master), not restarted
    assert "weight 2" in ssh(lab, LB, "cat /etc/webinfra/haproxy.cfg").stdout
    webinfra("up", "-f", str(topo), "--state-dir", str(state))


def test_a_rebooted_server_serves_again_by_itself(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    machine = lab.machine(WEB1)
    boot_id = ssh(lab, WEB1, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    with contextlib.suppress(subprocess.TimeoutExpired):
        machine.run(lab.ssh_dir, ["systemctl", "reboot"], timeout=15)

    def rebooted() -> bool:
        try:
            now = ssh(lab, WEB1, "cat /proc/sys/kernel/random/boot_id", timeout=10).stdout.strip()
        except subprocess.TimeoutExpired:
            return False
        return bool(now) and now != boot_id

    wait_for(rebooted, 120, "web-01 rebooted", interval=0.5)
    wait_for(lambda: serving(WEB1), 90, "web-01's nginx and app serving again after the reboot", interval=0.5)
    active = ssh(lab, WEB1, "systemctl is-active webinfra-mariadb webinfra-app webinfra-nginx").stdout.split()
    assert active == ["active"] * 3
    assert serving(LB)


def test_bad_ssh_input_is_one_line_naming_the_host(lab: labs.Lab, tmp_path: Path) -> None:
    unreachable = tmp_path / "unreachable.toml"
    unreachable.write_text(topology(lab, lb_ssh=f"root@{LB}:2"))
    result = webinfra("up", "-f", str(unreachable), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "lb-01: cannot connect over SSH to root@198.18.150.11:2" in errors[0], errors

    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    bad_key = tmp_path / "badkey.toml"
    bad_key.write_text(topology(lab, key=wrong))
    result = webinfra("plan", "--diff", "-f", str(bad_key), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "lb-01: cannot connect over SSH" in result.stderr and "\n" not in result.stderr.strip()

    missing = tmp_path / "missing.toml"
    missing.write_text(topology(lab, key=tmp_path / "nope"))
    result = webinfra("up", "-f", str(missing), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_status_json_over_ssh_shows_every_service_up(deployed: tuple[Path, Path, str]) -> None:
    """The emulated status contract, read through the SSH machines (systemd units, the helper's probes, the
    LB's runtime API and the replicas' SQL on the servers)."""
    topo, state, _ = deployed
    wait_for(lambda: webinfra("status", "-f", str(topo), "--state-dir", str(state)).returncode == 0, 60, "healthy")
    started = time.monotonic()
    result = webinfra("status", "--json", "-f", str(topo), "--state-dir", str(state))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    snap = json.loads(result.stdout)
    assert set(snap) >= {"schema_version", "cluster", "hosts", "lb", "db", "faults", "health", "monitoring"}
    assert [h["name"] for h in snap["hosts"]] == ["lb-01", "web-01", "web-02"]
    for host in snap["hosts"]:
        assert host["up"], host
        assert host["services"] and all(s["state"] == "running" and s["pid"] for s in host["services"]), host
    assert snap["lb"]["runtime_api"] and {b["state"] for b in snap["lb"]["backends"]} == {"up"}
    assert snap["db"]["primary"] == "web-01"
    [replica] = snap["db"]["replicas"]
    assert replica["name"] == "web-02" and replica["io_running"] == "Yes"
    assert snap["health"] == {"state": "healthy", "problems": []}
    print(f"status --json over ssh: {elapsed:.2f}s")


def test_weight_is_changed_live_on_the_lb(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    topo, state, _ = deployed
    before = main_pids(lab, LB)
    result = webinfra("weight", "web-02", "3", "-f", str(topo), "--state-dir", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    show = "echo 'show stat' | python3 -c \"import socket,sys; s=socket.socket(socket.AF_UNIX); "
    show += "s.connect('/run/webinfra/haproxy.sock'); s.sendall(sys.stdin.buffer.read()); "
    show += 'print(s.makefile().read())"'
    rows = [line.split(",") for line in ssh(lab, LB, show).stdout.splitlines() if line.startswith("site,web-02")]
    assert rows and rows[0][18] == "3", rows  # field 19 of `show stat`: the weight
    snap = json.loads(webinfra("status", "--json", "-f", str(topo), "--state-dir", str(state)).stdout)
    assert next(b for b in snap["lb"]["backends"] if b["name"] == "web-02")["weight"] == 3
    assert main_pids(lab, LB) == before  # live: no reload, no restart
    assert webinfra("weight", "web-02", "1", "-f", str(topo), "--state-dir", str(state)).returncode == 0


def test_an_app_crashed_on_a_server_recovers(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    topo, state, _ = deployed
    before = main_pids(lab, WEB2)["webinfra-app.service"]
    result = webinfra("fail", "web-02", "--service", "app", "-f", str(topo), "--state-dir", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "app crashed (SIGKILL)" in result.stdout
    # systemd restarts a killed unit (Restart=always) as on any server; either way it is a new process.
    wait_for(
        lambda: main_pids(lab, WEB2)["webinfra-app.service"] not in (before, "0"), 30, "the app restarted", interval=0.5
    )
    snap = json.loads(webinfra("status", "--json", "-f", str(topo), "--state-dir", str(state)).stdout)
    assert snap["faults"] == {"web-02": "app crashed (SIGKILL)"} and snap["health"]["state"] == "degraded"
    result = webinfra("recover", "web-02", "-f", str(topo), "--state-dir", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    status = webinfra("status", "--json", "-f", str(topo), "--state-dir", str(state))
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["faults"] == {}
    assert serving(WEB2) and serving(LB)


def test_logs_exec_and_sql_on_servers(deployed: tuple[Path, Path, str]) -> None:
    topo, state, _ = deployed
    where = ("-f", str(topo), "--state-dir", str(state))
    result = webinfra("logs", "web-01", "app", "-n", "5", "--json", *where)
    assert result.returncode == 0, result.stdout + result.stderr
    [entry] = json.loads(result.stdout)
    assert entry["file"] == "webinfra-app.service" and 0 < len(entry["lines"]) <= 5
    assert all("webinfra-app" in line for line in entry["lines"]), entry["lines"]
    assert webinfra("exec", "lb-01", *where, "--", "cat", "/etc/hostname").stdout.strip()
    sql = webinfra("sql", "web-01", "-e", "SELECT COUNT(*) AS n FROM site.entries", *where)
    assert sql.returncode == 0 and sql.stdout.splitlines()[0] == "n", sql.stdout + sql.stderr


def test_deploy_rolls_a_new_code_base_with_no_failed_request(
    lab: labs.Lab, deployed: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """`webinfra deploy PATH` on servers: each app server drained at the LB, `current` switched to the new
    release, the app restarted and checked, put back; the LB answers every request meanwhile."""
    topo, state, _ = deployed
    where = ("-f", str(topo), "--state-dir", str(state))
    code = copy_site(tmp_path / "site-v2", "v2")
    version = releases.content_hash(code)
    result, load, elapsed = deploy_under_load(lambda: get(LB, "/api/entries?limit=1")[:2], where, code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"deployed {version} to web-01, web-02" in result.stdout
    assert not load.failed, load.failed[:5]
    assert load.versions[-1] == version
    print(f"deploy over ssh: {elapsed:.1f}s, {load.done} requests through the LB, none failed")
    for address in (WEB1, WEB2):
        _, headers, _ = get(address, "/api/entries?limit=1")
        assert (headers["x-app-version"], headers["x-code"]) == (version, "v2")
        assert (
            ssh(lab, address, "readlink /opt/webinfra/site/current").stdout.strip() == f"/opt/webinfra/site/{version}"
        )
    # `up` keeps the deployed release: no change anywhere, the app not restarted, still the new version.
    pids = {a: main_pids(lab, a)["webinfra-app.service"] for a in (WEB1, WEB2)}
    again = webinfra("up", *where)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no changes on any server" in again.stdout, again.stdout
    assert {a: main_pids(lab, a)["webinfra-app.service"] for a in (WEB1, WEB2)} == pids
    assert {get(a, "/api/entries?limit=1")[1]["x-app-version"] for a in (WEB1, WEB2)} == {version}
    assert "already runs on every app server" in webinfra("deploy", str(code), *where).stdout


def test_a_failing_deploy_on_servers_is_rolled_back(
    lab: labs.Lab, deployed: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """A code base whose /healthz fails: web-01 is switched back (symlink and app) and the release removed;
    the LB answers every request meanwhile."""
    topo, state, _ = deployed
    where = ("-f", str(topo), "--state-dir", str(state))
    good = get(WEB1, "/api/entries?limit=1")[1]["x-app-version"]
    broken = copy_site(tmp_path / "site-broken", "broken", healthz_500=True)
    version = releases.content_hash(broken)
    load = Requests(lambda: get(LB, "/api/entries?limit=1")[:2])
    wait_for(lambda: load.done >= 20, 20, "requests through the LB")
    result = webinfra("deploy", str(broken), "--health-timeout", "3", *where, timeout=300)
    load.finish()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"deploy of {version} failed on web-01" in result.stderr and f"rolled back to {good}" in result.stderr
    assert not load.failed, load.failed[:5]
    assert {get(a, "/api/entries?limit=1")[1]["x-app-version"] for a in (WEB1, WEB2)} == {good}
    assert ssh(lab, WEB1, f"test -e /opt/webinfra/site/{version}").returncode != 0
    assert ssh(lab, WEB1, "readlink /opt/webinfra/site/current").stdout.strip() == f"/opt/webinfra/site/{good}"


def test_rollback_on_servers_goes_to_the_release_before(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    topo, state, _ = deployed
    where = ("-f", str(topo), "--state-dir", str(state))
    listed = json.loads(webinfra("deploy", "--list", "--json", *where).stdout)
    assert [r["installed"] for r in listed["releases"]][-1] is True
    result = webinfra("rollback", *where, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    before = listed["releases"][-1]["version"]  # the installed code base, shipped as a release of its label
    assert {get(a, "/api/entries?limit=1")[1]["x-app-version"] for a in (WEB1, WEB2)} == {before}
    assert ssh(lab, WEB1, "readlink /opt/webinfra/site/current").stdout.strip() == f"/opt/webinfra/site/{before}"


def test_scale_add_and_remove_a_server_under_load(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    """`scale add-server` of the spare lab machine, given by its SSH address, while GETs go through the LB:
    provisioned by `up`'s operations, added to HAProxy live (no reload), serving; then `remove-server`:
    drained, its units stopped and disabled. No request fails (the emulated bound). Bad input first: one
    line, nothing changed."""
    topo, state, _ = deployed
    where = ("-f", str(topo), "--state-dir", str(state))
    before = topo.read_text()
    for argv, code, words in (
        ((), 2, "give its --ssh user@host:port"),
        (("--ssh", "root@198.18.151.14"), 2, "not a host address of 198.18.150.0/24"),
        (("--ssh", f"root@{SPARE}:2"), 1, f"web-03: cannot connect over SSH to root@{SPARE}:2"),
    ):
        bad = webinfra("scale", "add-server", "web-03", *argv, *where)
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert bad.returncode == code and len(lines) == 1 and words in lines[0], bad.stdout + bad.stderr
        assert topo.read_text() == before
    lb_pid = main_pids(lab, LB)["webinfra-haproxy.service"]
    load = Requests(lambda: get(LB, "/api/entries?limit=1")[:2], limit=600)
    wait_for(lambda: load.done >= 20, 20, "requests through the LB")
    started = time.monotonic()
    added = webinfra("scale", "add-server", "web-03", "--ssh", f"root@{SPARE}", *where, timeout=600)
    add_seconds = time.monotonic() - started
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"added server web-03 ({SPARE})" in added.stdout
    wait_for(lambda: "web-03" in load.served_by, 20, "a request through the LB served by web-03")
    assert serving(SPARE) and not load.failed, load.failed[:5]
    assert f'[machines.hosts.web-03]\nssh = "root@{SPARE}"' in topo.read_text()
    assert "server web-03 " in ssh(lab, LB, "cat /etc/webinfra/haproxy.cfg").stdout  # a later reload keeps it
    assert main_pids(lab, LB)["webinfra-haproxy.service"] == lb_pid  # added live: no reload, no restart
    snap = json.loads(webinfra("status", "--json", *where).stdout)
    assert [h["name"] for h in snap["hosts"]] == ["lb-01", "web-01", "web-02", "web-03"]
    assert all(s["state"] == "running" for h in snap["hosts"] for s in h["services"]), snap["hosts"]

    started = time.monotonic()
    removed = webinfra("scale", "remove-server", "web-03", *where, timeout=600)
    remove_seconds = time.monotonic() - started
    seen = load.done
    wait_for(lambda: load.done >= seen + 20, 20, "requests after the remove")
    load.finish()
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not load.failed, load.failed[:5]
    assert "web-03" not in load.served_by[-20:]
    assert "web-03" not in topo.read_text().replace("# web-03: added by `webinfra scale add-server`", "")
    assert "web-03" not in ssh(lab, LB, "cat /etc/webinfra/haproxy.cfg").stdout
    assert main_pids(lab, LB)["webinfra-haproxy.service"] == lb_pid
    enabled = ssh(lab, SPARE, "systemctl list-unit-files 'webinfra-*' --state=enabled --no-legend").stdout
    assert enabled.strip() == "" and not serving(SPARE), enabled
    print(
        f"scale over ssh: add-server {add_seconds:.1f}s, remove-server {remove_seconds:.1f}s, "
        f"{load.done} requests through the LB, {len(load.failed)} failed"
    )


def test_scale_add_and_remove_a_replica_on_servers(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    """`scale add-replica` of the spare machine: cloned from the primary with mariabackup (streamed between
    the two servers through this machine), replicating; the apps' reads learn it (site.json, each app
    restarted out of rotation); then `remove-replica`. The LB answers every request meanwhile."""
    topo, state, _ = deployed
    where = ("-f", str(topo), "--state-dir", str(state))
    load = Requests(lambda: get(LB, "/api/entries?limit=1")[:2], limit=900)
    wait_for(lambda: load.done >= 20, 20, "requests through the LB")
    started = time.monotonic()
    added = webinfra("scale", "add-replica", "db-03", "--ssh", f"root@{SPARE}", *where, timeout=900)
    add_seconds = time.monotonic() - started
    assert added.returncode == 0, added.stdout + added.stderr
    assert "added replica db-03 (cloned at" in added.stdout
    status = ssh(lab, SPARE, 'mariadb --socket=/run/webinfra/mariadb.sock -N -e "SELECT COUNT(*) FROM site.entries"')
    assert status.returncode == 0 and int(status.stdout) > 0, status.stdout + status.stderr
    snap = json.loads(webinfra("status", "--json", *where).stdout)
    replicas = {r["name"]: r for r in snap["db"]["replicas"]}
    assert replicas["db-03"]["io_running"] == "Yes" and replicas["db-03"]["sql_running"] == "Yes", replicas
    assert SPARE in ssh(lab, WEB1, "cat /etc/webinfra/site.json").stdout  # the app reads from it too
    started = time.monotonic()
    removed = webinfra("scale", "remove-replica", "db-03", *where, timeout=900)
    remove_seconds = time.monotonic() - started
    load.finish()
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not load.failed, load.failed[:5]
    assert SPARE not in ssh(lab, WEB1, "cat /etc/webinfra/site.json").stdout
    assert ssh(lab, SPARE, "systemctl is-active webinfra-mariadb").stdout.strip() != "active"
    print(
        f"scale over ssh: add-replica {add_seconds:.1f}s, remove-replica {remove_seconds:.1f}s, "
        f"{load.done} requests through the LB, {len(load.failed)} failed"
    )


def test_down_leaves_no_webinfra_service_enabled(lab: labs.Lab, deployed: tuple[Path, Path, str]) -> None:
    topo, state, _ = deployed
    result = webinfra("down", "-f", str(topo), "--state-dir", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    for address in (LB, WEB1, WEB2):
        listed = ssh(lab, address, "systemctl list-unit-files 'webinfra-*' --state=enabled --no-legend").stdout
        assert listed.strip() == "", listed
        running = ssh(lab, address, "systemctl list-units 'webinfra-*' --state=active --no-legend").stdout
        assert running.strip() == "", running
    assert not serving(LB)
    # Data is kept without --purge; --purge removes it.
    assert ssh(lab, WEB1, "test -d /var/lib/webinfra/mariadb/mysql").returncode == 0
    purged = webinfra("down", "--purge", "--yes", "-f", str(topo), "--state-dir", str(state))
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert ssh(lab, WEB1, "test -e /var/lib/webinfra || test -e /etc/webinfra").returncode != 0
