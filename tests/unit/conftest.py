"""Unit tests never touch the machine's state: the state and socket roots point into a tmp dir."""

from __future__ import annotations

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
