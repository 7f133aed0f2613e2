"""The lab's Debian 12 root file system: built once with mmdebstrap from the Debian mirror this machine's
apt already uses, then cached by the hash of what went into it, so a second lab starts in seconds.

    read_system_sources()  the apt sources of this machine (one-line and deb822 formats)
    debian_mirror_lines()  the Debian entries among them, as the lines the image's sources.list gets
    ImageSpec              release + packages + mirror lines -> a cache name; the mmdebstrap command line
    ensure_image()         the cached image directory, built under a lock if it is missing
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from webinfra.testbed import LabError, LabUsageError

RELEASE = "bookworm"
# What every machine has: systemd as PID 1, sshd for the management side, python3 for pyinfra, sudo for
# `become`, ca-certificates for https mirrors.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "openssh-server",
    "dbus",
    "iproute2",
    "python3",
    "sudo",
    "ca-certificates",
)
LAB_USER = "lab"
# Bump when the customize script changes: the image name changes with it and the old image is not reused.
IMAGE_FORMAT = 1


@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_one_line_sources(text: str) -> list[AptSource]:
    """`deb [options] URI SUITE COMPONENT…` lines (sources.list, *.list)."""
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "[" in line and "]" in line:  # options such as [signed-by=…] say nothing about the mirror
            line = line[: line.index("[")] + line[line.index("]") + 1 :]
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("deb", "deb-src"):
            found.append(AptSource((parts[0],), parts[1], (parts[2],), tuple(parts[3:])))
    return found


def parse_deb822_sources(text: str) -> list[AptSource]:
    """Stanzas of `Types: / URIs: / Suites: / Components:` (*.sources); `Enabled: no` ones are skipped."""
    found = []
    for stanza in _stanzas(text):
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        types = tuple(stanza.get("types", "").split())
        suites = tuple(stanza.get("suites", "").split())
        components = tuple(stanza.get("components", "").split())
        for uri in stanza.get("uris", "").split():
            found.append(AptSource(types, uri, suites, components))
    return found


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif raw[0] in " \t" and key:  # continuation line (Signed-By can embed a key block)
            fields[key] += " " + raw.strip()
        elif ":" in raw:
            key, value = raw.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return


def read_system_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled apt source of this machine, in apt's reading order."""
    found = []
    main_list = apt_dir / "sources.list"
    if main_list.is_file():
        found += parse_one_line_sources(main_list.read_text(errors="replace"))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                found += parse_one_line_sources(path.read_text(errors="replace"))
            elif path.suffix == ".sources":
                found += parse_deb822_sources(path.read_text(errors="replace"))
    return found


def debian_mirror_lines(sources: list[AptSource], release: str = RELEASE) -> tuple[str, ...]:
    """The `deb URI SUITE main` lines for `release`, -updates and -security, from the Debian entries among
    `sources` (third-party repositories use other suite names and are left out)."""
    wanted = (release, f"{release}-updates", f"{release}-security")
    lines: list[str] = []
    for source in sources:
        if "deb" not in source.types or "main" not in source.components:
            continue
        for suite in source.suites:
            line = f"deb {source.uri.rstrip('/')} {suite} main"
            if suite in wanted and line not in lines:
                lines.append(line)
    if not any(line.split()[2] == release for line in lines):
        raise LabUsageError(
            f"no Debian {release} mirror among this machine's apt sources (/etc/apt/sources.list, "
            "/etc/apt/sources.list.d): give one with --mirror URL"
        )
    return tuple(sorted(lines, key=lambda line: wanted.index(line.split()[2])))


def mirror_lines_for(url: str, release: str = RELEASE) -> tuple[str, ...]:
    """The lines for a mirror given on the command line (security updates from the same host's
    debian-security, which is where deb.debian.org and most mirrors serve them)."""
    if not url.startswith(("http://", "https://")):
        raise LabUsageError(f"--mirror {url!r}: expected an http:// or https:// URL")
    base = url.rstrip("/")
    security = base.rsplit("/", 1)[0] + "/debian-security"
    return (
        f"deb {base} {release} main",
        f"deb {base} {release}-updates main",
        f"deb {security} {release}-security main",
    )


def customize_script(user: str = LAB_USER) -> str:
    """Run by mmdebstrap on the finished tree ($1). What is the same on every machine goes here; what
    differs (host keys, hostname, machine-id, authorized keys, the proxy address) is written per machine."""
    return f"""#!/bin/sh
set -eu
root="$1"
chroot "$root" useradd --create-home --shell /bin/bash --groups sudo {user}
# '*' (not '!'): no password can ever match, yet the account is not "locked", so sshd admits its key.
chroot "$root" usermod --password '*' {user}
chroot "$root" usermod --password '*' root
printf '%s ALL=(ALL) NOPASSWD:ALL\\n' {user} > "$root/etc/sudoers.d/{user}"
chmod 0440 "$root/etc/sudoers.d/{user}"
cat > "$root/etc/ssh/sshd_config.d/webinfra-lab.conf" <<'EOF'
# webinfra lab: keys only, root by key (the management side), one host key written per machine.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
EOF
# The periodic maintenance timers go: apt-daily would take the dpkg lock in the middle of a deployment's
# apt run, and any of them failing (no route out but the proxy) turns a machine `degraded` at random.
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
"""


@dataclass(frozen=True)
class ImageSpec:
    mirror_lines: tuple[str, ...]
    release: str = RELEASE
    packages: tuple[str, ...] = PACKAGES

    @property
    def name(self) -> str:
        digest = hashlib.sha256(
            "\n".join(
                [str(IMAGE_FORMAT), self.release, *self.packages, *self.mirror_lines, customize_script()]
            ).encode()
        ).hexdigest()
        return f"{self.release}-{digest[:12]}"

    def mmdebstrap_argv(self, target: Path, hook: Path) -> list[str]:
        return [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(self.packages)}",
            f"--customize-hook={hook}",
            self.release,
            str(target),
            *self.mirror_lines,
        ]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_image(images_dir: Path, spec: ImageSpec, say: Callable[[str], None]) -> tuple[Path, bool]:
    """The image directory for `spec`, and whether it was built just now. It is built in a scratch
    directory and renamed into place, so a cached image is always complete; a lock keeps two `lab up`s
    from building it twice."""
    image = images_dir / spec.name
    with _locked(images_dir / ".lock"):
        if image.is_dir():
            return image, False
        if shutil.which("mmdebstrap") is None:
            raise LabUsageError(
                "mmdebstrap is not installed (Debian package mmdebstrap; scripts/install-deps.sh --lab)"
            )
        say(f"building the Debian {spec.release} image {spec.name} with mmdebstrap (once; ~2 min)")
        scratch = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=images_dir))
        hook = scratch / "customize.sh"
        hook.write_text(customize_script())
        hook.chmod(0o755)
        log = images_dir / f"{spec.name}.log"
        try:
            with log.open("w") as out:
                # nice: the build competes with everything else on the machine; it can wait.
                proc = subprocess.run(
                    ["nice", "-n", "10", *spec.mmdebstrap_argv(scratch / "rootfs", hook)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=1800,
                )
            if proc.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise LabError(f"mmdebstrap failed (exit {proc.returncode}): {tail[0]} (full log: {log})")
            (scratch / "rootfs").rename(image)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return image, True


def remove_images(images_dir: Path) -> list[str]:
    """Delete every cached image (and its build log)."""
    removed: list[str] = []
    if not images_dir.is_dir():
        return removed
    with _locked(images_dir / ".lock"):
        for path in sorted(images_dir.iterdir()):
            if path.name.startswith(f"{RELEASE}-") or path.name.startswith(f".{RELEASE}-"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path.name)
    return removed
