"""Code base releases on app hosts, and the record of what each app host runs.

A *code base* is a directory shaped like the built-in `webinfra/site` package: an `__init__.py` and an
`app.py` defining the ASGI factory `create_app`. `webinfra deploy [PATH]` ships it to every app host as a
*release*:

    <host dir>/releases/<version>/webinfra/__init__.py   generated, empty package marker
    <host dir>/releases/<version>/webinfra/site/...      a copy of the code base

and the app runs `uvicorn --app-dir <release dir> webinfra.site.app:create_app`: the release directory comes
first on `sys.path`, so `webinfra.site` (and everything it imports from itself) is the release's copy. The
site imports nothing else from webinfra, so a release is self-contained.

`<cluster>/deploy.json` records the release each app host runs (`{"hosts": {host: {"version", "app_dir"}}}`).
`Cluster` reads it into the plan, so `up` keeps the deployed version. A host with no record runs the
installed package, labelled `[app] version`.

Where releases live and how one becomes the running code differs per kind of machine: a `CodeReleases`
(the fleet's `code`). `LocalCodeReleases` here: release directories under each emulated host's state
directory, named by the plan's command line; servers: services/server_releases.py.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from webinfra.errors import EXIT_USAGE, WebinfraError
from webinfra.plan.spec import AppRelease
from webinfra.state import HostDirs, Layout

if TYPE_CHECKING:
    from webinfra.runtime.machine import Machine

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,32}$")  # as `[app] version` in the topology
HASH_CHARS = 10
KEEP_RELEASES = 3  # per host, besides the one running
_IGNORED_DIRS = {"__pycache__"}
_IGNORED_SUFFIXES = (".pyc", ".pyo")
SHIM = '"""A webinfra release: its `webinfra.site` is the code base (made by `webinfra deploy`)."""\n'


class CodeBaseError(WebinfraError, ValueError):
    """A code base that cannot be deployed (missing, not a package, no factory); the message is for the user."""

    exit_code = EXIT_USAGE


def builtin_code_base() -> Path:
    """The installed `webinfra/site` package: what `deploy` ships without a PATH. Found, not imported: the
    site's config model (pydantic) is no cost for `status` and the other commands that load this module."""
    spec = importlib.util.find_spec("webinfra.site")
    assert spec is not None and spec.origin is not None, "webinfra.site is part of webinfra"
    return Path(spec.origin).parent


def code_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith(_IGNORED_SUFFIXES)]
    return out


def content_hash(root: Path) -> str:
    """A short hash of the code base's files (relative paths and bytes; byte-code caches left out): the
    default version, so deploying the same code twice is the same release."""
    digest = hashlib.sha256()
    for path in code_files(root):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:HASH_CHARS]


def check_code_base(path: Path) -> None:
    """Raise `CodeBaseError` unless `path` is a directory with `__init__.py` and an `app.py` that defines
    `create_app` at top level (parsed, not imported: nothing of it runs here)."""
    if not path.exists():
        raise CodeBaseError(f"{path}: no such directory")
    if not path.is_dir():
        raise CodeBaseError(f"{path}: not a directory (a code base is a package directory like webinfra/site)")
    for name in ("__init__.py", "app.py"):
        if not (path / name).is_file():
            raise CodeBaseError(f"{path}: no {name} (a code base is a package directory like webinfra/site)")
    try:
        tree = ast.parse((path / "app.py").read_text(encoding="utf-8"), str(path / "app.py"))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise CodeBaseError(f"{path / 'app.py'}: does not parse: {exc}") from None
    factories = [
        n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "create_app"
    ]
    if not factories:
        raise CodeBaseError(f"{path / 'app.py'}: defines no create_app (the ASGI factory uvicorn calls)")


def check_version(version: str) -> None:
    if not VERSION_PATTERN.match(version):
        raise CodeBaseError(f"--version {version!r}: 1-32 of A-Z a-z 0-9 . _ -")


def release_dir(dirs: HostDirs, version: str) -> Path:
    return dirs.root / "releases" / version


def ship(code_base: Path, version: str, dest: Path) -> bool:
    """Copy `code_base` into the release directory `dest` (atomically: a half-copied release never
    exists). True when copied, False when `dest` already holds the same code. A release of the same
    version with other content is refused: versions name code."""
    code_dir = dest / "webinfra" / "site"
    if dest.exists():
        if code_dir.is_dir() and content_hash(code_dir) == content_hash(code_base):
            return False
        raise CodeBaseError(f"version {dest.name!r} is already deployed with other code; choose another --version")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(code_base, staging / "webinfra" / "site", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (staging / "webinfra" / "__init__.py").write_text(SHIM)
        staging.chmod(0o755)
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


def copy_release(src: Path, dest: Path) -> bool:
    """Ship an existing release (e.g. to a new app host)."""
    return ship(src / "webinfra" / "site", dest.name, dest)


def prune(dirs: HostDirs, keep: set[str], max_kept: int = KEEP_RELEASES) -> list[str]:
    """Remove old releases of a host: those in `keep` stay, and the `max_kept` most recent others."""
    root = dirs.root / "releases"
    if not root.is_dir():
        return []
    found = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for path in [p for p in found if p.name not in keep][max_kept:]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed


# ---- the record: which release each app host runs ----


def deployed(layout: Layout) -> dict[str, AppRelease]:
    """host -> the release it runs, as recorded (empty before the first deploy, or if the file is unreadable)."""
    try:
        data = json.loads(layout.deploy_file.read_text())
        hosts = data["hosts"]
        return {
            name: AppRelease(str(r["version"]), Path(r["app_dir"]) if r.get("app_dir") else None)
            for name, r in hosts.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save(layout: Layout, releases: dict[str, AppRelease]) -> None:
    data = {
        "hosts": {
            name: {"version": r.version, "app_dir": str(r.app_dir) if r.app_dir else None}
            for name, r in sorted(releases.items())
        }
    }
    path = layout.deploy_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def record(layout: Layout, host: str, release: AppRelease) -> None:
    releases = deployed(layout)
    releases[host] = release
    _save(layout, releases)


def forget(layout: Layout, host: str) -> None:
    releases = deployed(layout)
    if releases.pop(host, None) is not None:
        _save(layout, releases)


# ---- where releases live: one strategy per kind of machine ----


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class Shipped:
    """A release put on a host: `release` as the record names it, `copied` (False: it was there already),
    `undo` takes it away again (or gives a reused one its time back) after a failed deploy."""

    release: AppRelease
    copied: bool
    undo: Callable[[], None] = _nothing


class CodeReleases(Protocol):
    """How code base releases are kept on one kind of machine and made the one an app runs."""

    def plan_releases(self, recorded: Mapping[str, AppRelease]) -> dict[str, AppRelease]:
        """What the plan names for each app host, given the record (deploy.json)."""
        ...

    def ship(self, host: str, machine: Machine, code_base: Path, version: str) -> Shipped:
        """Put `code_base` on `host` as release `version` (refused: the version exists with other code)."""
        ...

    def activate(self, host: str, machine: Machine, release: AppRelease) -> None:
        """Make `release` the code the app starts on next (called while the app is stopped)."""
        ...

    def prune(self, host: str, machine: Machine, keep: set[str]) -> None: ...

    def kept(self, host: str, machine: Machine) -> dict[str, float]:
        """version -> when it was last deployed, for every release kept on `host`."""
        ...

    def source(self, host: str, version: str) -> Path:
        """A local copy of kept release `version`'s code base (to deploy it again: `rollback`)."""
        ...


class LocalCodeReleases:
    """Emulated hosts: a release is a directory under the host's state directory; the app's command line
    names it (`--app-dir`), so the plan is all that activates it."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def plan_releases(self, recorded: Mapping[str, AppRelease]) -> dict[str, AppRelease]:
        return dict(recorded)

    def ship(self, host: str, machine: Machine, code_base: Path, version: str) -> Shipped:
        return ship_timed(code_base, version, release_dir(self.layout.host(host), version))

    def activate(self, host: str, machine: Machine, release: AppRelease) -> None:
        pass

    def prune(self, host: str, machine: Machine, keep: set[str]) -> None:
        prune(self.layout.host(host), keep)

    def kept(self, host: str, machine: Machine) -> dict[str, float]:
        return kept_in(release_dir(self.layout.host(host), "x").parent)

    def source(self, host: str, version: str) -> Path:
        return release_dir(self.layout.host(host), version) / "webinfra" / "site"


def ship_timed(code_base: Path, version: str, dest: Path) -> Shipped:
    """`ship`, and the release's time set to now: a release's time is when it was last deployed (`rollback`
    goes to the one before). The undo removes a release it copied, or gives a reused one its time back, so a
    failed deploy's release is never a rollback target."""
    before = dest.stat().st_mtime if dest.is_dir() else None
    copied = ship(code_base, version, dest)
    os.utime(dest)

    def undo() -> None:
        if before is None:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            os.utime(dest, (before, before))

    return Shipped(AppRelease(version, dest), copied, undo)


def kept_in(root: Path) -> dict[str, float]:
    return {
        p.name: p.stat().st_mtime
        for p in (root.iterdir() if root.is_dir() else ())
        if p.is_dir() and not p.name.startswith(".")
    }
