"""End to end: the exact production command line (uvicorn, uvloop, httptools) against real MariaDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from site_testlib import Cluster, free_port

from testkit import wait_for
from webinfra.site import CONFIG_ENV


@pytest.fixture
def server(mariadb_cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    config_file = tmp_path / "site.json"
    config_file.write_text(mariadb_cluster.config().model_dump_json())
    port = free_port()
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "webinfra.site.app:create_app",
            "--factory",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={**os.environ, CONFIG_ENV: str(config_file)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {(tmp_path / 'uvicorn.log').read_text()}")
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 20, "uvicorn to answer /healthz")
        yield base
        # Graceful stop runs the lifespan shutdown, which closes the pools.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0, (tmp_path / "uvicorn.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_production_command_line(server: str, mariadb_cluster: Cluster) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        health = client.get("/healthz")
        assert health.json() == {"status": "ok", "host": "web-test", "version": "7"}
        assert health.headers["x-served-by"] == "web-test" and health.headers["x-app-version"] == "7"

        created = client.post("/api/entries", json={"text": "via uvicorn ✓"})
        assert created.status_code == 201 and created.headers["x-db"] == mariadb_cluster.primary.name
        # The real cookie jar now carries wi_gtid: read-your-writes without help.
        got = client.get(created.headers["location"])
        assert got.status_code == 200 and got.json()["text"] == "via uvicorn ✓"

        assert client.post("/api/entries", json={"text": "x" * 70 * 1024}).status_code == 413
        huge = client.post("/api/entries", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
        assert huge.status_code == 413 and "error" in huge.json()
        assert client.get("/healthz").status_code == 200
        assert client.post("/api/entries", content=b"{oops", headers={"content-type": "application/json"}).json()
        missing = client.get("/missing")
        assert missing.status_code == 404 and missing.headers["x-served-by"] == "web-test"
