"""How `plan` and the other reporting commands print for a person (their JSON is built below cli/)."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from webinfra.cli.common import console, err_console, wide_console
from webinfra.control.cluster import Cluster
from webinfra.control.plan_diff import PlanDiff

HOST_MARK = {"create": "[green]+ create[/]", "remove": "[red]- remove[/]", "change": "[yellow]~ change[/]"}
SERVICE_STYLE = {"start": "green", "reload": "cyan", "restart": "yellow", "stop": "red"}


def print_error(line: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)


def print_full_plan(cluster: Cluster) -> None:
    """Every file `up` writes and the start order (`plan --full`; byte-identical to `plan` before 0.2)."""
    for hp in cluster.plan.hosts:
        console.rule(f"{hp.name} {hp.address} ({', '.join(hp.roles)})")
        for f in hp.files:
            console.print(f"[bold]# {f.path}[/]")
            click.echo(f.content)
    console.rule("start order")
    for hp, svc in cluster.plan.start_order():
        console.print(f"{hp.name:<10} {svc.name:<8} {' '.join(svc.argv)}", soft_wrap=True)


def _diff_text(diff: str) -> Text:
    text = Text()
    for line in diff.splitlines(keepends=True):
        style = ""
        if line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+") and not line.startswith("+++"):
            style = "green"
        elif line.startswith("-") and not line.startswith("---"):
            style = "red"
        text.append(line, style=style)
    return text


def print_plan_diff(changes: PlanDiff, show_new_files: bool = False) -> None:
    """Per host: hosts to create/remove, services to start/reload/restart/stop, and the files that change as
    unified diffs (a new host's files are listed, not printed: `plan --full` prints them)."""
    for host in changes.hosts:
        if not host.changed:
            continue
        console.rule(f"{host.name} {host.address}")
        if host.action in HOST_MARK:
            console.print(f"  host {HOST_MARK[host.action]}")
        for svc in host.services:
            style = SERVICE_STYLE[svc.action]
            console.print(f"  service [{style}]{svc.action:<7}[/] {svc.name:<14} [dim]{escape(svc.why)}[/]")
        for f in host.files:
            if f.action == "create" and not show_new_files:
                console.print(f"  file    [green]create [/] {f.path}", soft_wrap=True)
            else:
                console.print(f"  file    [yellow]{f.action:<7}[/] {f.path}", soft_wrap=True)
                console.print(_diff_text(f.diff), soft_wrap=True, end="")
    console.print(f"[bold]{changes.summary()}[/]", soft_wrap=True)


def print_rows(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*(escape(str(c)) if c is not None else "" for c in row))
    wide_console().print(table)
