"""`webinfra`'s commands are imported when they run (cli/main.py's LazyGroup): every name of COMMANDS loads
the command of that name, and running one command does not import the others' modules."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from webinfra.cli.main import COMMANDS, cli, load_command


def test_every_command_loads_under_its_own_name() -> None:
    for name in COMMANDS:
        assert load_command(name).name == name


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    listed = out.split("Commands:", 1)[1].split()
    assert all(name in listed for name in COMMANDS)


# What `status` (and its snapshot) has no use for: other commands, the agent, the PKI's cryptography, plots,
# httpx (status asks each machine for values: runtime/http.py), rich (`--json` prints with click), the site's
# package (its pydantic config model; only the DB bootstrap reads its schema).
NOT_FOR_STATUS = (
    "webinfra.cli.bench",
    "webinfra.cli.lab",
    "webinfra.cli.release",
    "webinfra.agent",
    "webinfra.site",
    "cryptography",
    "matplotlib",
    "httpx",
    "rich",
)


def test_status_imports_neither_other_commands_nor_the_agent(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from webinfra.cli.main import cli\n"
        "import webinfra.observe.status\n"  # what `status` imports once it runs
        "try:\n"
        "    cli(['status', '--help'], prog_name='webinfra')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"loaded = [m for m in {NOT_FOR_STATUS!r} if m in sys.modules]\n"
        "print('LOADED', loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in out
