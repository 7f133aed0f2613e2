"""HAProxy: the runtime API client (admin-level unix socket) and the hooks that keep live weights and
states across reloads and restarts (`show servers state` -> server-state-file, read back at start)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.runtime.machine import Machine
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

    def __init__(self, machine: Machine, socket_path: Path, timeout: float = 3.0) -> None:
        self.machine = machine
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, cmd: str) -> str:
        try:
            reply = self.machine.exchange(self.socket_path, cmd.encode() + b"\n", timeout=self.timeout)
        except OSError as exc:
            raise RuntimeApiError(f"HAProxy runtime API at {self.socket_path} is not reachable: {exc}") from None
        return reply.decode(errors="replace")

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

    def set_state(self, backend: str, server: str, state: str) -> None:
        """Admin state: "ready", "drain" (no new traffic) or "maint" (none at all)."""
        reply = self.command(f"set server {backend}/{server} state {state}").strip()
        if reply:
            raise RuntimeApiError(f"set server {backend}/{server} state {state}: {reply}")

    def add_server(self, backend: str, server: str, args: str) -> None:
        """A dynamic server (HAProxy >= 2.4), added in maintenance with its checks off: `enable_server`
        after. Dynamic servers do not inherit `default-server`: `args` must carry every setting."""
        reply = self.command(f"add server {backend}/{server} {args}").strip()
        if "New server registered" not in reply:
            raise RuntimeApiError(f"add server {backend}/{server}: {reply}")

    def enable_server(self, backend: str, server: str) -> None:
        for cmd in (f"enable health {backend}/{server}", f"enable server {backend}/{server}"):
            reply = self.command(cmd).strip()
            if reply:
                raise RuntimeApiError(f"{cmd}: {reply}")

    def del_server(self, backend: str, server: str) -> None:
        """Remove a server (in maintenance, with no session left on it)."""
        reply = self.command(f"del server {backend}/{server}").strip()
        if "Server deleted" not in reply:
            raise RuntimeApiError(f"del server {backend}/{server}: {reply}")


def runtime_for(machine: Machine, plan: HostPlan) -> HaproxyRuntime:
    """The runtime API of the HAProxy on `machine`, reached through the machine's `exchange` op."""
    return HaproxyRuntime(machine, plan.dirs.sockets / "haproxy.sock")


def _configured_servers(cfg: str) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(backend, server) -> (address, port, "1" if TLS else "0"), from a rendered haproxy.cfg."""
    out: dict[tuple[str, str], tuple[str, str, str]] = {}
    backend = ""
    for line in cfg.splitlines():
        words = line.split()
        if line[:1].strip() and words[0] in ("backend", "listen", "frontend", "defaults", "global"):
            backend = words[1] if len(words) > 1 else ""
        elif words[:1] == ["server"] and len(words) > 2:
            address, _, port = words[2].rpartition(":")
            out[(backend, words[1])] = (address, port, "1" if "ssl" in words[3:] else "0")
    return out


def matching_state(state: str, cfg: str) -> str:
    """The state lines of servers whose address, port and TLS are still those of `cfg`. HAProxy would
    otherwise restore the old port and TLS setting over the new config (e.g. when [tls] changes)."""
    servers = _configured_servers(cfg)
    lines = state.splitlines()
    kept = [line for line in lines if line.startswith("#") or len(line.split()) < 21]
    for line in lines:
        f = line.split()
        if not line.startswith("#") and len(f) >= 21 and servers.get((f[1], f[3])) == (f[4], f[18], f[20]):
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def _config_text(plan: HostPlan, svc: ServiceSpec) -> str | None:
    return next((f.content for f in plan.files_of(svc) if f.path.name == "haproxy.cfg"), None)


def save_server_state(host: Machine, plan: HostPlan, svc: ServiceSpec) -> None:
    """Dump live weights and admin states where the next HAProxy process reads them back."""
    try:
        state = runtime_for(host, plan).servers_state()
    except RuntimeApiError:
        return
    cfg = _config_text(plan, svc)
    if cfg is not None:
        state = matching_state(state, cfg)
    if state.strip():
        host.put_file(plan.dirs.data / "haproxy-server-state", state, 0o600)


def ensure_state_file(host: Machine, plan: HostPlan, svc: ServiceSpec) -> None:
    """An empty state file on first start, so HAProxy does not warn that it is missing; a saved one keeps
    only the servers the config still has as they were."""
    path = plan.dirs.data / "haproxy-server-state"
    saved = host.read_file(path)
    if saved is None:
        host.put_file(path, "", 0o600)
        return
    cfg = _config_text(plan, svc)
    if cfg is not None:
        host.put_file(path, matching_state(saved, cfg), 0o600)


supervisor.register_hooks(
    "haproxy",
    supervisor.Hooks(before_start=ensure_state_file, before_reload=save_server_state, before_stop=save_server_state),
)
