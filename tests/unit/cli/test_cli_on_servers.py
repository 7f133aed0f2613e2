"""Commands not yet supported on servers (`[machines] kind = "ssh"`) are refused in one line with exit code 2,
before anything is written or any server is reached (docs/SERVERS.md lists what works on servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from testkit import EXAMPLES
from webinfra.cli.main import cli

REFUSED = [
    (["scale", "add-server", "web-09"], "webinfra scale"),
    (["chaos", "app-crash"], "webinfra chaos"),
    (["chaos", "nemesis"], "webinfra chaos"),
]


@pytest.mark.parametrize(("argv", "what"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused_on_servers_in_one_line(argv: list[str], what: str, tmp_path: Path) -> None:
    env = {"WEBINFRA_STATE_DIR": str(tmp_path / "state"), "WEBINFRA_RUN_DIR": str(tmp_path / "run")}
    result = CliRunner().invoke(cli, [*argv, "-f", str(EXAMPLES / "servers.toml")], env=env)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and what in lines[0] and "not yet supported on servers" in lines[0], result.output
    assert not (tmp_path / "state").exists() and not (tmp_path / "run").exists()
