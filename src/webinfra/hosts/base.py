"""The one seam between webinfra and a machine: run a command, start a daemon, put and get a file.

`NetnsHost` (emulated host in a network namespace) implements it today; an `SshHost` for real servers
can implement the same five methods later. Services and control code only ever talk to a `Host`.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from webinfra.errors import WebinfraError

T = TypeVar("T")


class Host(ABC):
    """A machine webinfra manages, by name and cluster address."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on the host to completion; raise `CommandError` on failure when `check`."""

    @abstractmethod
    def spawn(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start a long-running process on the host, in its own process group; return its PID."""

    def call(self, fn: Callable[[], T]) -> T:
        """Run a Python callable as if on the host (its network view). Locally: just call it."""
        return fn()

    def write_file(self, path: Path, content: str | bytes, mode: int = 0o644) -> bool:
        """Write `content` to `path` atomically with `mode`; return True when the file changed."""
        data = content.encode() if isinstance(content, str) else content
        if path.exists() and path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.touch(mode=0o600)
        tmp.chmod(mode & 0o600 if mode & 0o077 == 0 else 0o600)
        tmp.write_bytes(data)
        tmp.chmod(mode)
        tmp.replace(path)
        return True

    def read_file(self, path: Path) -> str | None:
        try:
            return path.read_text()
        except FileNotFoundError:
            return None

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.name!r}, {self.address!r})"


class CommandError(WebinfraError, RuntimeError):
    """A command on a host failed. The message names the host, the command and the end of its stderr."""

    def __init__(self, host: str, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.host, self.argv, self.returncode, self.stderr = host, list(argv), returncode, stderr
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        super().__init__(f"{host}: `{' '.join(argv)}` exited {returncode}: {tail}")
