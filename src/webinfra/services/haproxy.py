"""HAProxy: the runtime API client (admin-level unix socket) and the hooks that keep live weights and
states across reloads and restarts (`show servers state` -> server-state-file, read back at start)."""

from __future__ import annotations

import csv
import io
import socket
from dataclasses import dataclass
from pathlib import Path

from webinfra.hosts.base import Host
from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.services import supervisor

SITE_BACKENDS = ("site", "site_writes")


class RuntimeApiError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerStat:
    backend: str
    name: str
    status: str  # UP, DOWN, MAINT, DRAIN, "UP 1/2", "no check"...
    weight: int
    backup: bool
    current_sessions: int
    total_sessions: int
    check_status: str


class HaproxyRuntime:
    """Commands over HAProxy's stats socket. One connection per command (HAProxy closes it after each)."""

    def __init__(self, socket_path: Path, timeout: float = 3.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, cmd: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.socket_path))
            except OSError as exc:
                raise RuntimeApiError(f"HAProxy runtime API at {self.socket_path} is not reachable: {exc}") from None
            sock.sendall(cmd.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def servers(self) -> list[ServerStat]:
        text = self.command("show stat")
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        out = []
        for row in rows:
            if row.get("svname") in ("FRONTEND", "BACKEND", None):
                continue
            out.append(
                ServerStat(
                    backend=row["pxname"],
                    name=row["svname"],
                    status=row.get("status", ""),
                    weight=int(row.get("weight") or 0),
                    backup=row.get("bck") == "1",
                    current_sessions=int(row.get("scur") or 0),
                    total_sessions=int(row.get("stot") or 0),
                    check_status=row.get("check_status", ""),
                )
            )
        return out

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        reply = self.command(f"set weight {backend}/{server} {weight}").strip()
        if reply:
            raise RuntimeApiError(f"set weight {backend}/{server} {weight}: {reply}")

    def servers_state(self) -> str:
        return self.command("show servers state")


def runtime_for(plan: HostPlan) -> HaproxyRuntime:
    return HaproxyRuntime(plan.dirs.sockets / "haproxy.sock")


def save_server_state(host: Host, plan: HostPlan, svc: ServiceSpec) -> None:
    """Dump live weights and admin states where the next HAProxy process reads them back."""
    try:
        state = runtime_for(plan).servers_state()
    except RuntimeApiError:
        return
    if state.strip():
        host.write_file(plan.dirs.data / "haproxy-server-state", state, 0o600)


def ensure_state_file(host: Host, plan: HostPlan, svc: ServiceSpec) -> None:
    """An empty state file on first start, so HAProxy does not warn that it is missing."""
    path = plan.dirs.data / "haproxy-server-state"
    if not path.exists():
        host.write_file(path, "", 0o600)


supervisor.register_hooks(
    "haproxy",
    supervisor.Hooks(before_start=ensure_state_file, before_reload=save_server_state, before_stop=save_server_state),
)
