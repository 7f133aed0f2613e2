"""webinfra's errors: one base, `WebinfraError`, carrying the exit code the CLI ends with; the mapping from an
exception to (exit code, label) in one place (`exit_code_of`, `EXPECTED`), used by the CLI and the dashboard.

Exit codes (docs/CLI.md): 0 success; 1 an operation failed; 2 bad input with nothing changed; 3 `plan`:
changes pending; 4 `status`: degraded; 5 `status`: the site is down; 130 interrupted.

A module raises a subclass named for what failed; it lives in that module when the error carries
structure of its own (`model.errors.TopologyError`, `hosts.base.CommandError`, ...), here when it is shared
by every layer (`ClusterError`, `UsageError`). This module imports nothing of webinfra: every layer, even
`model/`, may import it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CHANGES_PENDING = 3
EXIT_DEGRADED = 4
EXIT_DOWN = 5
EXIT_INTERRUPTED = 130


class WebinfraError(Exception):
    """An error whose message is for the user: the CLI prints it as one line and exits `exit_code`
    (1 an operation failed; 2 bad input, nothing changed)."""

    exit_code: int = EXIT_FAILED  # a class may set its own; an instance too (LabError)


class ClusterError(WebinfraError, RuntimeError):
    """An operation on a cluster that cannot proceed; the message is for the user."""


class UsageError(ClusterError):
    """The user named something that does not exist (host, service, value out of range): exit 2.
    (A ClusterError too: code that catches a failed operation has always caught this as well.)"""

    exit_code: int = EXIT_USAGE


# What the CLI and the dashboard report as one line: webinfra's own errors, and the OS refusing something
# (a file, a socket, a permission). Anything else is a bug and keeps its traceback.
EXPECTED: tuple[type[BaseException], ...] = (WebinfraError, OSError)


def exit_code_of(exc: BaseException) -> int:
    """The exit code for an error in EXPECTED: its own for a WebinfraError, 1 for anything else."""
    return exc.exit_code if isinstance(exc, WebinfraError) else EXIT_FAILED


def is_usage(exc: BaseException) -> bool:
    """Bad input, nothing changed: the CLI says `error:` and exits 2, the dashboard answers 400."""
    return exit_code_of(exc) == EXIT_USAGE


def label_of(exc: BaseException) -> str:
    """The word the CLI prints before the message: `error` for bad input, `failed` for a failed operation."""
    return "error" if is_usage(exc) else "failed"
