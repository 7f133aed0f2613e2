"""The lab: real Debian 12 machines on this machine (systemd-nspawn containers, systemd as PID 1, sshd),
for trying and testing webinfra's real-server target.

    image.py    the root file system: the Debian mirror this machine uses, mmdebstrap, the image cache
    proxy.py    apt-cacher-ng on the bridge's gateway: the machines' only way to Debian packages
    machine.py  one machine: its copy of the image, its keys, the systemd-nspawn process, ssh to it
    lab.py      a lab of N machines: validation, record on disk, up / status / down
    cgroup.py   each nspawn keeper in its own cgroup, so systemd inside sees a clean tree
May import control/ and below, and runtime/emulated's network and process modules (it builds its bridge and
namespaces with them); only cli/ and the tests import it.
"""

from __future__ import annotations

from webinfra.errors import WebinfraError


class LabError(WebinfraError):
    """A lab operation failed. `exit_code` 2 means bad input (nothing was started or changed)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LabUsageError(LabError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)
