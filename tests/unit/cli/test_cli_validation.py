"""The CLI on bad input: exit 2 with one line naming the file, field and value, no traceback, and nothing
created (the topology is checked before the root check and before any I/O). Nothing here starts anything:
`Cluster.up` is replaced by a tripwire in every test that runs `up`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from topology_cases import BAD_TOPOLOGIES, GOOD

from testkit import EXAMPLES
from webinfra.cli.main import cli
from webinfra.control.cluster import Cluster
from webinfra.state import SOCKET_ROOT_ENV


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def no_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a test gets wrong, `up` never creates a namespace or starts a daemon from a unit test."""

    def tripwire(*args: object, **kwargs: object) -> None:
        raise AssertionError("Cluster.up must not run in a unit test")

    monkeypatch.setattr(Cluster, "up", tripwire)


def error_lines(result: Result) -> list[str]:
    """The lines of a failed `validate` (one per problem); no traceback."""
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exception
    return result.output.splitlines()


def error_line(result: Result) -> str:
    """The single line a failed command prints; asserts there is exactly one and no traceback."""
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize(("text", "expected"), BAD_TOPOLOGIES)
def test_validate_bad_file_exits_2_with_one_line(runner: CliRunner, tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = runner.invoke(cli, ["validate", "-f", str(path)])
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert all(line.startswith(f"error: {path}: ") for line in lines), lines
    assert expected in lines[0]


def test_validate_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    result = runner.invoke(cli, ["validate", "-f", str(path)])
    assert result.exit_code == 2
    assert error_line(result) == f"error: {path}: file not found"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-f", str(EXAMPLES / "seed.toml")], "ok: cluster seed, 3 hosts, site http://198.18.0.10/"),
        (["-f", str(EXAMPLES / "split.toml")], "ok: cluster split, 7 hosts, site https://198.18.2.10/"),
        ([], "ok: cluster webinfra, 5 hosts, site https://198.18.0.100/"),  # the hardened design + mon-01
    ],
    ids=["seed", "split", "default"],
)
def test_validate_good_files(runner: CliRunner, args: list[str], expected: str) -> None:
    result = runner.invoke(cli, ["validate", *args])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == expected


def test_validate_prints_the_message_verbatim(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "Seed"\n' + GOOD)
    result = runner.invoke(cli, ["validate", "-f", str(path)])
    assert "'^[a-z][a-z0-9]{0,7}$'" in error_line(result)


# ---- up ----


def assert_nothing_created(state_dir: Path) -> None:
    assert list(state_dir.iterdir()) == []
    assert not Path(os.environ[SOCKET_ROOT_ENV]).exists()


@pytest.mark.parametrize("euid", [0, 1000], ids=["root", "non-root"])
@pytest.mark.parametrize(("text", "expected"), BAD_TOPOLOGIES[:1] + BAD_TOPOLOGIES[-3:])
def test_up_bad_file_exits_2_before_the_root_check_and_creates_nothing(
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_up: None,
    euid: int,
    text: str,
    expected: str,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    result = runner.invoke(cli, ["up", "-f", str(path), "--state-dir", str(state_dir)])
    assert result.exit_code == 2, result.output
    line = error_line(result)
    # The topology error (it names the file), not the root one, even for a non-root user: the file is
    # checked first.
    assert line.startswith(f"error: {path}: ") and expected in line, line
    assert_nothing_created(state_dir)


def test_up_as_non_root_exits_2_mentioning_root(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_up: None
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    result = runner.invoke(cli, ["up", "-f", str(EXAMPLES / "seed.toml"), "--state-dir", str(state_dir)])
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert line.startswith("error: ") and "root" in line
    assert_nothing_created(state_dir)


def test_plan_bad_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace('name = "web-02"', 'name = "web-02"\nweight = 999'))
    result = runner.invoke(cli, ["plan", "-f", str(path), "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 2
    assert "hosts[2].weight = 999" in error_line(result)
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["chaos", "app-crash", "--scratch-subnet", "198.18.300.0/24"], "error: --scratch-subnet '198.18.300.0/24'"),
        (["chaos", "compare", "--scratch-name", "tsite1"], "error: --scratch-name/--scratch-subnet: not with"),
        (["chaos", "app-crash", "-c", "x", "--scratch-subnet", "198.18.12.0/24"], "error: --scratch-name/"),
    ],
)
def test_chaos_scratch_cluster_options(runner: CliRunner, no_up: None, args: list[str], expected: str) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert error_line(result).startswith(expected)
