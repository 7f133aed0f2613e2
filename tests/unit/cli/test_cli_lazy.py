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


def test_status_imports_neither_other_commands_nor_the_agent(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from webinfra.cli.main import cli\n"
        "try:\n"
        "    cli(['status', '--help'], prog_name='webinfra')\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = [m for m in ('webinfra.cli.bench', 'webinfra.cli.lab', 'webinfra.cli.release', 'webinfra.agent',\n"
        "                      'cryptography', 'matplotlib') if m in sys.modules]\n"
        "print('LOADED', loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED []" in out
