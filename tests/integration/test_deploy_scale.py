"""Rolling deploys and live scale-out under a read/write load through the LB, with zero failed requests.

Cluster `tdeploy` (198.18.70.0/24, module scope; as drawn: no TLS, no firewall): lb-01, web-01 (web + app +
primary DB), web-02 (web + app). Its steps run in order and share it: deploy of a modified code base; deploy
of a broken one, rolled back; add-server, remove-server; add-replica (its reads then go to the new replica:
the apps had none), remove-replica. Every step edits the topology file given with -f, whose comments stay.

Cluster `thard` (198.18.71.0/24): the hardened example (LB pair, HA agents, HTTPS, TLS behind it and the
derived firewall, all as shipped): add-server, deploy and remove-server there under load.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clusterkit import WEBINFRA, bring_up, cli, copy_site, leftovers, site, take_down, trust, wait_for
from hakit import missing_writes

from webinfra.control import events
from webinfra.control.cluster import Cluster
from webinfra.daemons import mariadb
from webinfra.model import parse_topology
from webinfra.model.relocate import amended, example_file, relocated
from webinfra.observe.status import snapshot
from webinfra.proving.loadgen import BackgroundLoad, LoadResult
from webinfra.services import releases

TOPOLOGY = """# tdeploy: the test cluster of test_deploy_scale.py.
name = "tdeploy"
firewall = false

[tls]
enabled = false

[network]
subnet = "198.18.70.0/24"

[lb]
route_writes_to = "primary"  # web-01 alone in the write backend: a deploy must keep writes flowing anyway
check_interval_ms = 500

# lb-01: the entry point.
[[hosts]]
name = "lb-01"
roles = ["lb"]

# web-01: the primary database's server.
[[hosts]]
name = "web-01"
roles = ["web", "app", "db"]
db_role = "primary"

# web-02: a second app server, no database.
[[hosts]]
name = "web-02"
roles = ["web", "app"]
"""


def fresh(cluster: Cluster) -> Cluster:
    """The cluster as it is now (scale changes its topology)."""
    return Cluster.existing(cluster.topology.name, cluster.layout.cluster_dir.parent)


def teardown(cluster: Cluster) -> None:
    current = fresh(cluster)
    take_down(current)
    assert not leftovers(current)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = bring_up(TOPOLOGY, tmp_path_factory.mktemp("state-deploy"))
    yield c
    teardown(c)


@pytest.fixture(scope="module")
def topo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("topo") / "tdeploy.toml"
    path.write_text(TOPOLOGY)
    return path


def webinfra(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`clusterkit.cli`, for group commands too (`scale add-server`: the cluster options follow the subcommand)."""
    if args[0] != "scale":
        return cli(cluster, *args, check=check, timeout=180)
    where = ["--state-dir", str(cluster.layout.cluster_dir.parent), "--cluster", cluster.topology.name]
    argv = [str(WEBINFRA), *args[:2], *where, *args[2:]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def under_load(cluster: Cluster, *args: str, check: bool = True, **load: object):  # type: ignore[no-untyped-def]
    """Run `webinfra ARGS` while a read/write load runs through the LB; returns (process, load result)."""
    load.setdefault("write_ratio", 0.2)
    with BackgroundLoad(
        cluster.topology.site_url, duration=120, concurrency=6, timeout=10, verify=trust(cluster), **load
    ) as bg:
        wait_for(lambda: bg.samples_so_far() >= 20, 10, "the load to start")
        proc = webinfra(cluster, *args, check=check)
        seen = bg.samples_so_far()
        wait_for(lambda: bg.samples_so_far() >= seen + 20, 10, "requests after the command")
    return proc, bg.result


def assert_no_failures(result: LoadResult, minimum: int = 100) -> None:
    assert len(result.samples) >= minimum, len(result.samples)
    assert not result.failed, [(s.method, s.status, s.error, s.served_by) for s in result.failed[:5]]
    assert result.acked_writes, "no write was acknowledged"


def code_versions(cluster: Cluster) -> dict[str, str | None]:
    return {h["name"]: h["code_version"] for h in snapshot(fresh(cluster))["hosts"] if "app" in h["roles"]}


def event_kinds(cluster: Cluster) -> list[str]:
    return [e["kind"] for e in events.read(cluster.layout.events_file)]


def test_deploy_under_load_zero_failures(cluster: Cluster, tmp_path: Path) -> None:
    code = copy_site(tmp_path / "site-v2", "v2")
    version = releases.content_hash(code)
    before = code_versions(cluster)
    assert set(before.values()) == {cluster.topology.app.version}
    proc, result = under_load(cluster, "deploy", str(code))
    assert f"deployed {version} to web-01, web-02" in proc.stdout
    assert_no_failures(result)
    assert {s.served_by for s in result.samples} == {"web-01", "web-02"}
    assert not missing_writes(cluster, "web-01", result.acked_writes)
    assert code_versions(cluster) == {"web-01": version, "web-02": version}
    with site(cluster) as client:
        replies = [client.get("/api/entries?limit=1") for _ in range(4)]
    assert {(r.headers["x-app-version"], r.headers["x-code"]) for r in replies} == {(version, "v2")}
    kinds = event_kinds(cluster)
    assert kinds.count("deploy_host_done") == 2 and kinds[-1] == "deploy_done"
    # `up` keeps the deployed version: nothing restarts, the site still runs it.
    pids = {h: fresh(cluster).plan.host(h).service("app").pidfile.read_text() for h in ("web-01", "web-02")}
    actions: list[str] = []
    fresh(cluster).up(lambda host, what, action: actions.append(action))
    assert not {"started", "restarted", "reloaded"} & set(actions), actions
    assert pids == {h: fresh(cluster).plan.host(h).service("app").pidfile.read_text() for h in pids}
    assert code_versions(cluster) == {"web-01": version, "web-02": version}
    # Deploying the same code again changes nothing.
    assert "already runs on every app server" in cli(cluster, "deploy", str(code)).stdout


def test_failing_deploy_is_rolled_back_with_zero_failures(cluster: Cluster, tmp_path: Path) -> None:
    good = code_versions(cluster)["web-01"]
    broken = copy_site(tmp_path / "site-broken", "broken", healthz_500=True)
    version = releases.content_hash(broken)
    proc, result = under_load(cluster, "deploy", str(broken), "--health-timeout", "3", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.match(rf"failed: deploy of {version} failed on web-01: .*rolled back to {good}$", lines[0]), lines
    assert_no_failures(result)
    assert code_versions(cluster) == {"web-01": good, "web-02": good}
    assert {s.served_by for s in result.samples[-20:]} == {"web-01", "web-02"}
    kinds = event_kinds(cluster)
    assert kinds[-3:] == ["deploy_started", "deploy_failed", "deploy_rolled_back"]
    # No stand-in for writes is left in the LB once web-01 is back.
    servers = fresh(cluster).runtime().servers()
    assert {s.name for s in servers if s.backend == "site_writes"} == {"web-01"}
    assert all(s.status == "UP" for s in servers)
    # A bad PATH: exit 2, one line, nothing changed.
    record = cluster.layout.deploy_file.read_text()
    bad = cli(cluster, "deploy", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: {tmp_path / 'missing'}: no such directory"
    assert cluster.layout.deploy_file.read_text() == record


def test_rollback_under_load_zero_failures(cluster: Cluster) -> None:
    """`rollback` goes back to the release before (here the installed code base), then forward again to the
    kept v2, each time a rolling deploy under load; the failed release above is not kept."""
    v2 = code_versions(cluster)["web-01"]
    assert v2 is not None
    listing = json.loads(cli(cluster, "deploy", "--list", "--json").stdout)
    assert [(r["version"], r["running_on"], r["installed"]) for r in listing["releases"]] == [
        (v2, ["web-01", "web-02"], False),
        ("1", [], True),
    ]
    proc, result = under_load(cluster, "rollback", "--json")
    assert json.loads(proc.stdout) == {
        "cluster": "tdeploy",
        "version": "1",
        "switched": ["web-01", "web-02"],
        "unchanged": [],
        "seconds": json.loads(proc.stdout)["seconds"],
    }
    assert_no_failures(result)
    assert code_versions(cluster) == {"web-01": "1", "web-02": "1"}
    proc, result = under_load(cluster, "rollback")
    assert f"deployed {v2} to web-01, web-02" in proc.stdout
    assert_no_failures(result)
    assert code_versions(cluster) == {"web-01": v2, "web-02": v2}
    kinds = event_kinds(cluster)
    assert kinds.count("deploy_done") >= 3 and kinds[-1] == "deploy_done"
    bad = cli(cluster, "rollback", "nope", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no release 'nope' is kept (releases: ")


def test_add_server_under_load(cluster: Cluster, topo_file: Path) -> None:
    version = code_versions(cluster)["web-01"]
    proc, result = under_load(cluster, "scale", "add-server", "web-03", "--weight", "2", "-f", str(topo_file))
    assert "added server web-03 (198.18.70.13)" in proc.stdout
    assert_no_failures(result)
    assert result.served_by_counts().get("web-03", 0) > 0
    assert not missing_writes(cluster, "web-01", result.acked_writes)
    text = topo_file.read_text()
    assert text.startswith(TOPOLOGY.rstrip("\n")) and "# web-03: added by `webinfra scale add-server`" in text
    assert parse_topology(text).host("web-03").lb_weight == 2
    assert cluster.layout.topology_file.read_text() == text
    now = fresh(cluster)
    assert code_versions(now)["web-03"] == version
    backends = {b["name"]: b for b in snapshot(now)["lb"]["backends"]}
    assert backends["web-03"]["state"] == "up" and backends["web-03"]["weight"] == 2
    assert "server web-03 198.18.70.13:80 weight 2 check" in (now.layout.host("lb-01").etc / "haproxy.cfg").read_text()


def test_remove_server_under_load(cluster: Cluster, topo_file: Path) -> None:
    proc, result = under_load(cluster, "scale", "remove-server", "web-03", "-f", str(topo_file))
    assert "removed server web-03" in proc.stdout
    assert_no_failures(result)
    assert parse_topology(topo_file.read_text()) == parse_topology(TOPOLOGY)
    assert "# web-03" not in topo_file.read_text() and "# web-02: a second app server" in topo_file.read_text()
    now = fresh(cluster)
    assert [b["name"] for b in snapshot(now)["lb"]["backends"]] == ["web-01", "web-02"]
    assert "web-03" not in {s.name for s in now.runtime().servers()}
    assert not [ns for ns in leftovers(cluster) if ns.endswith("-web-03")]


def test_add_replica_under_load(cluster: Cluster, topo_file: Path) -> None:
    proc, result = under_load(cluster, "scale", "add-replica", "db-03", "-f", str(topo_file))
    assert "added replica db-03" in proc.stdout, proc.stdout
    assert_no_failures(result)
    now = fresh(cluster)
    node = next(n for n in snapshot(now)["db"]["nodes"] if n["name"] == "db-03")
    assert (node["role"], node["io_running"], node["sql_running"], node["read_only"]) == ("replica", "Yes", "Yes", True)
    assert node["replicating_from"] == "198.18.70.11"
    # Both apps read from it now (they had no replica before).
    with site(now) as client:
        reads = [client.get("/api/entries?limit=1") for _ in range(6)]
    assert {r.headers["x-db"] for r in reads} == {"db-03"}
    hp = now.plan.host("db-03")
    mariadb.wait_caught_up(
        now.hosts["db-03"], hp, mariadb.gtid_binlog_pos(now.hosts["web-01"], now.plan.host("web-01"))
    )
    assert not missing_writes(now, "db-03", result.acked_writes)
    assert parse_topology(topo_file.read_text()).host("db-03").db_role == "replica"


def test_remove_replica_under_load(cluster: Cluster, topo_file: Path) -> None:
    proc, result = under_load(cluster, "scale", "remove-replica", "db-03", "-f", str(topo_file))
    assert "removed replica db-03" in proc.stdout
    assert_no_failures(result)
    now = fresh(cluster)
    with site(now) as client:
        assert {client.get("/api/entries?limit=1").headers["x-db"] for _ in range(4)} == {"web-01"}
    assert [n["name"] for n in snapshot(now)["db"]["nodes"]] == ["web-01"]
    assert parse_topology(topo_file.read_text()) == parse_topology(TOPOLOGY)
    assert not missing_writes(now, "web-01", result.acked_writes)


# ---- the hardened example: HA, HTTPS, TLS behind the LB, firewall ----


def hardened(name: str, octet: int) -> str:
    text = relocated(example_file("hardened.toml").read_text(), name, f"198.18.{octet}.0/24")
    return amended(text, {"lb": {"check_interval_ms": 500}})


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = bring_up(hardened("thard", 71), tmp_path_factory.mktemp("state-hard"))
    yield c
    teardown(c)


def test_hardened_add_server_deploy_and_remove_under_load(hard: Cluster, tmp_path: Path) -> None:
    assert hard.topology.tls.enabled and hard.topology.backend_tls and hard.topology.firewall and hard.topology.ha
    # `plan` of the file it runs: nothing to do (every config of the hardened design, as `up` wrote it).
    design = tmp_path / "thard.toml"
    design.write_text(hardened("thard", 71))
    planned = cli(hard, "plan", "-f", str(design), check=False)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert cli(hard, "plan", check=False).returncode == 0  # -c thard: its own stored topology
    proc, result = under_load(hard, "scale", "add-server", "web-03")
    assert "added server web-03 (198.18.71.15)" in proc.stdout
    assert_no_failures(result)
    assert result.served_by_counts().get("web-03", 0) > 0
    now = fresh(hard)
    rules = (now.layout.host("web-01").etc / "firewall.nft").read_text()
    assert "198.18.71.15" in rules  # web-03's app may reach web-01's MariaDB and agent now
    assert "198.18.71.15" in now.hosts["web-01"].run(["nft", "list", "table", "inet", "webinfra"]).stdout

    code = copy_site(tmp_path / "site-v3", "v3")
    version = releases.content_hash(code)
    proc, result = under_load(now, "deploy", str(code))
    assert f"deployed {version} to web-01, web-02, web-03" in proc.stdout
    assert_no_failures(result)
    assert code_versions(now) == {"web-01": version, "web-02": version, "web-03": version}

    proc, result = under_load(now, "scale", "remove-server", "web-03")
    assert_no_failures(result)
    after = fresh(hard)
    assert "198.18.71.15" not in after.hosts["web-01"].run(["nft", "list", "table", "inet", "webinfra"]).stdout
    assert [h.name for h in after.topology.hosts] == ["lb-01", "lb-02", "web-01", "web-02", "etcd-01"]
    with httpx.Client(base_url=after.topology.site_url, verify=trust(after), timeout=10) as client:
        assert client.get("/api/entries?limit=1").headers["x-app-version"] == version
    assert json.loads(after.layout.deploy_file.read_text())["hosts"].keys() == {"web-01", "web-02"}
