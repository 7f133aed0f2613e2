"""`python mariadb_ctl.py start|stop CTL.json`: start or stop one test MariaDB by its recorded PID.

Stands in for `webinfra start|stop <host> mariadb` in the agent's `mariadb_control`: start returns once
the server answers on its socket; stop sends SIGTERM to exactly the PID it recorded (checked against
/proc/<pid>/cmdline, so a reused PID is never signalled) and waits for it to go.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _alive(pid: int, datadir_arg: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return datadir_arg in cmdline and state != "Z"


def main() -> int:
    verb, ctl_path = sys.argv[1], Path(sys.argv[2])
    ctl = json.loads(ctl_path.read_text())
    pidfile = Path(ctl["pidfile"])
    datadir_arg = next(a for a in ctl["argv"] if a.startswith("--datadir="))
    pid = int(pidfile.read_text()) if pidfile.exists() else 0
    if verb == "stop":
        if pid and _alive(pid, datadir_arg):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while _alive(pid, datadir_arg):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
        pidfile.unlink(missing_ok=True)
        return 0
    if verb == "start":
        if pid and _alive(pid, datadir_arg):
            return 0
        log = open(Path(ctl["socket"]).with_name("mariadbd.out"), "ab")  # noqa: SIM115 (handed to the child)
        proc = subprocess.Popen(ctl["argv"], stdout=log, stderr=log, start_new_session=True)
        pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                print(f"mariadbd exited {proc.returncode}", file=sys.stderr)
                return 1
            probe = subprocess.run(
                ["mariadb", "--no-defaults", f"--socket={ctl['socket']}", "--user=root", "-e", "SELECT 1"],
                capture_output=True,
            )
            if probe.returncode == 0:
                return 0
            time.sleep(0.05)
        print("mariadbd did not answer within 30s", file=sys.stderr)
        return 1
    print(f"usage: {sys.argv[0]} start|stop CTL.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
