"""The CLI against a real cluster: `plan` diffs against what runs (and `up` then makes it true), `up` refuses to
remove a host without --yes, `status` exit codes as services go down and come back, `logs --follow`.

Cluster `tcli` (198.18.72.0/24, module scope): the seed design (lb-01, web-01 primary, web-02 replica), no
TLS, no firewall, fast health checks.
"""

from __future__ import annotations

import json
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from clusterkit import WEBINFRA, backend_states, bring_up, seed_topology, take_down, wait_for

from webinfra.control.cluster import Cluster
from webinfra.services import supervisor

TOPOLOGY = seed_topology("tcli", 72)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = bring_up(TOPOLOGY, tmp_path_factory.mktemp("state-cli"))
    yield c
    take_down(c)


def webinfra(cluster: Cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    argv = [str(WEBINFRA), *args, "--state-dir", str(cluster.layout.cluster_dir.parent)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def topology_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tcli.toml"
    path.write_text(text)
    return str(path)


def test_plan_diffs_against_the_running_cluster_and_up_applies_it(cluster: Cluster, tmp_path: Path) -> None:
    same = webinfra(cluster, "plan", "-f", topology_file(tmp_path, TOPOLOGY))
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.strip().endswith("No changes: cluster tcli runs what the file describes.")

    edited = topology_file(tmp_path, seed_topology("tcli", 72, web02_weight=3))
    proc = webinfra(cluster, "plan", "-f", edited)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "+    server web-02 198.18.72.12:80 weight 3 check" in proc.stdout
    data = json.loads(webinfra(cluster, "plan", "--json", "-f", edited).stdout)
    assert data["running"] and data["changes"]
    assert [(h["name"], [(s["name"], s["action"]) for s in h["services"]]) for h in data["hosts"]] == [
        ("lb-01", [("haproxy", "reload")])
    ]
    haproxy_pid = _haproxy_pid(cluster)

    applied = webinfra(cluster, "up", "-f", edited, timeout=180)  # adds nothing, removes nothing: no question
    assert applied.returncode == 0, applied.stdout + applied.stderr
    after = webinfra(cluster, "plan", "-f", edited)
    assert after.returncode == 0, after.stdout
    assert _haproxy_pid(cluster) == haproxy_pid  # reloaded, as the plan said

    back = webinfra(cluster, "up", "-f", topology_file(tmp_path, TOPOLOGY), timeout=180)
    assert back.returncode == 0, back.stdout + back.stderr


def test_up_that_would_remove_a_host_is_refused_without_yes(cluster: Cluster, tmp_path: Path) -> None:
    smaller = topology_file(tmp_path, TOPOLOGY.split('[[hosts]]\nname = "web-02"')[0])
    plan = webinfra(cluster, "plan", "-f", smaller)
    assert plan.returncode == 3 and "- remove" in plan.stdout
    proc = webinfra(cluster, "up", "-f", smaller)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: up would remove host web-02 (cluster tcli): not a terminal, so not confirmed; pass --yes to go ahead"
    )
    assert proc.stdout == ""
    web = cluster.plan.host("web-02")
    assert supervisor.pid_of(cluster.hosts["web-02"], web.service("nginx")) is not None  # nothing changed
    assert webinfra(cluster, "plan", "-f", topology_file(tmp_path, TOPOLOGY)).returncode == 0


def status_code(cluster: Cluster) -> int:
    return webinfra(cluster, "status", "--json").returncode


def test_status_exit_codes_follow_the_cluster(cluster: Cluster) -> None:
    wait_for(lambda: status_code(cluster) == 0, 30, "status healthy (exit 0)")
    try:
        assert webinfra(cluster, "stop", "web-02", "nginx").returncode == 0
        wait_for(lambda: backend_states(cluster)["web-02"] == "down", 15, "web-02 down behind the LB")
        proc = webinfra(cluster, "status", "--json")
        assert proc.returncode == 4, proc.stdout
        problems = json.loads(proc.stdout)["health"]["problems"]
        assert "nginx on web-02 is stopped" in problems and "backend web-02 is down" in problems
        table = webinfra(cluster, "status")
        assert table.returncode == 4 and "backend web-02 is down" in table.stdout
        assert webinfra(cluster, "stop", "lb-01", "haproxy").returncode == 0
        proc = webinfra(cluster, "status", "--json")
        assert proc.returncode == 5, proc.stdout
        assert json.loads(proc.stdout)["health"]["state"] == "down"
    finally:
        webinfra(cluster, "start", "lb-01")
        webinfra(cluster, "start", "web-02")
    wait_for(lambda: status_code(cluster) == 0, 30, "status healthy again (exit 0)")


def read_line(stream: IO[str], timeout: float) -> str | None:
    """The next line on `stream`, or None if none comes within `timeout`."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else None


def test_logs_follow_prints_lines_as_they_are_written(cluster: Cluster) -> None:
    """HAProxy logs a backend going down: follow lb-01's log, then stop web-02's nginx."""
    argv = [str(WEBINFRA), "logs", "-F", "--json", "-n", "0", "-s", "haproxy"]
    argv += ["--state-dir", str(cluster.layout.cluster_dir.parent), "-c", "tcli"]
    follower = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert follower.stdout is not None and follower.stderr is not None
    try:
        # It says so on stderr once it holds the files' ends: from then on every line written is printed.
        assert read_line(follower.stderr, 20) == "following 1 log files (Ctrl-C stops)\n"
        webinfra(cluster, "stop", "web-02", "nginx")
        seen: list[dict[str, str]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = read_line(follower.stdout, 1.0)
            if line:
                seen.append(json.loads(line))
                if "web-02 is DOWN" in seen[-1]["line"]:
                    break
        assert seen and "web-02 is DOWN" in seen[-1]["line"], seen
        log = cluster.plan.host("lb-01").service("haproxy").log
        assert {(s["host"], s["service"], s["file"]) for s in seen} == {("lb-01", "haproxy", str(log))}
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        webinfra(cluster, "start", "web-02", "nginx")
    wait_for(lambda: backend_states(cluster)["web-02"] == "up", 20, "web-02 back up")


def _haproxy_pid(cluster: Cluster) -> int | None:
    lb = cluster.lb_plan()
    return supervisor.pid_of(cluster.hosts[lb.name], lb.service("haproxy"))
