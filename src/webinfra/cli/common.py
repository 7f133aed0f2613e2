"""What every `webinfra` command shares: the consoles, error handling (one line, exit code), the options
naming a cluster, JSON output, confirmation and shell completion of host and service names.

Exit codes (docs/CLI.md, defined in webinfra/errors.py): 0 success; 1 an operation failed; 2 bad input with
nothing changed; 3 `plan`: changes pending; 4 `status`: degraded; 5 `status`: the site is down.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click
from click.shell_completion import CompletionItem

from webinfra.control.cluster import Cluster
from webinfra.errors import EXIT_INTERRUPTED, EXPECTED, UsageError, exit_code_of, label_of
from webinfra.state import STATE_ROOT_ENV

if TYPE_CHECKING:
    from rich.console import Console


# `console` and `err_console` are made on first use: rich costs ~0.02-0.09 s of start-up, which `status
# --json` (click.echo only) need not pay.
@functools.cache
def _consoles() -> dict[str, Console]:
    from rich.console import Console

    return {"console": Console(highlight=False), "err_console": Console(stderr=True, highlight=False)}


def __getattr__(name: str) -> Console:
    if name in ("console", "err_console"):
        return _consoles()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

CLUSTER_ENV = "WEBINFRA_CLUSTER"
LOCAL_TOPOLOGY = "webinfra.toml"  # in the current directory: picked up as if given with -f


def error_handler(interrupted: str = "interrupted") -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: one line per failure, never a traceback; the exit code is the error's (webinfra.errors);
    Ctrl-C prints `interrupted` and exits 130."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except EXPECTED as exc:
                fail(exc)
            except KeyboardInterrupt:
                _consoles()["err_console"].print(interrupted)
                sys.exit(EXIT_INTERRUPTED)

        return wrapper

    return decorate


handle_errors = error_handler()


def fail(exc: BaseException) -> NoReturn:
    """Print an expected error as `error: …` (bad input) or `failed: …` and exit with its code."""
    from rich.markup import escape

    _consoles()["err_console"].print(f"[bold red]{label_of(exc)}:[/] {escape(str(exc))}", soft_wrap=True)
    sys.exit(exit_code_of(exc))


# ---- which cluster ----


def default_topology_file(given: str | None) -> str | None:
    """-f as given, else ./webinfra.toml when there is one, else None (the built-in default)."""
    if given:
        return given
    return LOCAL_TOPOLOGY if Path(LOCAL_TOPOLOGY).is_file() else None


def cluster_file(topology_file: str | None, cluster_name: str | None) -> str | None:
    """The topology file that names the cluster: -f FILE, else ./webinfra.toml unless -c NAME was given."""
    if topology_file or cluster_name is not None:
        return topology_file
    return default_topology_file(None)


def open_cluster(topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> Cluster:
    """-f FILE, else -c NAME (or $WEBINFRA_CLUSTER), else ./webinfra.toml, else the only cluster there is."""
    path = cluster_file(topology_file, cluster_name)
    return Cluster.from_file(path, state_dir) if path else Cluster.existing(cluster_name, state_dir)


def open_operable(
    topology_file: str | None, cluster_name: str | None, state_dir: Path | None, *, unsupported: str | None = None
) -> Cluster:
    """`open_cluster` for a command that operates the machines: root where they are this machine's namespaces
    (servers need none); `unsupported` names a command not yet supported on servers (one line, exit 2)."""
    from webinfra.control.cluster import require_root
    from webinfra.control.machines import not_on_servers

    try:
        cluster = open_cluster(topology_file, cluster_name, state_dir)
    except PermissionError:  # an emulated cluster's state is root's
        require_root()
        raise
    if unsupported and cluster.servers:
        raise not_on_servers(unsupported)
    cluster.require_local()
    return cluster


def names_servers(topology_file: str | None, cluster_name: str | None, state_dir: Path | None) -> bool:
    """-f FILE, or the cluster -c NAME last brought up, is servers over SSH (for commands that otherwise bring up
    clusters of their own from a design, like chaos: on servers they run on the cluster itself)."""
    from webinfra.model import load_topology, parse_topology
    from webinfra.state import Layout

    if topology_file:
        return load_topology(topology_file).machines.ssh
    if cluster_name and (stored := Layout.for_cluster(cluster_name, state_dir).topology_file).is_file():
        return parse_topology(stored.read_text(), str(stored)).machines.ssh
    return False


def _quiet_cluster(ctx: click.Context) -> Cluster | None:
    """The cluster a command line being completed names, or None (completion never prints an error)."""
    params = ctx.params
    try:
        return open_cluster(params.get("topology_file"), params.get("cluster_name"), params.get("state_dir"))
    except Exception:
        return None


def complete_host(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    cluster = _quiet_cluster(ctx)
    names = [h.name for h in cluster.topology.hosts] if cluster else []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_service(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    cluster = _quiet_cluster(ctx)
    if cluster is None:
        return []
    host = ctx.params.get("host")
    plans = [cluster.plan.host(host)] if host in {h.name for h in cluster.plan.hosts} else cluster.plan.hosts
    names = sorted({svc.name for hp in plans for svc in hp.services})
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def state_dir_option(fn: F) -> F:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=STATE_ROOT_ENV,
        default=None,
        help=f"Where clusters keep their state (default /var/lib/webinfra; env {STATE_ROOT_ENV}).",
    )(fn)


def file_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "-f",
        "--file",
        "topology_file",
        type=click.Path(dir_okay=False),
        default=None,
        help=help_text,
    )


def cluster_option(fn: F) -> F:
    fn = click.option(
        "-c",
        "--cluster",
        "cluster_name",
        default=None,
        envvar=CLUSTER_ENV,
        help=f"Cluster name (env {CLUSTER_ENV}; default: ./{LOCAL_TOPOLOGY}'s, else the only cluster there is).",
    )(fn)
    fn = file_option(f"Topology file naming the cluster (default: ./{LOCAL_TOPOLOGY} if present).")(fn)
    return state_dir_option(fn)


def host_argument(required: bool = True) -> Callable[[F], F]:
    return click.argument("host", required=required, shell_complete=complete_host)


def service_argument(fn: F) -> F:
    return click.argument("service", required=False, shell_complete=complete_service)(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (see docs/CLI.md).")(fn)


# ---- output ----


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def progress_printer(as_json: bool = False) -> Callable[[str, str, str], None]:
    """Steps as they happen; to stderr when stdout carries JSON."""
    started = time.monotonic()
    out = _consoles()["err_console" if as_json else "console"]

    def report(host: str, what: str, action: str) -> None:
        mark = "[green]✓[/]" if action not in ("stopped", "killed", "removed", "purged") else "[yellow]■[/]"
        out.print(f"  {mark} {time.monotonic() - started:5.1f}s  [bold]{host:<10}[/] {what:<8} {action}")

    return report


def wide_console() -> Console:
    """Into a pipe or file, rich would wrap at 80 columns; a table that is read later wants full rows."""
    from rich.console import Console

    console = _consoles()["console"]
    return console if console.is_terminal else Console(highlight=False, width=160)


# ---- confirmation ----


def interactive() -> bool:
    return sys.stdin.isatty()


def confirm(question: str, yes: bool) -> None:
    """Go on when --yes was given or a person at a terminal says yes; refuse (exit 2) otherwise."""
    if yes:
        return
    if not interactive():
        what = question.removesuffix(" Go on?").rstrip(".?")
        raise UsageError(f"{what}: not a terminal, so not confirmed; pass --yes to go ahead")
    if not click.confirm(question, default=False, err=True):
        raise UsageError("not confirmed; nothing changed")


def yes_option(fn: F) -> F:
    return click.option(
        "-y", "--yes", is_flag=True, help="Do not ask before removing hosts or deleting data (for scripts)."
    )(fn)
