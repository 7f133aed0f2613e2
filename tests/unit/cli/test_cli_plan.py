"""`webinfra plan` (a diff against what runs), `plan --full` (the old rendering, byte for byte), and the
confirmation `up` and `down --purge` ask for. A "running" cluster here is one whose state directory looks as
`up` leaves it: its files written, network.json saved and a PID file per service naming a live process (this
test's own): nothing is started."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from testkit import REPO
from webinfra import errors
from webinfra.cli import common
from webinfra.cli.main import cli
from webinfra.control import plan_diff, preflight
from webinfra.control.cluster import Cluster
from webinfra.plan.daemons import nginx
from webinfra.runtime.emulated.process import track, write_pidfile

EXAMPLES = REPO / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden" / "plan"
GOLDEN_ENV = {"WEBINFRA_STATE_DIR": "/golden/state", "WEBINFRA_RUN_DIR": "/golden/run", "COLUMNS": "100"}
CASES = {"default": [], **{p.stem: ["-f", str(p)] for p in sorted(EXAMPLES.glob("*.toml"))}}

SEED = (EXAMPLES / "seed.toml").read_text()


def without_interpreter(text: str) -> str:
    """The plan names the Python running webinfra (the apps and agents run on it) and its venv: placeholders,
    so the golden copies hold wherever the venv is."""
    bin_dir = str(Path(sys.executable).parent)
    text = re.sub(re.escape(bin_dir) + r"/python3?(?=[\s\"'])", "<python>", text)
    return text.replace(bin_dir, "<venv-bin>")


@pytest.mark.parametrize("name", list(CASES))
def test_plan_full_is_byte_identical_to_the_golden_rendering(name: str) -> None:
    """`plan --full` prints what `plan` printed before it became a diff (golden copies taken then)."""
    result = CliRunner().invoke(cli, ["plan", "--full", *CASES[name]], env=GOLDEN_ENV)
    assert result.exit_code == 0, result.output
    golden = GOLDEN / f"plan-{name}.txt"
    output = without_interpreter(result.output)
    if os.environ.get("WEBINFRA_UPDATE_GOLDEN") == "1":
        golden.write_text(output)
    assert output == golden.read_text(), "plan --full changed: review it, then WEBINFRA_UPDATE_GOLDEN=1"


def running(text: str, state: Path) -> Cluster:
    """The cluster of `text` as if `up` had brought it up under `state`: files, network record, PID files."""
    path = state.parent / "applied.toml"
    path.write_text(text)
    cluster = Cluster.from_file(path, state)
    cluster.layout.cluster_dir.mkdir(parents=True, exist_ok=True)
    cluster.layout.topology_file.write_text(text)
    cluster.network.save(cluster.layout.network_file)
    me = track(os.getpid(), ("pytest",))
    for hp in cluster.plan.hosts:
        for f in hp.files:
            f.path.parent.mkdir(parents=True, exist_ok=True)
            f.path.write_text(f.content)
        for svc in hp.services:
            svc.pidfile.parent.mkdir(parents=True, exist_ok=True)
            write_pidfile(svc.pidfile, me)
    return cluster


def plan_of(text: str, state: Path) -> plan_diff.PlanDiff:
    path = state.parent / "edited.toml"
    path.write_text(text)
    return plan_diff.diff(Cluster.from_file(path, state))


def test_with_no_cluster_everything_is_to_be_created(tmp_path: Path) -> None:
    changes = plan_of(SEED, tmp_path / "state")
    assert not changes.running and changes.changed
    assert {h.name: h.action for h in changes.hosts} == {"lb-01": "create", "web-01": "create", "web-02": "create"}
    assert all(s.action == "start" for h in changes.hosts for s in h.services)
    assert all(f.action == "create" for h in changes.hosts for f in h.files)
    assert changes.summary().startswith("Plan: 3 hosts to create, 0 to remove;")


def test_no_changes_right_after_up(tmp_path: Path) -> None:
    running(SEED, tmp_path / "state")
    changes = plan_of(SEED, tmp_path / "state")
    assert changes.running and not changes.changed
    assert changes.summary() == "No changes: cluster seed runs what the file describes."


def test_editing_a_weight_reloads_haproxy_with_a_diff(tmp_path: Path) -> None:
    running(SEED, tmp_path / "state")
    edited = SEED.replace("weight = 1\n", "weight = 3\n").replace("weight = 3\n", "weight = 1\n", 1)
    assert edited != SEED
    changes = plan_of(edited, tmp_path / "state")
    changed = {h.name: h for h in changes.hosts if h.changed}
    assert list(changed) == ["lb-01"]
    lb = changed["lb-01"]
    assert lb.action == "change"
    assert [(s.name, s.action) for s in lb.services] == [("haproxy", "reload")]
    assert [Path(f.path).name for f in lb.files] == ["haproxy.cfg"]
    diff = lb.files[0].diff
    assert diff.startswith("--- ") and "\n+++ " in diff and "\n@@ " in diff
    assert any(line.startswith("+") and "web-02" in line and "weight 3" in line for line in diff.splitlines()), diff
    assert any(line.startswith("-") and "web-02" in line and "weight 1" in line for line in diff.splitlines()), diff


def test_adding_a_host_creates_it_and_changes_the_lb(tmp_path: Path) -> None:
    running(SEED, tmp_path / "state")
    edited = SEED + '\n[[hosts]]\nname = "web-03"\nroles = ["web", "app"]\n'
    changes = plan_of(edited, tmp_path / "state")
    by_name = {h.name: h for h in changes.hosts}
    assert by_name["web-03"].action == "create"
    assert {s.name for s in by_name["web-03"].services} == {"app", "nginx"}
    assert ("haproxy", "reload") in [(s.name, s.action) for s in by_name["lb-01"].services]
    assert changes.counts()["hosts_to_create"] == 1 and not changes.removals()


def test_changing_a_template_restarts_or_reloads_what_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running(SEED, tmp_path / "state")
    original = nginx.render

    def new_nginx_template(template: str, **values: object) -> str:
        out = original(template, **values)
        return out + "# a new line in the template\n" if template.startswith("nginx") else out

    monkeypatch.setattr(nginx, "render", new_nginx_template)
    changes = plan_of(SEED, tmp_path / "state")
    changed = {h.name: h for h in changes.hosts if h.changed}
    assert set(changed) == {"web-01", "web-02"}
    for host in changed.values():
        assert [(s.name, s.action) for s in host.services] == [("nginx", "reload")]
        assert host.files[0].diff.rstrip().endswith("+# a new line in the template")


def test_removing_a_host_and_a_database_needs_consent(tmp_path: Path) -> None:
    running(SEED, tmp_path / "state")
    text = SEED.split('[[hosts]]\nname = "web-02"')[0]  # web-02 (a replica) gone
    changes = plan_of(text, tmp_path / "state")
    assert {h.name: h.action for h in changes.hosts}["web-02"] == "remove"
    assert changes.removals() == ["remove host web-02"]


def test_a_stopped_service_is_to_be_started(tmp_path: Path) -> None:
    cluster = running(SEED, tmp_path / "state")
    cluster.plan.host("web-02").service("nginx").pidfile.unlink()
    changes = plan_of(SEED, tmp_path / "state")
    assert [(h.name, s.name, s.action) for h in changes.hosts for s in h.services] == [("web-02", "nginx", "start")]


def test_plan_cli_exit_codes_and_json(tmp_path: Path) -> None:
    state = tmp_path / "state"
    running(SEED, state)
    same = tmp_path / "same.toml"
    same.write_text(SEED)
    result = CliRunner().invoke(cli, ["plan", "-f", str(same), "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("No changes: cluster seed runs what the file describes.")
    edited = tmp_path / "edited.toml"
    edited.write_text(SEED.replace("weight = 1\n", "weight = 3\n").replace("weight = 3\n", "weight = 1\n", 1))
    result = CliRunner().invoke(cli, ["plan", "-f", str(edited), "--state-dir", str(state)])
    assert result.exit_code == errors.EXIT_CHANGES_PENDING == 3, result.output
    assert "haproxy" in result.output and "+    server web-02 198.18.0.12:80 weight 3 check" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Plan: 0 hosts to create, 0 to remove; 1 files")
    result = CliRunner().invoke(cli, ["plan", "--json", "-f", str(edited), "--state-dir", str(state)])
    assert result.exit_code == 3
    data = json.loads(result.output)
    assert set(data) == {"schema_version", "cluster", "running", "changes", "summary", "hosts"}
    assert data["changes"] is True and data["running"] is True and data["cluster"] == "seed"
    assert set(data["summary"]) == {
        "hosts_to_create",
        "hosts_to_remove",
        "files_to_change",
        "services_to_start",
        "services_to_reload",
        "services_to_restart",
        "services_to_stop",
    }
    (host,) = data["hosts"]
    assert set(host) == {"name", "action", "address", "files", "services"}
    assert host["services"] == [{"name": "haproxy", "action": "reload", "why": "config changed: haproxy.cfg"}]
    assert set(host["files"][0]) == {"path", "action", "diff"}


def test_plan_full_with_json_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "--full", "--json", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2 and "does not go with --json" in result.output


# ---- confirmation ----


@pytest.fixture
def as_root_with_programs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Root, every program installed, and `Cluster.up`/`down` recorded instead of run."""
    calls: list[str] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(preflight, "missing_programs", lambda plan: [])
    monkeypatch.setattr(Cluster, "up", lambda self, progress=None: calls.append("up"))
    monkeypatch.setattr(Cluster, "down", lambda self, purge=False, progress=None: calls.append(f"down purge={purge}"))
    return calls


def test_up_that_removes_a_host_is_refused_without_a_terminal(tmp_path: Path, as_root_with_programs: list[str]) -> None:
    state = tmp_path / "state"
    running(SEED, state)
    smaller = tmp_path / "smaller.toml"
    smaller.write_text(SEED.split('[[hosts]]\nname = "web-02"')[0])
    result = CliRunner().invoke(cli, ["up", "-f", str(smaller), "--state-dir", str(state)])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        "error: up would remove host web-02 (cluster seed): not a terminal, so not confirmed; pass --yes to go ahead"
    ]
    assert as_root_with_programs == []
    result = CliRunner().invoke(cli, ["up", "--yes", "-f", str(smaller), "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert as_root_with_programs == ["up"]


def test_up_asks_at_a_terminal(
    tmp_path: Path, as_root_with_programs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    running(SEED, state)
    smaller = tmp_path / "smaller.toml"
    smaller.write_text(SEED.split('[[hosts]]\nname = "web-02"')[0])
    monkeypatch.setattr(common, "interactive", lambda: True)
    result = CliRunner().invoke(cli, ["up", "-f", str(smaller), "--state-dir", str(state)], input="n\n")
    assert result.exit_code == 2 and "not confirmed; nothing changed" in result.output
    assert as_root_with_programs == []
    result = CliRunner().invoke(cli, ["up", "-f", str(smaller), "--state-dir", str(state)], input="y\n")
    assert result.exit_code == 0, result.output
    assert "up would remove host web-02" in result.output and as_root_with_programs == ["up"]


def test_up_that_removes_nothing_does_not_ask(tmp_path: Path, as_root_with_programs: list[str]) -> None:
    state = tmp_path / "state"
    running(SEED, state)
    same = tmp_path / "same.toml"
    same.write_text(SEED)
    result = CliRunner().invoke(cli, ["up", "-f", str(same), "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert as_root_with_programs == ["up"]


def test_down_purge_needs_yes_without_a_terminal(tmp_path: Path, as_root_with_programs: list[str]) -> None:
    state = tmp_path / "state"
    running(SEED, state)
    where = ["--state-dir", str(state), "-c", "seed"]
    result = CliRunner().invoke(cli, ["down", "--purge", *where])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith("error: down --purge deletes every piece of data of cluster seed (") and "--yes" in line
    assert as_root_with_programs == []
    assert CliRunner().invoke(cli, ["down", *where]).exit_code == 0  # keeping the data: no question
    assert CliRunner().invoke(cli, ["down", "--purge", "--yes", *where]).exit_code == 0
    assert as_root_with_programs == ["down purge=False", "down purge=True"]


def test_up_names_the_debian_package_of_a_missing_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(Cluster, "up", lambda *a, **k: pytest.fail("up must not start anything"))
    real_which = preflight.shutil.which
    monkeypatch.setattr(preflight.shutil, "which", lambda p: None if p in ("haproxy", "etcd") else real_which(p))
    result = CliRunner().invoke(cli, ["up", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    programs, hint = line.removeprefix("error: not installed: ").split(" (", 1)
    assert set(programs.split(", ")) == {"haproxy", "etcd"}  # in the order the plan first uses them
    assert hint == "Debian: apt-get install etcd-server haproxy; or scripts/install-deps.sh)"
    assert not (tmp_path / "state").exists()


def test_every_program_of_the_default_plan_has_a_package() -> None:
    cluster = Cluster.from_file(None)
    needed = preflight.needed_programs(cluster.plan)
    assert {"haproxy", "nginx", "mariadbd", "etcd", "keepalived", "prometheus", "nft", "ip"} <= set(needed)
    unknown = [p for p in needed if p not in preflight.PACKAGE_OF and not p.startswith("/")]
    assert not unknown


def test_plan_of_a_cluster_uses_its_stored_topology(tmp_path: Path) -> None:
    state = tmp_path / "state"
    running(SEED, state)
    result = CliRunner().invoke(cli, ["plan", "-c", "seed", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert "No changes: cluster seed" in result.output
