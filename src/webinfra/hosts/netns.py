"""`NetnsHost`: an emulated host, i.e. a network namespace with its own hostd (init) process."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from webinfra.hosts import hostd
from webinfra.hosts.base import CommandError, Host, T
from webinfra.hosts.process import read_pidfile, running_pid, stop_tracked, track, write_pidfile
from webinfra.state import HostDirs

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsHost(Host):
    def __init__(self, name: str, address: str, netns: str, dirs: HostDirs) -> None:
        super().__init__(name, address)
        self.netns = netns
        self.run_dir = dirs.run
        self.log_dir = dirs.log
        self.socket_dir = dirs.sockets

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    @property
    def hostd_socket(self) -> Path:
        return self.socket_dir / "hostd.sock"

    @property
    def hostd_pidfile(self) -> Path:
        return self.run_dir / "hostd.pid"

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full = [*self.prefix, *argv]
        merged = {**os.environ, **(env or {})}
        try:
            proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, env=merged)
        except subprocess.TimeoutExpired:
            raise CommandError(self.name, argv, -1, f"timed out after {timeout:g}s") from None
        if check and proc.returncode != 0:
            raise CommandError(self.name, argv, proc.returncode, proc.stderr or proc.stdout)
        return proc

    # ---- hostd, the host's init ----
    def hostd_running(self) -> bool:
        return running_pid(self.hostd_pidfile) is not None

    def ensure_hostd(self, timeout: float = 10.0) -> None:
        if self.hostd_running():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.hostd_socket.unlink(missing_ok=True)
        argv = [*self.prefix, sys.executable, "-m", "webinfra.hosts.hostd", str(self.hostd_socket)]
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

    def stop_hostd(self) -> None:
        stop_tracked(read_pidfile(self.hostd_pidfile), timeout=5.0)
        self.hostd_pidfile.unlink(missing_ok=True)
        self.hostd_socket.unlink(missing_ok=True)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread that joined this host's network namespace (setns(2) affects only the
        calling thread), so sockets it opens are the host's: its loopback, its firewall, its routes."""
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

    def spawn(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        self.ensure_hostd()
        resp = hostd.request(
            self.hostd_socket,
            {
                "op": "spawn",
                "argv": list(argv),
                "log": str(log_path),
                "env": dict(env or {}),
                "cwd": str(cwd) if cwd else None,
            },
        )
        return int(resp["pid"])
