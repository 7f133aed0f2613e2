"""`NetnsMachine`: an emulated host, i.e. a network namespace with its own hostd (init) process.

It answers the `Machine` operations in-process where it can: `probe`, `http` and `holds_address` run in a
thread that joined the namespace (setns(2) affects only the calling thread), so `status` of 40 hosts costs
no process per question. Services are tracked by PID files named after them, `run/<service>.svc.pid`
(`process.py`); nothing outside `runtime/emulated/` sees those PIDs except as display values.
"""

from __future__ import annotations

import ctypes
import os
import signal as signals
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from webinfra.plan.layout import HostDirs
from webinfra.plan.spec import Probe
from webinfra.runtime.emulated import faults, hostd
from webinfra.runtime.emulated.process import (
    alive,
    read_pidfile,
    running_pid,
    signal_group,
    stop_tracked,
    track,
    write_pidfile,
)
from webinfra.runtime.emulated.usage import cpu_seconds, rss_kib, tree_pids
from webinfra.runtime.http import HttpFailure, HttpRequest, HttpResponse, perform
from webinfra.runtime.machine import (
    SIGNALS,
    CommandError,
    MachineUnreachable,
    RunResult,
    ServiceRun,
    ServiceStatus,
    ServiceUsage,
    changed_write,
)
from webinfra.runtime.probe import check_network

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
PIDFILE_SUFFIX = ".svc.pid"


class NetnsMachine:
    def __init__(self, name: str, address: str, netns: str, dirs: HostDirs, veth: str = "") -> None:
        self.name = name
        self.address = address
        self.netns = netns
        self.veth = veth
        self.run_dir = dirs.run
        self.log_dir = dirs.log
        self.socket_dir = dirs.sockets

    def __repr__(self) -> str:
        return f"NetnsMachine({self.name!r}, {self.address!r})"

    def local_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        merged = {**os.environ, **(env or {})}
        try:
            proc = subprocess.run(
                self.local_argv(argv), input=input, capture_output=True, text=True, timeout=timeout, env=merged
            )
        except subprocess.TimeoutExpired:
            raise CommandError(self.name, argv, -1, f"timed out after {timeout:g}s") from None
        if check and proc.returncode != 0:
            raise CommandError(self.name, argv, proc.returncode, proc.stderr or proc.stdout)
        return RunResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    # ---- files: the host's tree is the machine's own filesystem ----
    def put_file(self, path: Path, content: str | bytes, mode: int = 0o644, owner: str | None = None) -> bool:
        # Every daemon runs as root here; `owner` matters on a real server only.
        return changed_write(path, content.encode() if isinstance(content, str) else content, mode)

    def read_file(self, path: Path) -> str | None:
        try:
            return path.read_text()
        except FileNotFoundError:
            return None

    # ---- hostd, the host's init ----
    @property
    def hostd_socket(self) -> Path:
        return self.socket_dir / "hostd.sock"

    @property
    def hostd_pidfile(self) -> Path:
        return self.run_dir / "hostd.pid"

    def hostd_running(self) -> bool:
        return running_pid(self.hostd_pidfile) is not None

    def ensure_hostd(self, timeout: float = 10.0) -> None:
        if self.hostd_running():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.hostd_socket.unlink(missing_ok=True)
        argv = self.local_argv([sys.executable, "-m", "webinfra.runtime.emulated.hostd", str(self.hostd_socket)])
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "hostd.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        write_pidfile(self.hostd_pidfile, track(proc.pid, argv))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                hostd.request(self.hostd_socket, {"op": "ping"}, timeout=1.0)
                return
            except (hostd.HostdError, OSError, ValueError):
                if proc.poll() is not None:
                    break
                time.sleep(0.02)
        raise CommandError(self.name, argv, proc.poll() or -1, "hostd did not start; see log/hostd.log")

    def is_up(self) -> bool:
        return Path(f"/run/netns/{self.netns}").exists()

    def connect(self) -> None:
        self.ensure_hostd()

    def disconnect(self) -> None:
        self.stop_hostd()

    def stop_hostd(self) -> None:
        stop_tracked(read_pidfile(self.hostd_pidfile), timeout=5.0)
        self.hostd_pidfile.unlink(missing_ok=True)
        self.hostd_socket.unlink(missing_ok=True)

    # ---- named services ----
    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}{PIDFILE_SUFFIX}"

    def start_service(self, run: ServiceRun) -> None:
        self.ensure_hostd()
        try:
            resp = hostd.request(
                self.hostd_socket,
                {
                    "op": "spawn",
                    "argv": list(run.argv),
                    "log": str(run.log),
                    "env": dict(run.env),
                    "cwd": str(run.cwd) if run.cwd else None,
                },
            )
        except hostd.HostdError as exc:
            raise MachineUnreachable(f"{self.name}: {exc}") from None
        try:
            write_pidfile(self._pidfile(run.name), track(int(resp["pid"]), run.argv))
        except ProcessLookupError:
            raise CommandError(self.name, run.argv, -1, f"{run.name} exited at once; see {run.log}") from None

    def stop_service(self, name: str, *, timeout: float = 10.0, kill: bool = False) -> bool:
        pidfile = self._pidfile(name)
        was_running = stop_tracked(
            read_pidfile(pidfile), timeout=timeout, sig=signals.SIGKILL if kill else signals.SIGTERM
        )
        pidfile.unlink(missing_ok=True)
        return was_running

    def signal_service(self, name: str, signal: str) -> bool:
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r} (one of {', '.join(SIGNALS)})")
        proc = read_pidfile(self._pidfile(name))
        if proc is None:
            return False
        sig = getattr(signals, f"SIG{signal}")
        if signal in ("STOP", "CONT"):
            return signal_group(proc, sig)  # freeze or thaw every process of the service
        if not alive(proc):
            return False
        try:
            os.kill(proc.pid, sig)  # a reload goes to the main process, which tells its workers
        except ProcessLookupError:
            return False
        return True

    def service_status(self, name: str) -> ServiceStatus:
        pid = running_pid(self._pidfile(name))
        return ServiceStatus(pid is not None, pid)

    def services(self) -> list[str]:
        return sorted(p.name.removesuffix(PIDFILE_SUFFIX) for p in self.run_dir.glob(f"*{PIDFILE_SUFFIX}"))

    def usage(self) -> dict[str, ServiceUsage]:
        # Each service with its children, and hostd alone (every daemon is hostd's child: its whole tree
        # would count them twice).
        trees = {name: tree_pids(pid) for name in self.services() if (pid := self.service_status(name).pid)}
        hostd_pid = running_pid(self.hostd_pidfile)
        if hostd_pid is not None:
            trees["hostd"] = [hostd_pid]
        return {
            name: ServiceUsage(sum(rss_kib(p) for p in pids), sum(cpu_seconds(p) for p in pids))
            for name, pids in trees.items()
        }

    # ---- questions asked from inside the namespace ----
    def inside(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread that joined this host's network namespace, so sockets it opens are the
        host's: its loopback, its firewall, its routes. Not a `Machine` operation (a closure cannot cross
        a process boundary): the ops below and the integration tests use it."""
        box: list[T] = []
        error: list[BaseException] = []

        def worker() -> None:
            try:
                fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
            except OSError as exc:
                error.append(CommandError(self.name, ["setns"], -1, f"namespace {self.netns} is gone: {exc}"))
                return
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    error.append(CommandError(self.name, ["setns"], -1, os.strerror(ctypes.get_errno())))
                    return
            finally:
                os.close(fd)
            try:
                box.append(fn())
            except BaseException as exc:
                error.append(exc)

        thread = threading.Thread(target=worker, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return box[0]

    def probe(self, probe: Probe, timeout: float = 1.0) -> bool:
        if probe.kind == "command":
            try:
                return self.run(probe.argv, timeout=max(timeout, 1.0), check=False).returncode == 0
            except CommandError:
                return False
        try:
            return self.inside(lambda: check_network(probe, timeout))
        except CommandError:  # the namespace is gone
            return False

    def http(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.inside(lambda: perform(request))
        except CommandError as exc:  # the namespace is gone: nothing answers
            raise HttpFailure(str(exc)) from None

    def exchange(self, socket_path: Path, data: bytes, timeout: float = 3.0) -> bytes:
        # A unix socket lives in the file system, which the namespace shares with us: no setns needed.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def holds_address(self, address: str) -> bool:
        def bind() -> bool:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                try:
                    sock.bind((address, 0))  # binding to an address the host does not have fails
                    return True
                except OSError:
                    return False

        try:
            return self.inside(bind)
        except CommandError:  # the namespace is gone: it holds nothing
            return False

    # ---- faults ----
    def partition(self) -> str:
        return faults.partition(self)

    def slow(self) -> str:
        return faults.slow(self)

    def crash(self) -> None:
        faults.crash(self)
        for name in self.services():  # all dead: nothing to stop later
            self._pidfile(name).unlink(missing_ok=True)

    def heal(self) -> None:
        faults.heal(self)
        for name in self.services():  # a frozen service resumes (harmless for a running one)
            self.signal_service(name, "CONT")
