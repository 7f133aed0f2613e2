"""Shared test set-up: integration tests (tests/integration) need root and real daemons."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from webinfra.state import SOCKET_ROOT_ENV, STATE_ROOT_ENV

ROOT = Path(__file__).resolve().parents[1]
_OWN_DIRS: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """Tests never read or write the real state and run directories (a cluster from `make up` may be using
    them): every default path points into directories of this session, for the CLI's subprocesses too.
    The run directory is short on purpose: unix socket paths are limited to 108 bytes."""
    for env, prefix in ((STATE_ROOT_ENV, "wi-state-"), (SOCKET_ROOT_ENV, "wi-run-")):
        path = Path(tempfile.mkdtemp(prefix=prefix))
        _OWN_DIRS.append(path)
        os.environ[env] = str(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _OWN_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="integration tests need root (network namespaces, daemons): run as root")
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if os.geteuid() != 0:
                item.add_marker(skip)
