"""On servers (`[machines] kind = "ssh"`), what a command cannot do there is refused in one line with exit code
2, before anything is written or any server is reached (docs/SERVERS.md lists what works on servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from testkit import EXAMPLES
from webinfra.cli.main import cli


def refused_line(argv: list[str], tmp_path: Path) -> str:
    """`argv -f examples/servers.toml`: exit 2, one line (returned), nothing written."""
    env = {"WEBINFRA_STATE_DIR": str(tmp_path / "state"), "WEBINFRA_RUN_DIR": str(tmp_path / "run")}
    result = CliRunner().invoke(cli, [*argv, "-f", str(EXAMPLES / "servers.toml")], env=env)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert not (tmp_path / "state").exists() and not (tmp_path / "run").exists()
    return lines[0]


# `chaos` runs on the running servers; what it cannot do there is refused in one line before any server is reached.
CHAOS_REFUSED = [
    (["chaos", "app-crash"], "cluster 'srv' is not up under"),
    (["chaos", "nemesis", "--yes"], "cluster 'srv' is not up under"),
    (["chaos", "nemesis", "--keep"], "on servers chaos brings nothing up"),
    (["chaos", "full-restart"], "chaos full-restart does not run on servers"),
    (["chaos", "compare"], "compare brings up"),
    (["chaos", "lb-crash", "--keep"], "on servers chaos brings nothing up"),
    (["chaos", "all", "--scratch-name", "x"], "on servers chaos brings nothing up"),
]


@pytest.mark.parametrize(("argv", "what"), CHAOS_REFUSED, ids=[" ".join(a) for a, _ in CHAOS_REFUSED])
def test_chaos_on_servers_refuses_in_one_line(argv: list[str], what: str, tmp_path: Path) -> None:
    assert what in refused_line(argv, tmp_path)
