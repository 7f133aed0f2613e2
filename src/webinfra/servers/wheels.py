"""The wheelhouse: the app and its dependencies, built on the management machine with `pip wheel`, uploaded and
installed on the servers without PyPI. Its digest (`release_ident`) covers the source tree, so changed code is
a new release (a new venv under /opt/webinfra/releases) and restarts what runs from it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import webinfra
from webinfra.errors import UsageError
from webinfra.servers import ServersError
from webinfra.servers.ops import Release
from webinfra.state import state_root

Say = Callable[[str, str, str], None]
# What runs on a server from the release venv (the app, the HA agent, the event watcher): these and their
# dependencies, not webinfra's whole list (no pyinfra, click or rich on a server).
SERVER_REQUIREMENTS = (
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "asyncmy",
    "httpx",
    "cryptography",
    "prometheus_client",
    "jinja2",
    "pydantic",
    "pyyaml",
)


def source_root() -> Path:
    root = Path(webinfra.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise UsageError(
            f"webinfra is not installed from a source tree ({root}): the servers' wheelhouse is built "
            "from one (pip install -e .)"
        )
    return root


def release_ident(root: Path) -> str:
    """A digest of what goes into the wheels: the package's files, pyproject.toml and constraints.txt."""
    digest = hashlib.sha256()
    paths = sorted(p for p in (root / "src" / "webinfra").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in [root / "pyproject.toml", root / "constraints.txt", *paths]:
        if path.exists():
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def ensure_wheelhouse(say: Say, cache: Path | None = None) -> Release:
    root = source_root()
    ident = release_ident(root)
    wheels = (cache or state_root() / "_wheels") / ident
    if not (wheels / ".complete").exists():
        say("local", "wheels", f"building {ident} (pip wheel)")
        wheels.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{ident}.", dir=wheels.parent))
        constraints = ["-c", str(root / "constraints.txt")] if (root / "constraints.txt").exists() else []
        (tmp / "requirements.txt").write_text("\n".join(SERVER_REQUIREMENTS) + "\n")
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(tmp)]
        for argv in ([*pip, "--no-deps", str(root)], [*pip, *constraints, "-r", str(tmp / "requirements.txt")]):
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                tail = " | ".join(result.stderr.strip().splitlines()[-2:])
                raise ServersError(f"local: pip wheel failed: {tail}")
        (tmp / ".complete").touch()
        shutil.rmtree(wheels, ignore_errors=True)
        tmp.rename(wheels)
    return Release(ident, tuple(sorted([*wheels.glob("*.whl"), wheels / "requirements.txt"])))
