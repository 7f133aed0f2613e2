"""`webinfra lab`: Debian 12 machines (systemd-nspawn, systemd, sshd) on this machine, for the real-server
target (webinfra.testbed). Exit 2 for bad input with nothing changed, 1 for a failed operation."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from webinfra.plan.layout import STATE_ROOT_ENV
from webinfra.runtime import CommandError
from webinfra.testbed import LabError, LabUsageError
from webinfra.testbed import lab as labs
from webinfra.testbed.image import LAB_USER, remove_images
from webinfra.testbed.machine import ssh_argv

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")


def handle_lab_errors(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except LabError as exc:
            label = "error" if exc.exit_code == 2 else "failed"
            err_console.print(f"[bold red]{label}:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except (CommandError, OSError) as exc:
            err_console.print(f"[bold red]failed:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("interrupted (`webinfra lab down` removes what was created)")
            sys.exit(130)

    return wrapper


def common_options(fn: F) -> F:
    fn = click.option(
        "--image-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=labs.IMAGES_ENV,
        default=None,
        help=f"Where built images are cached (default <state>/_lab/images; env {labs.IMAGES_ENV}).",
    )(fn)
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=STATE_ROOT_ENV,
        default=None,
        help=f"State directory (default /var/lib/webinfra; env {STATE_ROOT_ENV}); labs live in <state>/_lab.",
    )(fn)


def printer() -> Callable[[str], None]:
    started = time.monotonic()
    return lambda line: console.print(
        f"  [green]✓[/] {time.monotonic() - started:5.1f}s  {escape(line)}", soft_wrap=True
    )


def existing_lab(paths: labs.LabPaths, name: str | None) -> labs.Lab:
    picked = paths.pick(name)
    lab = labs.Lab.load(paths, picked) if picked else None
    if lab is None:
        raise LabUsageError(
            f"no lab {'named ' + repr(name) + ' ' if name else ''}under {paths.root}: `webinfra lab up N` first"
        )
    return lab


@click.group("lab")
def lab_group() -> None:
    """Debian 12 machines in containers on this machine (systemd, sshd), to try real-server deploys on."""


@lab_group.command("up")
@click.argument("count", type=int)
@click.option("--name", default=labs.DEFAULT_LAB, show_default=True, help="Lab name (1-8 lowercase letters/digits).")
@click.option("--subnet", default=labs.DEFAULT_SUBNET, show_default=True, help="The lab bridge's subnet.")
@click.option("--mirror", default=None, help="Debian mirror URL (default: the one this machine's apt uses).")
@click.option("--include", default="", help="Extra Debian packages to bake into the image (comma-separated).")
@common_options
@handle_lab_errors
def lab_up(
    count: int,
    name: str,
    subnet: str,
    mirror: str | None,
    include: str,
    state_dir: Path | None,
    image_dir: Path | None,
) -> None:
    """Create COUNT machines node-01 … (idempotent: starts what is not running)."""
    spec = labs.LabSpec.parse(name, count, subnet, include)
    started = time.monotonic()
    lab = labs.up(spec, labs.LabPaths.under(state_dir, image_dir), mirror, printer())
    first = lab.machines[0][0]
    console.print(
        f"lab {lab.name} up in {time.monotonic() - started:.1f}s: {len(lab.machines)} machines on {lab.subnet}"
    )
    console.print(f"ssh: webinfra lab ssh {first}   or   ssh -F {lab.ssh_dir / 'config'} {first}", soft_wrap=True)


@lab_group.command("status")
@click.option("--name", default=None, help="Lab name (default: the only lab there is).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
@handle_lab_errors
def lab_status(name: str | None, as_json: bool, state_dir: Path | None, image_dir: Path | None) -> None:
    """Machines, addresses, booted state (systemctl is-system-running over ssh), ssh reachability."""
    labs.require_root()  # the lab's key is root's
    report = labs.status(existing_lab(labs.LabPaths.under(state_dir, image_dir), name))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    proxy = report["proxy"]
    console.print(
        f"lab [bold]{report['lab']}[/] {report['subnet']} gateway {report['gateway']} image {report['image']}; "
        f"apt-cacher-ng {proxy['address']} {'running' if proxy['running'] else '[red]stopped[/]'}",
        soft_wrap=True,
    )
    table = Table("machine", "address", "container", "systemd", "ssh")
    for row in report["machines"]:
        systemd = row["systemd"] + (f" (failed: {', '.join(row['failed_units'])})" if row["failed_units"] else "")
        table.add_row(row["name"], row["address"], row["container"], systemd, "yes" if row["ssh"] else "[red]no[/]")
    console.print(table)


@lab_group.command("down")
@click.option("--name", default=None, help="Lab name (default: the only lab there is).")
@click.option("--purge-image", is_flag=True, help="Also delete the cached Debian image(s).")
@click.option("--purge-cache", is_flag=True, help="Also delete the lab's apt-cacher-ng package cache.")
@common_options
@handle_lab_errors
def lab_down(
    name: str | None, purge_image: bool, purge_cache: bool, state_dir: Path | None, image_dir: Path | None
) -> None:
    """Power the machines off and remove them, their network and the package proxy."""
    labs.require_root()
    paths = labs.LabPaths.under(state_dir, image_dir)
    picked = paths.pick(name)
    lab = labs.Lab.load(paths, picked) if picked else None
    say = printer()
    if lab is None:
        console.print(f"no lab {'named ' + repr(name) + ' ' if name else ''}is up")
    else:
        labs.down(lab, say)
    if purge_cache:
        caches = paths.root / "apt-cache"
        for cache in [caches / picked] if picked else sorted(caches.glob("*")):
            shutil.rmtree(cache, ignore_errors=True)
            say(f"package cache {cache} deleted")
    if purge_image:
        still_up = paths.labs()
        if still_up:
            # the machines' overlays sit on the image: it must outlive every lab
            raise LabUsageError(f"not deleting the image: labs {', '.join(still_up)} still use it")
        for image in remove_images(paths.images):
            say(f"image {image} deleted")


@lab_group.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("machine")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--name", default=None, help="Lab name (default: the only lab there is).")
@click.option("--user", default=None, help=f"Log in as this user (default root; the lab user is {LAB_USER!r}).")
@common_options
@handle_lab_errors
def lab_ssh(
    machine: str,
    command: tuple[str, ...],
    name: str | None,
    user: str | None,
    state_dir: Path | None,
    image_dir: Path | None,
) -> None:
    """ssh to MACHINE (name or address) of the lab, with the lab's key; runs COMMAND if given."""
    labs.require_root()  # the lab's key is root's
    lab = existing_lab(labs.LabPaths.under(state_dir, image_dir), name)
    target = lab.machine(machine)
    argv = ssh_argv(lab.ssh_dir, target.name, command, user)
    os.execvp(argv[0], argv)
