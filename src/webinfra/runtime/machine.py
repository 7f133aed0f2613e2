"""`Machine`: what webinfra may ask of a host, as operations whose arguments and results are plain values.

Every operation could cross a process boundary (the emulated runtime answers most in-process; an SSH
machine would run `python3 -m webinfra.runtime.helper` or a plain argv on the far side):

    connect()                                make the machine answer (start its init, open a session)
    disconnect()                             the opposite (after its services are stopped)
    is_up()                                  -> whether it exists, without starting anything
    run(argv, input=, timeout=, env=)        -> RunResult(returncode, stdout, stderr)
    put_file(path, content, mode, owner)     -> changed?          read_file(path) -> text | None
    start_service(ServiceRun) / stop_service(name) / signal_service(name, "HUP") / service_status(name)
    services()                               -> names of the services the machine tracks
    usage()                                  -> {service: ServiceUsage(rss_kib, cpu_seconds)}
    probe(Probe)                             -> bool (TCP, HTTP(S) against a CA, a command; from the machine)
    http(HttpRequest)                        -> HttpResponse (an HTTP call made from the machine's network)
    exchange(socket, bytes)                  -> bytes (a request to a unix socket on the machine)
    holds_address(address)                   -> bool
    partition() / slow() / crash() / heal()  the network faults and a whole-host crash
    local_argv(argv)                         -> the argv that runs `argv` there from here (exec, pipes)

Callers name services, never processes: a PID in `ServiceStatus` is for display only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from webinfra.errors import WebinfraError
from webinfra.plan.spec import Probe
from webinfra.runtime.http import HttpRequest, HttpResponse


@dataclass(frozen=True)
class RunResult:
    """The outcome of one command; the field names match `subprocess.CompletedProcess`."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class ServiceRun:
    """How to start one named service: what `start_service` needs, nothing machine-specific."""

    name: str
    argv: tuple[str, ...]
    log: Path
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path | None = None


@dataclass(frozen=True)
class ServiceStatus:
    running: bool
    pid: int | None = None  # the machine's id of the main process, shown by `status`; never signalled


@dataclass(frozen=True)
class ServiceUsage:
    rss_kib: int  # resident memory of the service's processes (main process and its children)
    cpu_seconds: float  # user + system CPU time they have used so far


SIGNALS = ("HUP", "USR1", "USR2", "TERM", "KILL", "STOP", "CONT")


@runtime_checkable
class Machine(Protocol):
    """A host webinfra manages, by name and cluster address."""

    name: str
    address: str

    def connect(self) -> None:
        """Make the machine able to answer (emulated: start its hostd; SSH: open the connection). Idempotent."""
        ...

    def disconnect(self) -> None:
        """The opposite of `connect` (emulated: stop its hostd, once its services are stopped)."""
        ...

    def is_up(self) -> bool:
        """Whether the machine exists (emulated: its namespace; SSH: it answers), without starting anything."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run a command to completion; raise `CommandError` on a non-zero exit when `check`."""
        ...

    def local_argv(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` on this machine from the management side (for exec and pipes)."""
        ...

    def put_file(self, path: Path, content: str | bytes, mode: int = 0o644, owner: str | None = None) -> bool:
        """Write atomically with `mode` (and `owner`, a user name); True when the bytes or mode changed."""
        ...

    def read_file(self, path: Path) -> str | None:
        """The file's text, or None when it does not exist."""
        ...

    def start_service(self, run: ServiceRun) -> None:
        """Start the named service; raise `CommandError` when it exits at once."""
        ...

    def stop_service(self, name: str, *, timeout: float = 10.0, kill: bool = False) -> bool:
        """TERM (KILL when `kill`), KILL after `timeout`; True if it was running."""
        ...

    def signal_service(self, name: str, signal: str) -> bool:
        """Send one of `SIGNALS` (without "SIG") to the service; False when it is not running."""
        ...

    def service_status(self, name: str) -> ServiceStatus: ...

    def services(self) -> list[str]:
        """The names of the services this machine has started and still tracks (running or not)."""
        ...

    def usage(self) -> dict[str, ServiceUsage]:
        """Memory and CPU per running service (and the machine's own agent, e.g. "hostd"), for benchmarks."""
        ...

    def probe(self, probe: Probe, timeout: float = 1.0) -> bool:
        """One attempt of a readiness probe, made from the machine itself."""
        ...

    def http(self, request: HttpRequest) -> HttpResponse:
        """An HTTP(S) request made from the machine's network; raise `HttpFailure` when nothing answered."""
        ...

    def exchange(self, socket: Path, data: bytes, timeout: float = 3.0) -> bytes:
        """Send `data` to a unix stream socket on the machine, return all it answers until it closes."""
        ...

    def holds_address(self, address: str) -> bool:
        """Whether `address` is configured on the machine."""
        ...

    def partition(self) -> str:
        """Drop all of the machine's cluster traffic (processes keep running); a one-line description."""
        ...

    def slow(self) -> str:
        """Make the machine slow (delay, or a CPU quota); a one-line description."""
        ...

    def crash(self) -> None:
        """The whole machine dies at once: every process killed, its link dark, no service running."""
        ...

    def heal(self) -> None:
        """Undo partition, slow and crash's dark link; resume frozen (STOPped) services."""
        ...


class MachineUnreachable(WebinfraError, RuntimeError):
    """The machine did not take the request (emulated: its hostd is not there); the message says why."""


class FaultError(WebinfraError, RuntimeError):
    """A fault cannot be injected on this machine; the message is for the user."""


# `slow`, on every kind of machine: this much delay on what the host sends (netem), or, on a kernel without
# netem, its processes held to this share of one CPU.
SLOW_DELAY_MS = 200
SLOW_CPU_PERCENT = 10


class CommandError(WebinfraError, RuntimeError):
    """A command on a host failed. The message names the host, the command and the end of its stderr."""

    def __init__(self, host: str, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.host, self.argv, self.returncode, self.stderr = host, list(argv), returncode, stderr
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        super().__init__(f"{host}: `{' '.join(argv)}` exited {returncode}: {tail}")


def changed_write(path: Path, data: bytes, mode: int) -> bool:
    """Write `data` to a local `path` atomically with `mode`; True when the file changed. What a machine
    whose files are local (the emulated one, the helper on a remote one) does for `put_file`."""
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
