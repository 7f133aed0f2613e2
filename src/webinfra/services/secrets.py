"""Generated secrets: one file each, mode 0600, in the cluster's 0700 secrets directory. Never printed."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from webinfra.state import Layout


def ensure_secret(layout: Layout, name: str) -> str:
    """Return the secret `name`, generating it on first use. Safe when several threads or processes ask
    at once (services start side by side): the first one to publish its value wins, the others read it."""
    path = layout.secret(name)
    if path.exists():
        return path.read_text().strip()
    layout.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
    layout.secrets.chmod(0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=layout.secrets)  # mode 0600, a name of its own
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic, and never replaces a value someone already uses
    finally:
        os.unlink(tmp)
    return path.read_text().strip()


def read_secret(path: Path) -> str:
    return path.read_text().strip()
