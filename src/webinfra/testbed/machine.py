"""One lab machine: its root file system (an overlay on the image), its identity (hostname, machine-id,
sshd host key, the lab's authorized key, the apt proxy), the systemd-nspawn process that boots it with
systemd as PID 1 inside the machine's network namespace, and ssh to it.

    keypair()            an ed25519 key pair in OpenSSH formats (cryptography, no ssh-keygen needed)
    nspawn_argv()        the container's command line (pure)
    keeper_argv()        the loop around it that brings the machine back after a reboot (pure)
    ssh_config()         the lab's ssh_config: one Host block per machine, keys and known_hosts pinned
    Machine              name, address, directory; ensure_rootfs / start / stop / remove / run / wait_booted
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webinfra.runtime.emulated.process import TrackedProcess, alive, read_pidfile, track, wait_gone, write_pidfile
from webinfra.testbed import LabError, cgroup
from webinfra.testbed.image import LAB_USER
from webinfra.testbed.proxy import apt_proxy_conf


def keypair(comment: str) -> tuple[bytes, str]:
    """(private key in OpenSSH PEM, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def nspawn_argv(rootfs: Path, netns: str) -> list[str]:
    """Boot `rootfs` with its own systemd as PID 1 inside an existing network namespace. --register=no and
    --keep-unit: this machine's PID 1 need not be systemd (no machined, no transient scope). The nspawn
    machine name is the namespace's, unique on this machine; the hostname inside comes from /etc/hostname."""
    return [
        "systemd-nspawn",
        f"--directory={rootfs}",
        "--boot",
        f"--network-namespace-path=/run/netns/{netns}",
        # Its own network namespace is the machine's alone: like a server, it may set its firewall (nftables)
        # and addresses (keepalived's VIP). nspawn keeps CAP_NET_ADMIN only with --private-network.
        "--capability=CAP_NET_ADMIN",
        "--register=no",
        "--keep-unit",
        f"--machine={netns}",
        "--link-journal=no",
        "--console=read-only",  # the boot messages go to console.log
        "--setenv=SYSTEMD_COLORS=0",
    ]


# systemd-nspawn exits with 133 when the machine's systemd asks for a reboot (systemd-nspawn@.service
# restarts it on that code): this loop does the same, so `systemctl reboot` inside a machine brings it back.
# SIGTERM to the loop is passed on to nspawn (an orderly poweroff) and ends the loop. First the loop enters
# the machine's own cgroups (testbed/cgroup.py says why). A SIGTERM that lands between the fork and `child=$!`
# (seen under load) is remembered in `stop` and passed on as soon as the child is known.
KEEPER = """for dir in $WEBINFRA_LAB_CGROUPS; do
  mkdir -p "$dir" && echo $$ > "$dir/cgroup.procs" || { echo "cannot enter cgroup $dir" >&2; exit 125; }
done
child= stop=
trap 'stop=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null' TERM
while :; do
  "$@" & child=$!
  [ -z "$stop" ] || kill -TERM "$child" 2>/dev/null
  wait "$child"; rc=$?
  if [ -n "$stop" ]; then wait "$child"; exit 0; fi
  [ "$rc" -eq 133 ] || exit "$rc"
done"""


def keeper_argv(nspawn: list[str]) -> list[str]:
    return ["sh", "-c", KEEPER, "webinfra-lab-machine", *nspawn]


def hosts_file(name: str, machines: Sequence[tuple[str, str]], gateway: str) -> str:
    lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{name}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines.append(f"{gateway}\tgateway")
    lines += [f"{address}\t{host}" for host, address in machines]
    return "\n".join(lines) + "\n"


def ssh_config(machines: Sequence[tuple[str, str]], ssh_dir: Path) -> str:
    """Use with `ssh -F <ssh_dir>/config <machine>`: root, the lab's key only, host keys checked strictly
    against the lab's known_hosts (written when the machines were provisioned)."""
    blocks = []
    for name, address in machines:
        blocks.append(
            "\n".join(
                [
                    f"Host {name} {address}",
                    f"    HostName {address}",
                    "    User root",
                    f"    IdentityFile {ssh_dir / 'id_ed25519'}",
                    "    IdentitiesOnly yes",
                    f"    UserKnownHostsFile {ssh_dir / 'known_hosts'}",
                    "    StrictHostKeyChecking yes",
                    "    BatchMode yes",
                    "    ConnectTimeout 5",
                    "    LogLevel ERROR",
                ]
            )
        )
    return "\n\n".join(blocks) + "\n"


def ssh_argv(ssh_dir: Path, machine: str, command: Sequence[str], user: str | None = None) -> list[str]:
    argv = ["ssh", "-F", str(ssh_dir / "config")]
    if user:
        argv += ["-l", user]
    return [*argv, machine, *command]


def _write(path: Path, text: str | bytes, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a copied file may be a hard link or symlink: replace, never write through
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)
    os.chown(path, *owner)
    os.chmod(path, mode)


def _ids(rootfs: Path, user: str) -> tuple[int, int]:
    for line in (rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise LabError(f"the image has no user {user!r}: rebuild it (webinfra lab down --purge-image)")


@dataclass(frozen=True)
class Machine:
    name: str
    address: str
    netns: str
    directory: Path

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs"

    @property
    def pidfile(self) -> Path:
        return self.directory / "nspawn.json"

    @property
    def console_log(self) -> Path:
        return self.directory / "console.log"

    def is_mounted(self) -> bool:
        # mountinfo escapes space, tab, newline and backslash in paths as octal
        target = str(self.rootfs.resolve())
        for char in "\\ \t\n":
            target = target.replace(char, f"\\{ord(char):03o}")
        return any(line.split()[4] == target for line in Path("/proc/self/mountinfo").read_text().splitlines())

    def ensure_rootfs(self, image: Path, authorized_key: str, lab: Sequence[tuple[str, str]], gateway: str) -> str:
        """The machine's root file system, ready to boot: "mounted" (its overlay again, changes kept),
        "kept" (a plain copy from before), or "new" (fresh from the image, with this machine's identity)."""
        if self.is_mounted():
            return "kept"
        if (self.directory / "upper").is_dir():
            if not self._mount_overlay(image):
                raise LabError(f"{self.name}: cannot mount its overlay on {image} again")
            return "mounted"
        if (self.rootfs / "etc").is_dir():
            return "kept"
        self.provision(image, authorized_key, lab, gateway)
        return "new"

    def _mount_overlay(self, image: Path) -> bool:
        for sub in ("upper", "work", "rootfs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={image},upperdir={self.directory / 'upper'},workdir={self.directory / 'work'}"
        proc = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.rootfs)], capture_output=True, text=True
        )
        return proc.returncode == 0

    def provision(self, image: Path, authorized_key: str, lab: Sequence[tuple[str, str]], gateway: str) -> None:
        """A fresh root file system from the image, with this machine's identity. An overlay on the image
        (instant, only the changes take space); where overlayfs is not available, a plain copy."""
        self.unmount()
        if self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        if not self._mount_overlay(image):
            shutil.rmtree(self.directory)
            self.directory.mkdir(parents=True)
            proc = subprocess.run(
                ["cp", "--reflink=auto", "-a", str(image), str(self.rootfs)], capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise LabError(f"{self.name}: copying the image failed: {proc.stderr.strip()}")
        root = self.rootfs
        _write(root / "etc/hostname", f"{self.name}\n")
        _write(root / "etc/hosts", hosts_file(self.name, lab, gateway))
        _write(root / "etc/machine-id", f"{secrets.token_hex(16)}\n", 0o444)
        host_private, host_public = keypair(f"root@{self.name}")
        _write(root / "etc/ssh/ssh_host_ed25519_key", host_private, 0o600)
        _write(root / "etc/ssh/ssh_host_ed25519_key.pub", host_public + "\n")
        _write(root / "root/.ssh/authorized_keys", authorized_key + "\n", 0o600)
        os.chmod(root / "root/.ssh", 0o700)
        uid_gid = _ids(root, LAB_USER)
        _write(root / f"home/{LAB_USER}/.ssh/authorized_keys", authorized_key + "\n", 0o600, uid_gid)
        os.chown(root / f"home/{LAB_USER}/.ssh", *uid_gid)
        os.chmod(root / f"home/{LAB_USER}/.ssh", 0o700)
        _write(root / "etc/apt/apt.conf.d/01webinfra-proxy", apt_proxy_conf(gateway))

    def known_hosts_line(self) -> str:
        key_type, key_body = (self.rootfs / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"{self.name},{self.address} {key_type} {key_body}"

    def process(self) -> TrackedProcess | None:
        proc = read_pidfile(self.pidfile)
        return proc if alive(proc) else None

    def start(self) -> bool:
        """Boot the machine in the background unless it runs. True if started now."""
        if self.process() is not None:
            return False
        argv = keeper_argv(nspawn_argv(self.rootfs, self.netns))
        env = {**os.environ, "WEBINFRA_LAB_CGROUPS": " ".join(map(str, cgroup.machine_cgroups(self.netns)))}
        with self.console_log.open("ab") as out:
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        write_pidfile(self.pidfile, track(child.pid, argv))
        return True

    def exited_early(self) -> str | None:
        """If the machine's process is gone, the last line it printed."""
        if self.process() is not None:
            return None
        lines = self.console_log.read_text(errors="replace").strip().splitlines() if self.console_log.exists() else []
        return lines[-1] if lines else "no output"

    def stop(self, timeout: float = 20.0) -> bool:
        """An orderly poweroff (the keeper passes SIGTERM to systemd-nspawn, which turns it into
        SIGRTMIN+3 for the machine's systemd), then SIGKILL to the keeper's process group (keeper and
        nspawn) if it does not end in time. The namespace's removal afterwards kills whatever of the
        machine might remain. True if it was running."""
        proc = read_pidfile(self.pidfile)
        if proc is None or not alive(proc):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        if not wait_gone(proc, timeout):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the keeper leads its own session: its group is ours
            wait_gone(proc, 5.0)
        return True

    def unmount(self) -> None:
        if self.rootfs.exists() and self.is_mounted():
            proc = subprocess.run(["umount", str(self.rootfs)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise LabError(f"{self.name}: cannot unmount {self.rootfs}: {proc.stderr.strip()}")

    def remove(self) -> None:
        """Delete the machine's tree and cgroups (after `stop`); the image below its overlay is untouched."""
        cgroup.remove(self.netns)
        self.unmount()
        shutil.rmtree(self.directory, ignore_errors=True)

    def run(self, ssh_dir: Path, command: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ssh_argv(ssh_dir, self.name, command),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def system_state(self, ssh_dir: Path) -> str | None:
        """`systemctl is-system-running` over ssh (running, degraded, starting …), None if ssh fails."""
        try:
            proc = self.run(ssh_dir, ["systemctl", "is-system-running"], timeout=15)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode == 255:  # ssh's own failure; systemctl exits non-zero for every state but running
            return None
        return proc.stdout.strip() or None

    def failed_units(self, ssh_dir: Path) -> list[str]:
        """The units systemd counts as failed (what makes it `degraded`); [] if ssh fails."""
        try:
            proc = self.run(ssh_dir, ["systemctl", "--failed", "--no-legend", "--plain"], timeout=15)
        except subprocess.TimeoutExpired:
            return []
        return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []

    def wait_booted(self, ssh_dir: Path, timeout: float) -> str:
        """Poll until systemd inside reports a finished boot (running or degraded) over ssh."""
        deadline = time.monotonic() + timeout
        state: str | None = None
        while time.monotonic() < deadline:
            early = self.exited_early()
            if early is not None:
                raise LabError(f"{self.name}: systemd-nspawn exited: {early} (see {self.console_log})")
            state = self.system_state(ssh_dir)
            if state in ("running", "degraded"):
                return state
            time.sleep(0.5)
        raise LabError(f"{self.name}: not booted within {timeout:.0f}s (last state: {state or 'ssh unreachable'})")
