"""Cluster lifecycle: data kept across down/up, --purge, nothing left behind, bad input refused, backup
takeover, and the split-components topology."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from clusterkit import WEBINFRA, backend_states, leftovers, seed_topology, site, trust, wait_for

from webinfra.control.cluster import Cluster
from webinfra.hosts import network as netmod
from webinfra.hosts.process import read_pidfile

ROOT = Path(__file__).resolve().parents[2]


def test_data_survives_down_and_up_and_purge_deletes_it(make_cluster: Callable[[str], Cluster]) -> None:
    cluster = make_cluster(seed_topology("tlife", 12))
    with site(cluster) as client:
        ids = [client.post("/api/entries", json={"text": f"keep {i}"}).json()["id"] for i in range(5)]
    pidfiles = [s.pidfile for hp in cluster.plan.hosts for s in hp.services]
    tracked = [read_pidfile(p) for p in pidfiles]
    assert all(tracked)

    cluster.down()
    assert leftovers(cluster) == []
    assert all(not Path(f"/proc/{p.pid}").exists() or _is_zombie(p.pid) for p in tracked if p)
    assert cluster.layout.secret("db-site").exists()

    cluster.up()
    with site(cluster) as client:
        for entry_id in ids:
            assert client.get(f"/api/entries/{entry_id}").status_code == 200
        assert client.post("/api/entries", json={"text": "after restart"}).status_code == 201

    proc = subprocess.run(
        [
            str(WEBINFRA),
            "down",
            "--purge",
            "--yes",
            "--state-dir",
            str(cluster.layout.cluster_dir.parent),
            "-c",
            "tlife",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert not cluster.layout.cluster_dir.exists()
    assert leftovers(cluster) == []


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_invalid_topology_is_refused_and_nothing_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(seed_topology("tbad", 13, web01_weight=300))
    state = tmp_path / "state"
    proc = subprocess.run(
        [str(WEBINFRA), "up", "-f", str(bad), "--state-dir", str(state)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "hosts[1].weight" in proc.stderr and "300" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not state.exists() or not any(state.iterdir())
    assert not [ns for ns in netmod.existing_namespaces() if ns.startswith("wi-tbad-")]


def test_non_root_is_refused(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            str(WEBINFRA),
            "up",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "root" in proc.stderr and "Traceback" not in proc.stderr


def test_backup_server_takes_over_and_hands_back(make_cluster: Callable[[str], Cluster]) -> None:
    cluster = make_cluster(seed_topology("tbackup", 14, web02_extra="backup = true"))

    def served(n: int = 60) -> Counter[str]:
        with site(cluster) as client:
            return Counter(client.get("/healthz").headers["x-served-by"] for _ in range(n))

    assert served() == {"web-01": 60}  # the backup gets nothing while an active server is up
    cluster.stop("web-01", "nginx")
    wait_for(lambda: backend_states(cluster)["web-01"] == "down", 10, "web-01 marked down")
    assert served() == {"web-02": 60}  # ...takes over when every active server is down
    cluster.start("web-01", "nginx")
    wait_for(lambda: backend_states(cluster)["web-01"] == "up", 20, "web-01 back up")
    assert served() == {"web-01": 60}  # ...and hands traffic back


def test_split_components_topology_serves(make_cluster: Callable[[str], Cluster]) -> None:
    cluster = make_cluster((ROOT / "examples" / "split.toml").read_text())
    with site(cluster) as client:
        writes = [client.post("/api/entries", json={"text": f"split {i}"}) for i in range(6)]
        reads = [client.get("/api/entries") for _ in range(12)]
    assert all(w.status_code == 201 for w in writes)
    assert {w.headers["x-db"] for w in writes} == {"db-01"}
    assert all(r.status_code == 200 for r in reads)
    assert {r.headers["x-db"] for r in reads} == {"db-02"}
    assert {r.headers["x-served-by"] for r in reads} == {"app-01", "app-02"}
    assert httpx.get(cluster.topology.site_url, timeout=5, verify=trust(cluster)).status_code == 200
