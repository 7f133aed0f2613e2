"""Generated secrets: one file each, mode 0600, in the cluster's 0700 secrets directory. Never printed."""

from __future__ import annotations

import secrets
from pathlib import Path

from webinfra.plan.layout import Layout


def ensure_secret(layout: Layout, name: str) -> str:
    """Return the secret `name`, generating it on first use."""
    path = layout.secret(name)
    if path.exists():
        return path.read_text().strip()
    layout.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
    layout.secrets.chmod(0o700)
    value = secrets.token_urlsafe(24)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(value + "\n")
    tmp.replace(path)
    return value


def read_secret(path: Path) -> str:
    return path.read_text().strip()
