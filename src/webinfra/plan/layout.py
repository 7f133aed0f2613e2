"""Moved to webinfra/state.py (every path on disk); this name stays until the package-wide import rewrite."""

from webinfra.state import (  # noqa: F401
    DEFAULT_SOCKET_ROOT,
    DEFAULT_STATE_ROOT,
    SOCKET_ROOT_ENV,
    STATE_ROOT_ENV,
    HostDirs,
    Layout,
    socket_root,
    state_root,
)
