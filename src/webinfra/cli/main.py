"""The `webinfra` command: thin click commands over `webinfra.control`, one module per group of commands.

Exit codes (docs/CLI.md): 0 success; 1 an operation failed (a daemon did not start, a host command failed);
2 bad input (topology file, unknown host/service, value out of range, not root, not confirmed) with nothing
changed; 3 `plan`: changes pending; 4 `status`: degraded; 5 `status`: the site is down.
"""

from __future__ import annotations

import click

from webinfra.cli import bench, common, inspect, lifecycle, monitoring, operate, release
from webinfra.cli.alerting import silence_group
from webinfra.cli.lab import lab_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="webinfra")
def cli() -> None:
    """webinfra: one topology file becomes a running web infrastructure.

    Shell completion (host and service names too): see docs/CLI.md, e.g. for bash
    `eval "$(_WEBINFRA_COMPLETE=bash_source webinfra)"`."""


for command in (
    lifecycle.up,
    lifecycle.down,
    lifecycle.plan,
    lifecycle.validate,
    operate.status,
    operate.weight,
    operate.stop,
    operate.start,
    operate.fail,
    operate.recover,
    operate.switchover,
    inspect.logs,
    inspect.events_,
    inspect.exec_,
    inspect.sql,
    inspect.ca,
    inspect.firewall_,
    monitoring.alerts,
    monitoring.dashboard,
    bench.bench,
    bench.chaos,
    release.deploy,
    release.rollback,
    release.scale,
    lab_group,
):
    cli.add_command(command)
cli.add_command(
    silence_group(common.cluster_option, common.handle_errors, common.open_cluster, common.console), name="silence"
)


def main() -> None:
    cli(prog_name="webinfra")


if __name__ == "__main__":
    main()
