"""The pure parts of `webinfra scale` on servers: the topology edit with a server's SSH address, which servers
a change touches (and which of their services read a changed file), which services pyinfra must leave
running, the new server's address from `--ssh`, and the CLI's one line with exit 2 on bad input, with
nothing changed and no server reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from testkit import EXAMPLES
from webinfra.cli.main import cli
from webinfra.errors import UsageError
from webinfra.model import parse_topology
from webinfra.model.edit import EditError, add_host, remove_host
from webinfra.ops.scale_servers import _server_address, _written_only
from webinfra.plan.build import build_plan
from webinfra.servers.scale import touched
from webinfra.state import Layout, ServerLayout

SERVERS = (EXAMPLES / "servers.toml").read_text()
SEED = (EXAMPLES / "seed.toml").read_text()


def _plan(text: str):  # type: ignore[no-untyped-def]
    return build_plan(parse_topology(text), ServerLayout(), "/opt/webinfra/releases/x/bin/python")


def test_add_host_on_servers_writes_its_address_and_ssh_entry() -> None:
    text, topo = add_host(SERVERS, "web-03", ["web", "app"], address="10.20.0.15", ssh="admin@10.20.0.15:22")
    entry = '[machines.hosts.web-03]\nssh = "admin@10.20.0.15:22"\n\n'
    assert f'ssh = "admin@10.20.0.14"\n\n{entry}[[hosts]]' in text  # after the last entry, a blank line kept
    assert text.replace(entry, "").startswith(SERVERS.rstrip("\n"))  # nothing else above rewritten
    assert text.endswith('[[hosts]]\nname = "web-03"\nroles = ["web", "app"]\naddress = "10.20.0.15"\n')
    assert str(topo.address_of("web-03")) == "10.20.0.15"
    assert str(topo.machines.address_of("web-03")) == "admin@10.20.0.15:22"
    assert topo.machines.become_of("web-03")  # [machines]'s default
    back, again = remove_host(text, "web-03")
    assert "web-03" not in back and again == parse_topology(SERVERS)


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (SERVERS, {}, "give its --ssh user@host:port"),
        (SERVERS, {"address": "10.30.0.5", "ssh": "a@10.30.0.5"}, "not a host address of 10.20.0.0/24"),
        (SERVERS, {"address": "10.20.0.13", "ssh": "a@10.20.0.13"}, "already web-02's"),
        (SERVERS, {"address": "10.20.0.100", "ssh": "a@10.20.0.100"}, "the VIP"),
        (SERVERS, {"address": "10.20.0.2", "ssh": "a@10.20.0.2"}, "not a host address"),
        (SERVERS, {"address": "10.20.0.15", "ssh": "a@b@c"}, "machines.hosts.web-03.ssh"),
        (SEED, {"ssh": "root@198.18.0.20"}, "the cluster's hosts are emulated"),
    ],
)
def test_bad_server_edits_are_refused(text: str, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(EditError, match=message):
        add_host(text, "web-03", ["web", "app"], **kwargs)


def test_touched_names_the_servers_a_change_gives_other_files() -> None:
    before = _plan(SERVERS)
    text, _ = add_host(SERVERS, "web-03", ["web", "app"], address="10.20.0.15", ssh="admin@10.20.0.15")
    after = _plan(text)
    found = touched(before, after)
    assert "web-03" not in found  # a new server is provisioned whole, not "touched"
    assert found["lb-01"] >= {"haproxy"} and found["lb-02"] >= {"haproxy"}
    # The DB servers' firewalls admit the new app server: a file of no service.
    assert "web-01" in found and "web-02" in found
    assert touched(before, before) == {}
    assert touched(after, before).keys() == found.keys()  # removing it touches the same servers


def test_only_services_a_plain_reload_hides_are_reloaded_by_pyinfra() -> None:
    quiet = _written_only(_plan(SERVERS), {"lb-01", "web-01"})
    assert set(quiet) == {"lb-01", "web-01"}
    assert "haproxy" in quiet["lb-01"] and "keepalived" not in quiet["lb-01"]
    assert {"app", "mariadb", "agent"} <= quiet["web-01"] and "nginx" not in quiet["web-01"]


def test_the_new_servers_address_defaults_to_its_ssh_host() -> None:
    assert _server_address(None, "admin@10.20.0.15:22") == "10.20.0.15"
    assert _server_address("10.20.0.16", "admin@10.20.0.15") == "10.20.0.16"
    assert _server_address(None, None) is None  # the edit then says --ssh is missing
    with pytest.raises(UsageError, match="names no IPv4 address"):
        _server_address(None, "admin@web-03.example.com")


@pytest.fixture
def stored_servers(tmp_path: Path) -> Path:
    """A servers cluster as `up` leaves its state here (nothing is reached in these tests)."""
    layout = Layout.for_cluster("srv", tmp_path)
    layout.cluster_dir.mkdir(parents=True)
    layout.topology_file.write_text(SERVERS)
    layout.server_python_file.write_text("/opt/webinfra/releases/x/bin/python\n")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["add-server", "web-03"], "give its --ssh user@host:port"),
        (["add-server", "web-03", "--ssh", "admin@web-03.example"], "names no IPv4 address"),
        (["add-server", "web-03", "--ssh", "admin@10.30.0.5"], "not a host address of 10.20.0.0/24"),
        (["add-server", "web-03", "--ssh", "admin@10.20.0.13"], "already web-02's"),
        (["remove-server", "lb-01"], "lb-01 also has the role(s) lb"),
    ],
)
def test_cli_scale_on_servers_bad_input_exits_2(stored_servers: Path, args: list[str], expected: str) -> None:
    before = sorted(p.relative_to(stored_servers) for p in stored_servers.rglob("*"))
    result = CliRunner().invoke(cli, ["scale", *args, "--state-dir", str(stored_servers), "-c", "srv"])
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1 and expected in result.output, result.output
    assert sorted(p.relative_to(stored_servers) for p in stored_servers.rglob("*")) == before
    assert Layout.for_cluster("srv", stored_servers).topology_file.read_text() == SERVERS


def test_a_failed_add_on_servers_is_undone_and_changes_no_file(
    stored_servers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The add's orchestration with the servers' side recorded instead of run: a failure after provisioning
    retires the new server, rewrites the touched servers as the old topology renders them, and leaves both
    topology files and the release record as they were."""
    from webinfra.control.cluster import Cluster
    from webinfra.ops import deploy, scale, scale_servers
    from webinfra.services import releases

    calls: list[tuple[str, str, frozenset[str]]] = []
    monkeypatch.setattr(scale_servers.servers, "reachable", lambda topo, names, say: None)
    monkeypatch.setattr(
        scale_servers.servers,
        "apply",
        lambda topo, local, names, say, **kw: calls.append(("apply", ",".join(h.name for h in topo.hosts), names)),
    )
    monkeypatch.setattr(
        scale_servers.servers,
        "retire",
        lambda topo, local, names, say: calls.append(("retire", ",".join(h.name for h in topo.hosts), names)),
    )
    monkeypatch.setattr(scale_servers, "_after", lambda new, touched, progress: None)
    monkeypatch.setattr(scale, "out_of_lbs", lambda cluster, name: calls.append(("out_of_lbs", name, frozenset())))

    def unhealthy(*args: object) -> None:
        raise deploy.HostUnhealthy("web-03: not healthy (a test)")

    monkeypatch.setattr(deploy, "_wait_healthy", unhealthy)
    layout = Layout.for_cluster("srv", stored_servers)
    user_file = stored_servers / "servers.toml"
    user_file.write_text(SERVERS)
    cluster = Cluster(parse_topology(SERVERS), layout, SERVERS)
    with pytest.raises(deploy.HostUnhealthy):
        scale.add_server(cluster, "web-03", None, ssh="admin@10.20.0.15", topology_file=user_file)
    old, new = "lb-01,lb-02,web-01,web-02,etcd-01", "lb-01,lb-02,web-01,web-02,etcd-01,web-03"
    # Every server whose rendered files change; etcd-01 too since it is the monitoring host (a new target).
    touched_names = frozenset({"lb-01", "lb-02", "web-01", "web-02", "etcd-01"})
    assert calls == [
        ("apply", new, touched_names | {"web-03"}),  # the new server and the touched ones, provisioned
        ("out_of_lbs", "web-03", frozenset()),
        ("retire", new, frozenset({"web-03"})),
        ("apply", old, touched_names),  # the touched servers' files as the old topology renders them
    ]
    assert layout.topology_file.read_text() == SERVERS and user_file.read_text() == SERVERS
    assert "web-03" not in releases.deployed(layout)
    assert "scale_failed" in layout.events_file.read_text()
