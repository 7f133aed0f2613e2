"""Running the dashboard: its token, where it listens, and the files that tell `status` its URL."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn

from webinfra.dashboard.app import create_app
from webinfra.errors import UsageError
from webinfra.runtime.emulated import bridge_name, link_exists, record_process
from webinfra.services.secrets import ensure_secret

if TYPE_CHECKING:
    from webinfra.control.cluster import Cluster

TOKEN_SECRET = "dashboard-token"


def token(cluster: Cluster, *, renew: bool = False) -> str:
    """The dashboard's access token (a generated secret, 0600); `renew` replaces it (old URLs stop working)."""
    path = cluster.layout.secret(TOKEN_SECRET)
    if renew:
        path.unlink(missing_ok=True)
    return ensure_secret(cluster.layout, TOKEN_SECRET)


def default_bind(cluster: Cluster) -> str:
    """The cluster's gateway: the management side of its bridge, in the machine's own namespace. Servers:
    127.0.0.1: the page shows the whole cluster and takes commands, so it is not put on a network by default
    (from a laptop: run webinfra there, or `ssh -L 8088:127.0.0.1:8088` to the machine that runs it)."""
    if cluster.servers:
        return "127.0.0.1"
    gateway = str(cluster.topology.gateway)
    bridge = bridge_name(cluster.topology.name)
    if not link_exists(bridge):
        raise UsageError(
            f"cluster {cluster.topology.name} is not up (no bridge {bridge} holding {gateway}): "
            "run `webinfra up`, or give --bind 127.0.0.1"
        )
    return gateway


def serve(cluster: Cluster, bind: str, port: int, *, say: Callable[[str], None], renew_token: bool = False) -> None:
    secret = token(cluster, renew=renew_token)
    host = f"[{bind}]" if ":" in bind else bind
    url = f"http://{host}:{port}/"
    pidfile, info = cluster.layout.dashboard_pidfile, cluster.layout.dashboard_info
    app = create_app(cluster, secret)
    # Open event streams never end by themselves: on Ctrl-C they get 2 s, then they are cut.
    config = uvicorn.Config(
        app, host=bind, port=port, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    record_process(pidfile, os.getpid(), sys.argv)
    info.write_text(json.dumps({"url": url}) + "\n")
    say(f"dashboard of {cluster.topology.name} at {url}")
    say(f"open (once; it signs this browser in): {url}?token={secret}")
    # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit that runs the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run()
    finally:
        pidfile.unlink(missing_ok=True)
        info.unlink(missing_ok=True)
