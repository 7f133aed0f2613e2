"""Unit tests never touch the machine's state (the state and socket roots point into a tmp dir) and never
reach a server: `ssh` and `scp` on PATH refuse (the examples name real-looking addresses, 10.20.0.x)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from webinfra.state import SOCKET_ROOT_ENV, STATE_ROOT_ENV


@pytest.fixture(autouse=True)
def _private_roots(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    base = tmp_path_factory.mktemp("roots")
    monkeypatch.setenv(STATE_ROOT_ENV, str(base / "state"))
    monkeypatch.setenv(SOCKET_ROOT_ENV, str(base / "run"))
    yield


@pytest.fixture(scope="module")
def module_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """For module-scoped fixtures: a tmp base with the state and socket roots under it, set while they run."""
    base = tmp_path_factory.mktemp("module-roots")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STATE_ROOT_ENV, str(base / "state"))
        mp.setenv(SOCKET_ROOT_ENV, str(base / "run"))
        yield base


NO_SSH = "#!/bin/sh\necho 'unit tests never reach a server (tests/unit/conftest.py)' >&2\nexit 255\n"


@pytest.fixture(autouse=True, scope="session")
def _no_ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A unit test that would run a command on `examples/servers.toml`'s servers gets SSH's own failure
    (exit 255) at once instead of a connection to whatever answers at those addresses."""
    bin_dir = tmp_path_factory.mktemp("no-ssh-bin")
    for name in ("ssh", "scp"):
        (bin_dir / name).write_text(NO_SSH)
        (bin_dir / name).chmod(0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        yield
