"""`SshRunner`: a server as a `Machine` (runtime/ssh.py's `SshMachine`), built from the fields `run.py` has at
hand. The deploy (`up`, `plan --diff`, `down`) is pyinfra's; the steps pyinfra's operations do not cover (the
MariaDB bootstrap and replication setup of daemons/mariadb.py) and every operation on a running cluster go
through this machine, as on emulated hosts."""

from __future__ import annotations

import os

from webinfra.model.machines import SshAddress
from webinfra.runtime.machine import Machine
from webinfra.runtime.ssh import SshMachine, SshTarget


class SshRunner(SshMachine):
    def __init__(
        self, name: str, address: str, ssh: SshAddress, key: str | None, become: bool, known_hosts: str | None
    ) -> None:
        known = os.path.expanduser(known_hosts) if known_hosts else None
        super().__init__(name, address, SshTarget(ssh.user, ssh.host, ssh.port, key, known, become))

    def as_machine(self) -> Machine:
        return self
