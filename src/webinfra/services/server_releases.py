"""Code base releases on servers (`[machines] kind = "ssh"`), Capistrano style:

    /opt/webinfra/site/<version>/webinfra/site/...   a copy of the code base (as on emulated hosts)
    /opt/webinfra/site/<version>/.content            its content hash: a version names one code base
    /opt/webinfra/site/current -> <version>          the release the app runs

The app's unit always runs `uvicorn --app-dir /opt/webinfra/site/current` (the plan names `current` for every
app server), so a deploy changes no unit: it switches the symlink and restarts the app. Without `current`
(never deployed, or back on the installed code) the path does not exist and Python imports the release venv's
own `webinfra.site`. A release travels as a tar (base64 on stdin of one command on the server), so it needs
nothing but `Machine.run`. The management machine keeps a copy of each shipped code base under
`<cluster>/server-releases/` to deploy it again (`rollback`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import shlex
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from webinfra.model import Role, Topology
from webinfra.plan.spec import AppRelease
from webinfra.runtime.machine import CommandError, MachineUnreachable
from webinfra.services import releases
from webinfra.services.releases import CodeBaseError, Shipped
from webinfra.state import Layout

if TYPE_CHECKING:
    from webinfra.runtime.machine import Machine

SITE_ROOT = Path("/opt/webinfra/site")
CURRENT = SITE_ROOT / "current"


def plan_releases(topo: Topology, recorded: Mapping[str, AppRelease]) -> dict[str, AppRelease]:
    """Every app server's plan names `current`; the version (site.json, what /healthz reports) is the one
    recorded, else `[app] version`."""
    default = AppRelease(topo.app.version)
    return {h.name: AppRelease(recorded.get(h.name, default).version, CURRENT) for h in topo.with_role(Role.APP)}


def release_path(version: str) -> Path:
    return SITE_ROOT / version


def code_tar(code_base: Path) -> bytes:
    """The release as a gzipped tar: `webinfra/__init__.py` (the shim) and `webinfra/site/...`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        add("webinfra/__init__.py", releases.SHIM.encode())
        for path in releases.code_files(code_base):
            add(f"webinfra/site/{path.relative_to(code_base).as_posix()}", path.read_bytes())
    return buf.getvalue()


def ship_script(version: str, digest: str) -> str:
    """Shell: unpack the tar (base64 on stdin) as release `version` atomically (a half-unpacked release never
    has its name). Prints `shipped`, `same MTIME` (there with this code: its time becomes now) or `other`."""
    dest, v, d = shlex.quote(str(release_path(version))), shlex.quote(version), shlex.quote(digest)
    root = shlex.quote(str(SITE_ROOT))
    return (
        f"set -e; if [ -d {dest} ]; then "
        f'if [ "$(cat {dest}/.content 2>/dev/null)" = {d} ]; then echo "same $(stat -c %Y {dest})"; touch {dest}; '
        "else echo other; fi; exit 0; fi; "
        f"mkdir -p {root}; chmod 755 {root}; tmp=$(mktemp -d {root}/.{v}.XXXXXX); "
        "trap 'rm -rf \"$tmp\"' EXIT; "
        'base64 -d | tar -xzf - --no-same-owner -C "$tmp"; '
        f'printf %s {d} > "$tmp/.content"; chmod -R u=rwX,go=rX "$tmp"; touch "$tmp"; '
        f'mv -T "$tmp" {dest}; echo shipped'
    )


def activate_script(release: AppRelease) -> str:
    """Shell: point `current` at the release (an atomic rename of a new symlink), or remove it (the installed
    code base: `release.app_dir` None)."""
    current = shlex.quote(str(CURRENT))
    if release.app_dir is None:
        return f"rm -f {current}"
    dest = shlex.quote(str(release_path(release.version)))
    tmp = shlex.quote(str(SITE_ROOT / ".current.tmp"))
    return f"[ -d {dest} ] || exit 3; ln -sfn {dest} {tmp}; mv -T {tmp} {current}"


def prune_script(keep: set[str], max_kept: int = releases.KEEP_RELEASES) -> str:
    """Shell: remove old releases; those in `keep` stay, and the `max_kept` most recent others."""
    keep_words = " ".join(sorted(keep))
    return (
        f"cd {shlex.quote(str(SITE_ROOT))} 2>/dev/null || exit 0; n=0; "
        'for d in $(ls -1t); do { [ -d "$d" ] && [ ! -L "$d" ]; } || continue; '
        f'case " {keep_words} " in *" $d "*) continue;; esac; '
        f'n=$((n+1)); [ "$n" -le {max_kept} ] || rm -rf -- "$d"; done'
    )


def kept_script() -> str:
    root = shlex.quote(str(SITE_ROOT))
    return (
        f"cd {root} 2>/dev/null || exit 0; "
        'for d in *; do if [ -d "$d" ] && [ ! -L "$d" ]; then echo "$(stat -c %Y "$d") $d"; fi; done'
    )


def parse_kept(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        when, _, name = line.partition(" ")
        if name and when.isdigit():
            out[name] = float(when)
    return out


class ServerCodeReleases:
    """`CodeReleases` for servers (see the module's docstring)."""

    def __init__(self, topology: Topology, layout: Layout) -> None:
        self.topology, self.layout = topology, layout

    @property
    def local_root(self) -> Path:
        return self.layout.cluster_dir / "server-releases"

    def plan_releases(self, recorded: Mapping[str, AppRelease]) -> dict[str, AppRelease]:
        return plan_releases(self.topology, recorded)

    def ship(self, host: str, machine: Machine, code_base: Path, version: str) -> Shipped:
        releases.ship(code_base, version, self.local_root / version)  # refuses a version with other code
        digest = releases.content_hash(code_base)
        data = base64.b64encode(code_tar(code_base)).decode()
        answer = _sh(machine, ship_script(version, digest), data).strip()
        dest = release_path(version)
        if answer == "other":
            raise CodeBaseError(f"version {version!r} is already deployed with other code; choose another --version")
        if answer.startswith("same "):
            again = f"touch -d @{int(answer.split()[1])} {shlex.quote(str(dest))}"
            return Shipped(AppRelease(version, dest), False, lambda: _quiet_sh(machine, again))
        return Shipped(AppRelease(version, dest), True, lambda: _quiet_sh(machine, f"rm -rf {shlex.quote(str(dest))}"))

    def activate(self, host: str, machine: Machine, release: AppRelease) -> None:
        _sh(machine, activate_script(release))

    def prune(self, host: str, machine: Machine, keep: set[str]) -> None:
        _sh(machine, prune_script(keep))

    def kept(self, host: str, machine: Machine) -> dict[str, float]:
        return parse_kept(_sh(machine, kept_script()))

    def source(self, host: str, version: str) -> Path:
        return self.local_root / version / "webinfra" / "site"


def _sh(machine: Machine, script: str, data: str | None = None) -> str:
    return machine.run(["sh", "-c", script], input=data, timeout=120).stdout


def _quiet_sh(machine: Machine, script: str) -> None:
    """Best effort (an undo after a failure: the failure is what is reported)."""
    with contextlib.suppress(CommandError, MachineUnreachable):
        machine.run(["sh", "-c", script], check=False, timeout=60)
