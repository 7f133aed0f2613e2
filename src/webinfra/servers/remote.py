"""`SshRunner`: one command on a server over SSH, for the steps pyinfra's operations do not cover (the MariaDB
bootstrap and replication setup of services/mariadb.py, which only call `run`, as on emulated machines).
The full `runtime.machine.Machine` over SSH (services, faults, probes) is a later step."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import cast

from webinfra.model.machines import SshAddress
from webinfra.runtime.machine import CommandError, Machine, RunResult


def ssh_options(key: str | None, known_hosts: str | None, port: int) -> list[str]:
    options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", str(port)]
    options += ["-i", key, "-o", "IdentitiesOnly=yes"] if key else []
    if known_hosts:
        options += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=accept-new"]
    return options


class SshRunner:
    def __init__(
        self, name: str, address: str, ssh: SshAddress, key: str | None, become: bool, known_hosts: str | None
    ) -> None:
        self.name, self.address = name, address
        self.ssh, self.key, self.become, self.known_hosts = ssh, key, become, known_hosts

    def local_argv(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
        remote = shlex.join([*(f"{k}={v}" for k, v in (env or {}).items()), *argv])
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
    ) -> RunResult:
        result = subprocess.run(
            self.local_argv(argv, env), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise CommandError(self.name, list(argv), result.returncode, result.stderr)
        return RunResult(tuple(argv), result.returncode, result.stdout, result.stderr)

    def as_machine(self) -> Machine:
        """For services/mariadb.py's SQL helpers, which call only `run`."""
        return cast(Machine, self)
