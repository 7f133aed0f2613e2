"""Fixtures for the site's tests (the machinery is in :mod:`site_testlib`).

``mariadb_cluster`` (session scope) builds a private MariaDB primary + GTID replica
on 127.0.0.1 with free ports in a temp dir, creates the ``site`` database, schema
and a least-privilege ``site`` user, and on teardown stops exactly the processes it
started.  It needs root (mariadbd runs with ``--user=root``, the admin login is
unix-socket auth) and skips with a reason otherwise.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from site_testlib import (
    CLIENT,
    INSTALL_DB,
    MARIADBD,
    REPL_PASSWORD,
    AppClient,
    Cluster,
    MariaDB,
    serve_app,
    setup_sql,
)


@pytest.fixture(scope="session")
def mariadb_cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("MariaDB tests need root (mariadbd --user=root, unix-socket admin login)")
    if not (MARIADBD and INSTALL_DB and CLIENT):
        pytest.skip("mariadbd / mariadb-install-db / mariadb client not installed")
    base = Path(tempfile.mkdtemp(prefix="webinfra-site-db-"))
    primary = MariaDB("db-primary", base / "primary", server_id=1)
    replica = MariaDB("db-replica", base / "replica", server_id=2, read_only=True)
    try:
        # Both instances are independent until replication is wired: set up in parallel.
        installs = [db.install() for db in (primary, replica)]
        for db, proc in zip((primary, replica), installs, strict=True):
            out, _ = proc.communicate(timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"mariadb-install-db for {db.name} failed:\n{out.decode()[-3000:]}")
        for db in (primary, replica):
            db.start()
        for db in (primary, replica):
            db.wait_ready()

        password = secrets.token_urlsafe(18)
        password_file = base / "db-site.password"
        password_file.touch(mode=0o600)
        password_file.write_text(password + "\n")
        # Everything is created on the primary *after* its binlog started, so the
        # replica gets the database, schema and users through replication itself.
        primary.sql(setup_sql(password))
        replica.sql(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port}, "
            f"MASTER_USER='repl', MASTER_PASSWORD='{REPL_PASSWORD}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;"
        )
        cluster = Cluster(primary, replica, password_file, password)
        cluster.wait_replica_caught_up()
        yield cluster
    finally:
        for db in (replica, primary):
            db.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    """A password file for configs whose DB is never reached."""
    path = tmp_path / "db-site.password"
    path.touch(mode=0o600)
    path.write_text("not-a-real-password\n")
    return path


@pytest.fixture
def serve() -> AppClient:
    """``async with serve(config) as (client, app)``: an in-process client for the site app."""
    return serve_app
