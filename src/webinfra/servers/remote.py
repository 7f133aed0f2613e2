"""`SshHost`: the `Host` seam over SSH, for the few steps pyinfra's operations do not cover (the MariaDB
bootstrap and replication setup of services/mariadb.py, run as they are on emulated hosts)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from webinfra.hosts.base import CommandError, Host
from webinfra.model.machines import SshAddress


def ssh_options(key: str | None, known_hosts: str | None, port: int) -> list[str]:
    options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(port)]
    options += ["-i", key, "-o", "IdentitiesOnly=yes"] if key else []
    if known_hosts:
        options += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=accept-new"]
    return options


class SshHost(Host):
    def __init__(
        self, name: str, address: str, ssh: SshAddress, key: str | None, become: bool, known_hosts: str | None
    ) -> None:
        super().__init__(name, address)
        self.ssh, self.key, self.become, self.known_hosts = ssh, key, become, known_hosts

    def argv(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        remote = shlex.join([*(f"{k}={v}" for k, v in (env or {}).items()), *command])
        if env:
            remote = f"env {remote}"
        if self.become:
            remote = f"sudo -n -- sh -c {shlex.quote(remote)}"
        return [
            "ssh",
            *ssh_options(self.key, self.known_hosts, self.ssh.port),
            f"{self.ssh.user}@{self.ssh.host}",
            remote,
        ]

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(argv, env), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandError(self.name, list(argv), result.returncode, result.stderr)
        return result

    def spawn(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        raise NotImplementedError("servers run their daemons under systemd: webinfra spawns nothing there")

    def write_file(self, path: Path, content: str | bytes, mode: int = 0o644) -> bool:
        raise NotImplementedError("servers get their files through pyinfra (servers/ops.py)")

    def read_file(self, path: Path) -> str | None:
        result = self.run(["cat", str(path)], check=False)
        return result.stdout if result.returncode == 0 else None
