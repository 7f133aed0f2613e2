"""The pure parts of deploy and scale: topology file edits (tomlkit keeps the comments), code base checks and
version hashing, release directories and their record, the plan with releases and draining, the arguments of
a dynamic HAProxy server, and the CLI's exit 2 on bad input with nothing changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from topology_cases import GOOD, SPLIT

from testkit import EXAMPLES
from webinfra.cli.main import cli
from webinfra.model import parse_topology
from webinfra.model.edit import EditError, add_host, next_free_address, remove_host
from webinfra.ops.drain import _configured_names, dynamic_server_args
from webinfra.plan.build import build_plan
from webinfra.plan.spec import AppRelease
from webinfra.services import releases
from webinfra.services.releases import CodeBaseError
from webinfra.state import Layout

SEED = (EXAMPLES / "seed.toml").read_text()


# ---- topology file edits ----


def test_add_host_keeps_every_comment_and_validates() -> None:
    text, topo = add_host(SEED, "web-03", ["web", "app"], weight=2, note="web-03: added by a test")
    comments = [line for line in SEED.splitlines() if line.lstrip().startswith("#")]
    for line in comments:
        assert line in text
    assert text.startswith(SEED.rstrip("\n"))  # appended, nothing above rewritten
    assert '# web-03: added by a test\n[[hosts]]\nname = "web-03"' in text
    assert topo.host("web-03").lb_weight == 2
    assert str(topo.address_of("web-03")) == "198.18.0.13"
    assert "address" not in text.split('name = "web-03"')[1]  # its place in file order gives it .13
    assert parse_topology(text) == topo


def test_add_host_writes_the_next_free_address_when_file_order_would_clash() -> None:
    # web-02 sits at .12 explicitly: a host appended without an address would be numbered .12 too.
    base = GOOD.replace('name = "web-02"', 'name = "web-02"\naddress = "198.18.0.12"')
    text, topo = add_host(base, "db-03", ["db"], db_role="replica")
    assert str(topo.address_of("db-03")) == "198.18.0.13"
    assert 'address = "198.18.0.13"' in text
    assert next_free_address(topo) == topo.network.subnet.network_address + 14


def test_add_host_skips_the_vip() -> None:
    # Hosts take .10-.14 (etcd-01 last); the VIP sits on the next free address.
    text = (EXAMPLES / "hardened.toml").read_text().replace('vip = "198.18.0.100"', 'vip = "198.18.0.15"')
    _, topo = add_host(text, "web-03", ["web", "app"])
    assert str(topo.address_of("web-03")) == "198.18.0.16"


def test_remove_host_pins_later_addresses_and_takes_its_comment_block() -> None:
    # web-01 holds the primary: the seed design would have none left.
    with pytest.raises(EditError, match="primary"):
        remove_host(SEED, "web-01")
    added, _ = add_host(SEED, "web-03", ["web", "app"], note="web-03: added")
    text, topo = remove_host(added, "web-02")
    assert [h.name for h in topo.hosts] == ["lb-01", "web-01", "web-03"]
    assert str(topo.address_of("web-03")) == "198.18.0.13"  # not moved to .12
    assert 'address = "198.18.0.13"' in text
    assert "# web-02: the same stack" not in text  # the removed host's own comment went with it
    assert "# web-03: added" in text  # the next host's stayed
    assert "# web-01: a web server" in text
    back, _ = remove_host(text, "web-03")
    assert parse_topology(back).hosts == parse_topology(remove_host(SEED, "web-02")[0]).hosts


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: add_host(SEED, "web-01", ["web", "app"]), "already exists"),
        (lambda: remove_host(SEED, "nope"), "unknown host 'nope'"),
        (lambda: add_host(SEED, "Bad_Name", ["web", "app"]), "hosts[3].name"),
        (lambda: remove_host(SPLIT, "app-01"), "at least one host must have the 'app' role"),
    ],
)
def test_bad_edits_are_refused(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EditError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call()


# ---- code bases and releases ----


@pytest.fixture
def code_base(tmp_path: Path) -> Path:
    dest = tmp_path / "site"
    shutil.copytree(releases.builtin_code_base(), dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_version_hash_is_stable_ignores_bytecode_and_follows_content(code_base: Path) -> None:
    first = releases.content_hash(code_base)
    assert len(first) == releases.HASH_CHARS and releases.VERSION_PATTERN.match(first)
    (code_base / "__pycache__").mkdir()
    (code_base / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0junk")
    assert releases.content_hash(code_base) == first
    assert releases.content_hash(code_base) == releases.content_hash(releases.builtin_code_base())
    (code_base / "app.py").write_text((code_base / "app.py").read_text() + "\n# changed\n")
    assert releases.content_hash(code_base) != first


def test_code_base_checks(tmp_path: Path, code_base: Path) -> None:
    releases.check_code_base(code_base)
    with pytest.raises(CodeBaseError, match="no such directory"):
        releases.check_code_base(tmp_path / "missing")
    with pytest.raises(CodeBaseError, match=r"no __init__\.py"):
        releases.check_code_base(tmp_path)
    (code_base / "app.py").write_text("def make_app():\n    pass\n")
    with pytest.raises(CodeBaseError, match="defines no create_app"):
        releases.check_code_base(code_base)
    (code_base / "app.py").write_text("def create_app(:\n")
    with pytest.raises(CodeBaseError, match="does not parse"):
        releases.check_code_base(code_base)
    with pytest.raises(CodeBaseError, match="--version"):
        releases.check_version("no spaces")


def test_ship_is_idempotent_and_a_version_names_one_code(tmp_path: Path, code_base: Path) -> None:
    dest = tmp_path / "host" / "releases" / "v1"
    assert releases.ship(code_base, "v1", dest) is True
    assert (dest / "webinfra" / "site" / "app.py").is_file()
    assert (dest / "webinfra" / "__init__.py").read_text() == releases.SHIM
    assert releases.ship(code_base, "v1", dest) is False
    (code_base / "app.py").write_text((code_base / "app.py").read_text() + "# other\n")
    with pytest.raises(CodeBaseError, match="already deployed with other code"):
        releases.ship(code_base, "v1", dest)
    assert [p.name for p in dest.parent.iterdir()] == ["v1"]  # no staging left behind


def test_deploy_record_round_trip_and_prune(tmp_path: Path, code_base: Path) -> None:
    layout = Layout(tmp_path / "c")
    assert releases.deployed(layout) == {}
    releases.record(layout, "web-01", AppRelease("v2", tmp_path / "r" / "v2"))
    releases.record(layout, "web-02", AppRelease("v2", tmp_path / "r2" / "v2"))
    releases.forget(layout, "web-02")
    assert releases.deployed(layout) == {"web-01": AppRelease("v2", tmp_path / "r" / "v2")}
    assert json.loads(layout.deploy_file.read_text())["hosts"]["web-01"]["version"] == "v2"
    dirs = layout.host("web-01")
    for i in range(6):
        releases.ship(code_base, f"v{i}", releases.release_dir(dirs, f"v{i}"))
    releases.prune(dirs, {"v0"}, max_kept=2)
    kept = sorted(p.name for p in (dirs.root / "releases").iterdir())
    assert "v0" in kept and len(kept) == 3


# ---- the plan with releases ----


def test_plan_runs_the_recorded_release_and_its_version() -> None:
    topo = parse_topology(GOOD)
    layout = Layout(Path("/state/t"))
    plain = build_plan(topo, layout, python="/usr/bin/python3")
    app = plain.host("web-01").service("app")
    assert "--app-dir" not in app.argv
    assert (
        json.loads(next(f.content for f in plain.host("web-01").files if f.path.name == "site.json"))["version"]
        == topo.app.version
    )
    rel = AppRelease("abc123", Path("/state/t/hosts/web-01/releases/abc123"))
    plan = build_plan(topo, layout, python="/usr/bin/python3", releases={"web-01": rel})
    argv = plan.host("web-01").service("app").argv
    assert argv[argv.index("--app-dir") + 1] == str(rel.app_dir)
    assert argv.index("--app-dir") < argv.index("webinfra.site.app:create_app")
    site = json.loads(next(f.content for f in plan.host("web-01").files if f.path.name == "site.json"))
    assert site["version"] == "abc123"
    assert plan.host("web-02") == plain.host("web-02")  # other hosts untouched


def test_plan_marks_a_draining_app_down_in_every_nginx() -> None:
    text = SPLIT + '[[hosts]]\nname = "app-02"\nroles = ["app"]\n'
    topo = parse_topology(text)
    layout = Layout(Path("/state/t"))
    plan = build_plan(topo, layout, draining=frozenset({"app-01"}))
    conf = next(f.content for f in plan.host("web-01").files if f.path.name == "nginx.conf")
    app01, app02 = str(topo.address_of("app-01")), str(topo.address_of("app-02"))
    assert f"server {app01}:8000 max_fails=1 fail_timeout=2s down;" in conf
    assert f"server {app02}:8000 max_fails=1 fail_timeout=2s;" in conf


# ---- HAProxy dynamic servers ----


def test_dynamic_server_args_are_what_a_reload_would_give() -> None:
    topo = parse_topology("[tls]\nenabled = false\n[lb]\ncheck_interval_ms = 500\n" + GOOD)
    servers = build_plan(topo, Layout(Path("/state/t"))).host("lb-01").lb_servers
    args = dynamic_server_args(servers, "site", "web-02").split()
    assert args[0] == "198.18.0.12:80"
    for word in ("inter", "500ms", "fall", "rise", "observe", "layer4", "weight", "check"):
        assert word in args
    assert args.index("inter") < args.index("weight")  # its own settings come last and win
    assert _configured_names(servers, "site_writes") == {"web-01"}
    assert _configured_names(servers, "site") == {"web-01", "web-02"}
    with pytest.raises(KeyError):
        dynamic_server_args(servers, "site_writes", "web-02")


def test_dynamic_server_args_carry_backend_tls() -> None:
    topo = parse_topology(GOOD)  # TLS on by default: LB -> nginx re-encrypted
    layout = Layout(Path("/state/t"))
    args = dynamic_server_args(build_plan(topo, layout).host("lb-01").lb_servers, "site", "web-01")
    assert args.startswith("198.18.0.11:443 ")
    assert f"ssl verify required ca-file {layout.ca_cert} verifyhost web-01" in args


# ---- the CLI on bad input: exit 2, one line, nothing changed ----


@pytest.fixture
def stored_cluster(tmp_path: Path) -> Path:
    """A cluster as `up` leaves its state (its files only: nothing runs)."""
    layout = Layout.for_cluster("seed", tmp_path)
    layout.cluster_dir.mkdir(parents=True)
    layout.topology_file.write_text(SEED)
    layout.network_file.write_text("{}")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["deploy", "/nonexistent/site"], "error: /nonexistent/site: no such directory"),
        (["deploy", "--version", "bad version"], "--version 'bad version'"),
        (["scale", "add-server", "web-01"], "error: host 'web-01' already exists"),
        (["scale", "remove-server", "lb-01"], "lb-01 also has the role(s) lb"),
        (["scale", "remove-replica", "web-02"], "remove-replica removes DB-only hosts only"),
        (["scale", "remove-server", "nope"], "unknown host 'nope'"),
    ],
)
def test_cli_bad_input_exits_2_and_changes_nothing(stored_cluster: Path, args: list[str], expected: str) -> None:
    before = sorted(p.relative_to(stored_cluster) for p in stored_cluster.rglob("*"))
    where = ["--state-dir", str(stored_cluster), "-c", "seed"]
    result = CliRunner().invoke(cli, [*args, *where])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1, result.output
    assert expected in result.output
    assert sorted(p.relative_to(stored_cluster) for p in stored_cluster.rglob("*")) == before
    assert (Layout.for_cluster("seed", stored_cluster).topology_file.read_text()) == SEED


def test_cli_deploy_a_directory_without_factory(stored_cluster: Path, tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "app.py").write_text("x = 1\n")
    result = CliRunner().invoke(cli, ["deploy", str(tmp_path / "pkg"), "--state-dir", str(stored_cluster)])
    assert result.exit_code == 2
    assert "defines no create_app" in result.output


def test_cli_scale_needs_a_cluster_that_is_up(stored_cluster: Path) -> None:
    Layout.for_cluster("seed", stored_cluster).network_file.unlink()
    result = CliRunner().invoke(cli, ["scale", "add-server", "web-03", "--state-dir", str(stored_cluster)])
    assert result.exit_code == 2
    assert result.output.strip() == "error: cluster seed is not up: run `webinfra up` first"


def test_cli_scale_refuses_a_file_other_than_the_running_topology(stored_cluster: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text(SEED.replace("weight = 1\n", "weight = 3\n", 1))
    where = ["--state-dir", str(stored_cluster), "-f", str(other)]
    result = CliRunner().invoke(cli, ["scale", "add-server", "web-03", *where])
    assert result.exit_code == 2
    assert "differs from the topology the cluster runs" in result.output
    assert other.read_text() == SEED.replace("weight = 1\n", "weight = 3\n", 1)
