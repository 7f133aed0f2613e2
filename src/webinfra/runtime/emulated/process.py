"""PID files that name one process exactly: PID plus kernel start time, so a reused PID is never mistaken
for ours, and stopping a service signals only the process group we started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrackedProcess:
    pid: int
    start_time: int
    argv: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "start_time": self.start_time, "argv": list(self.argv)})


def start_time_of(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Field 2 (comm) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def track(pid: int, argv: tuple[str, ...] | list[str]) -> TrackedProcess:
    start = start_time_of(pid)
    if start is None:
        raise ProcessLookupError(pid)
    return TrackedProcess(pid, start, tuple(argv))


def write_pidfile(path: Path, proc: TrackedProcess) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(proc.to_json())
    tmp.replace(path)


def read_pidfile(path: Path) -> TrackedProcess | None:
    try:
        data = json.loads(path.read_text())
        return TrackedProcess(int(data["pid"]), int(data["start_time"]), tuple(data.get("argv", ())))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def record_process(path: Path, pid: int, argv: tuple[str, ...] | list[str]) -> None:
    """Write a PID file naming the running process `pid` exactly."""
    write_pidfile(path, track(pid, argv))


def alive(proc: TrackedProcess | None) -> bool:
    return proc is not None and start_time_of(proc.pid) == proc.start_time


def running_pid(path: Path) -> int | None:
    """PID of the live process a pid file names, else None."""
    proc = read_pidfile(path)
    return proc.pid if proc is not None and alive(proc) else None


def signal_group(proc: TrackedProcess, sig: int) -> bool:
    """Signal the process group `proc` leads (we start every daemon in its own session)."""
    if not alive(proc):
        return False
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(proc.pid, sig)
    return True


def stop_tracked(proc: TrackedProcess | None, timeout: float = 10.0, sig: int = signal.SIGTERM) -> bool:
    """Stop a tracked process group: `sig`, wait up to `timeout`, then SIGKILL. True if it was running."""
    if proc is None or not alive(proc):
        return False
    signal_group(proc, sig)
    if not wait_gone(proc, timeout):
        signal_group(proc, signal.SIGKILL)
        wait_gone(proc, 5.0)
    # Workers left in the group after the leader exited (rare): make sure none survive.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return True


def wait_gone(proc: TrackedProcess, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(proc):
            return True
        time.sleep(0.02)
    return not alive(proc)
