"""The `webinfra` command: thin click commands over `webinfra.control`, one module per group of commands.

Exit codes (docs/CLI.md): 0 success; 1 an operation failed (a daemon did not start, a host command failed);
2 bad input (topology file, unknown host/service, value out of range, not root, not confirmed) with nothing
changed; 3 `plan`: changes pending; 4 `status`: degraded; 5 `status`: the site is down.
"""

from __future__ import annotations

import importlib

import click

# Each command's module is imported when the command runs, not at start-up: one command should not pay for
# every other command's imports (rich tables, httpx, jinja2, matplotlib, the lab's image code). `status
# --json` imports cli/operate.py and what it needs only; `--help` still lists them all (it imports each).
COMMANDS: dict[str, str] = {
    "up": "lifecycle:up",
    "down": "lifecycle:down",
    "plan": "lifecycle:plan",
    "validate": "lifecycle:validate",
    "status": "operate:status",
    "weight": "operate:weight",
    "stop": "operate:stop",
    "start": "operate:start",
    "fail": "operate:fail",
    "recover": "operate:recover",
    "switchover": "operate:switchover",
    "logs": "inspect:logs",
    "events": "inspect:events_",
    "exec": "inspect:exec_",
    "sql": "inspect:sql",
    "ca": "inspect:ca",
    "firewall": "inspect:firewall_",
    "alerts": "monitoring:alerts",
    "dashboard": "monitoring:dashboard",
    "bench": "bench:bench",
    "chaos": "bench:chaos",
    "deploy": "release:deploy",
    "rollback": "release:rollback",
    "scale": "release:scale",
    "lab": "lab:lab_group",
    "silence": "alerting:silence_group",
}


def load_command(name: str) -> click.Command:
    module_name, attr = COMMANDS[name].split(":")
    found = getattr(importlib.import_module(f"webinfra.cli.{module_name}"), attr)
    if name == "silence":  # built from the shared options, which alerting.py may not import itself
        from webinfra.cli import common

        found = found(common.cluster_option, common.handle_errors, common.open_operable, common.console)
    assert isinstance(found, click.Command)
    return found


class LazyGroup(click.Group):
    """A group whose commands are imported when looked up (COMMANDS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="webinfra")
def cli() -> None:
    """webinfra: one topology file becomes a running web infrastructure.

    Shell completion (host and service names too): see docs/CLI.md, e.g. for bash
    `eval "$(_WEBINFRA_COMPLETE=bash_source webinfra)"`."""


def main() -> None:
    cli(prog_name="webinfra")


if __name__ == "__main__":
    main()
