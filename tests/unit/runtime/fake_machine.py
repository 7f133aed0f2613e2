"""`FakeMachine`: the `Machine` protocol in memory, for pure logic above the seam (no namespace, no process).

It records what it was asked (`calls`), keeps files and services in dicts, and answers probes from
`ready` (service names whose probe answers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from webinfra.plan.spec import Probe
from webinfra.runtime import HttpFailure, HttpRequest, HttpResponse, RunResult, ServiceRun, ServiceStatus, ServiceUsage


@dataclass
class FakeMachine:
    name: str = "fake-01"
    address: str = "198.18.189.2"
    files: dict[Path, tuple[bytes, int]] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)  # service -> pid
    ready: set[int] = field(default_factory=set)  # probe ports that answer
    calls: list[tuple[str, ...]] = field(default_factory=list)
    next_pid: int = 100

    def connect(self) -> None:
        self.calls.append(("connect",))

    def disconnect(self) -> None:
        self.calls.append(("disconnect",))

    def is_up(self) -> bool:
        return True

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        self.calls.append(("run", *argv))
        return RunResult(tuple(argv), 0, "", "")

    def local_argv(self, argv: Sequence[str]) -> list[str]:
        return ["fake", self.name, *argv]

    def put_file(self, path: Path, content: str | bytes, mode: int = 0o644, owner: str | None = None) -> bool:
        data = content.encode() if isinstance(content, str) else content
        if self.files.get(path) == (data, mode):
            return False
        self.files[path] = (data, mode)
        return True

    def read_file(self, path: Path) -> str | None:
        found = self.files.get(path)
        return found[0].decode() if found else None

    def start_service(self, run: ServiceRun) -> None:
        self.calls.append(("start", run.name))
        self.next_pid += 1
        self.running[run.name] = self.next_pid

    def stop_service(self, name: str, *, timeout: float = 10.0, kill: bool = False) -> bool:
        self.calls.append(("kill" if kill else "stop", name))
        return self.running.pop(name, None) is not None

    def signal_service(self, name: str, signal: str) -> bool:
        self.calls.append(("signal", name, signal))
        return name in self.running

    def service_status(self, name: str) -> ServiceStatus:
        pid = self.running.get(name)
        return ServiceStatus(pid is not None, pid)

    def services(self) -> list[str]:
        return sorted(self.running)

    def usage(self) -> dict[str, ServiceUsage]:
        return {name: ServiceUsage(1024, 0.5) for name in self.running}

    def probe(self, probe: Probe, timeout: float = 1.0) -> bool:
        return probe.port in self.ready

    def http(self, request: HttpRequest) -> HttpResponse:
        self.calls.append(("http", request.method, request.url))
        raise HttpFailure(f"{request.url}: nothing listens on a fake machine")

    def exchange(self, socket: Path, data: bytes, timeout: float = 3.0) -> bytes:
        self.calls.append(("exchange", str(socket), data.decode()))
        return b""

    def holds_address(self, address: str) -> bool:
        return address == self.address

    def partition(self) -> str:
        self.calls.append(("partition",))
        return "partitioned"

    def slow(self) -> str:
        self.calls.append(("slow",))
        return "slow"

    def crash(self) -> None:
        self.calls.append(("crash",))
        self.running.clear()

    def heal(self) -> None:
        self.calls.append(("heal",))
