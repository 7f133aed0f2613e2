"""`webinfra chaos` on servers, below the CLI and without a server: the running cluster named by its file,
the question asked before breaking it, and what the design cannot express refused (roles read stubbed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webinfra.errors import UsageError
from webinfra.model import parse_topology
from webinfra.model.relocate import seed_text
from webinfra.proving.chaos import command
from webinfra.proving.chaos.scenarios import Roles
from webinfra.state import Layout


def seed_over_ssh(tmp_path: Path, up: bool = True) -> tuple[Path, Path]:
    """The seed design on servers (no etcd, one LB); `up`: its state as `webinfra up` leaves it."""
    seed = parse_topology(seed_text(), "seed.toml")
    machines = "".join(f'[machines.hosts.{h.name}]\nssh = "root@{seed.address_of(h.name)}"\n' for h in seed.hosts)
    text = seed_text() + '\n[machines]\nkind = "ssh"\nkey = "/k/id"\n' + machines
    path, state = tmp_path / "servers.toml", tmp_path / "state"
    path.write_text(text)
    if up:
        layout = Layout.for_cluster(seed.name, state)
        layout.cluster_dir.mkdir(parents=True)
        layout.topology_file.write_text(text)
    return path, state


def request(scenario: str, path: Path, state: Path) -> command.ChaosRequest:
    return command.chaos_request(
        scenario,
        short=True,
        duration=20,
        topology_file=str(path),
        cluster_name=None,
        state_dir=state,
        png_path=None,
        out_dir=None,
        keep=False,
        scratch=("unused", "198.18.66.0/24"),
    )


@pytest.fixture
def roles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "roles_of", lambda cluster: Roles(vip_holder=None, primary="web-01"))


def test_the_question_names_the_target_of_the_moment(tmp_path: Path, roles: None) -> None:
    path, state = seed_over_ssh(tmp_path)
    cluster, question = command.servers_cluster(request("primary-crash", path, state))
    assert cluster.servers
    assert question.startswith("chaos primary-crash: the primary's MariaDB on web-01 is killed")
    assert question.endswith("under load (~4 s). Go on?")
    _, every = command.servers_cluster(request("all", path, state))
    assert "breaks 9 things" in every  # full-restart does not run on servers


def test_what_the_design_cannot_express_is_refused(tmp_path: Path, roles: None) -> None:
    path, state = seed_over_ssh(tmp_path)
    with pytest.raises(UsageError, match=r"etcd-member-down on cluster .*: no etcd"):
        command.servers_cluster(request("etcd-member-down", path, state))


def test_servers_never_brought_up_are_refused(tmp_path: Path, roles: None) -> None:
    path, state = seed_over_ssh(tmp_path, up=False)
    with pytest.raises(UsageError, match="is not up under"):
        command.servers_cluster(request("lb-crash", path, state))


@pytest.mark.parametrize(
    ("name", "keep", "scratch", "message"),
    [
        ("nemesis", True, False, "brings nothing up"),
        ("full-restart", False, False, "does not run on servers"),
        ("lb-crash", True, False, "brings nothing up"),
        ("all", False, True, "brings nothing up"),
    ],
)
def test_check_on_servers(name: str, keep: bool, scratch: bool, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        command.check_on_servers(name, keep, scratch)
    command.check_on_servers("lb-crash", False, False)  # the rest is fine
