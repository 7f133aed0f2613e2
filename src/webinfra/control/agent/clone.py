"""Re-clone: replace this host's datadir with a physical copy of the leader's, then replicate from it.

Source side (`backup_stream`): `mariabackup --backup --stream=xbstream` of the running server, read in
chunks by the API's `/clone` handler.

Receiving side (`reclone`, run in a worker thread while the HA loop keeps going):
1. stream `GET http://<leader>:<port>/clone` straight into `mbstream -x` in a staging directory next to
   the datadir, and `mariabackup --prepare` it there, while the old MariaDB still runs (it is read-only
   and diverged, but answering; the outage is only steps 2-3);
2. stop MariaDB (`mariadb_control.stop`), move the old datadir aside, move the prepared copy in;
3. start MariaDB (`mariadb_control.start`); on failure put the old datadir back and start that;
4. `gtid_slave_pos` := the backup's GTID (`xtrabackup_binlog_info`, or `mariadb_backup_binlog_info`),
   replicate from the leader, delete the old datadir.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from webinfra.control.agent.config import AgentConfig
from webinfra.control.agent.mysql import LocalMariaDB

log = logging.getLogger("webinfra.agent")

CHUNK = 256 * 1024
BINLOG_INFO_FILES = ("mariadb_backup_binlog_info", "xtrabackup_binlog_info")


class CloneError(RuntimeError):
    pass


# -- source side ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def backup_stream(socket: Path, workdir: Path) -> Iterator[tuple[Iterator[bytes], subprocess.Popen[bytes]]]:
    """Run mariabackup streaming xbstream; yield (chunks, process). The caller checks the exit code after
    the last chunk: only a clean exit may end the HTTP stream normally."""
    target = Path(tempfile.mkdtemp(prefix="clone-", dir=workdir))
    errlog = target.with_suffix(".log").open("wb")
    proc = subprocess.Popen(
        [
            "mariabackup",
            "--backup",
            "--stream=xbstream",
            "--user=root",
            f"--socket={socket}",
            f"--target-dir={target}",
        ],
        stdout=subprocess.PIPE,
        stderr=errlog,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()

    def chunks() -> Iterator[bytes]:
        while data := os.read(fd, CHUNK):  # whatever is there, up to CHUNK: stream as it comes
            yield data
        proc.wait()

    try:
        yield chunks(), proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errlog.close()
        shutil.rmtree(target, ignore_errors=True)
        if proc.returncode == 0:
            target.with_suffix(".log").unlink(missing_ok=True)


# -- receiving side ------------------------------------------------------------------------------------------


def backup_gtid(datadir: Path) -> str:
    """The GTID position a prepared backup is at (third field of its binlog info file)."""
    for name in BINLOG_INFO_FILES:
        path = datadir / name
        if path.exists():
            fields = path.read_text().split()
            if len(fields) >= 3:
                return fields[2]
            return ""
    raise CloneError(f"no {' or '.join(BINLOG_INFO_FILES)} in the backup")


def _run(argv: list[str], what: str, timeout: float) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CloneError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise CloneError(f"{what} exited {proc.returncode}: {tail}")


def fetch_into(url: str, token: str, staging: Path, *, timeout: float = 600.0) -> int:
    """Stream the backup at `url` into `mbstream -x -C staging`; returns the bytes received."""
    staging.mkdir(parents=True)
    unpack = subprocess.Popen(["mbstream", "-x", "-C", str(staging)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert unpack.stdin is not None
    total = 0
    try:
        with httpx.stream(
            "GET", url, headers={"X-Webinfra-Token": token}, timeout=httpx.Timeout(30.0, read=120.0)
        ) as resp:
            if resp.status_code != 200:
                raise CloneError(f"GET {url}: HTTP {resp.status_code} {resp.read()[:200]!r}")
            deadline = time.monotonic() + timeout
            for chunk in resp.iter_bytes(CHUNK):
                unpack.stdin.write(chunk)
                total += len(chunk)
                if time.monotonic() > deadline:
                    raise CloneError(f"GET {url}: not done after {timeout:g}s")
    except httpx.HTTPError as exc:
        # A stream cut short (the source's mariabackup failed) ends without its last chunk: this.
        raise CloneError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
    finally:
        with contextlib.suppress(BrokenPipeError):
            unpack.stdin.close()
        rc = unpack.wait(timeout=60)
    if rc != 0:
        err = unpack.stderr.read().decode(errors="replace") if unpack.stderr else ""
        raise CloneError(f"mbstream -x exited {rc}: {err.strip()[-300:]}")
    return total


def reclone(config: AgentConfig, db: LocalMariaDB, leader: str) -> str:
    """Replace the datadir with a copy of `leader`'s and replicate from it. Returns the GTID cloned at."""
    datadir = config.mariadb.datadir
    staging = datadir.with_name(f".{datadir.name}.clone")
    old = datadir.with_name(f".{datadir.name}.old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    url = f"http://{config.address_of(leader)}:{config.listen_port}/clone"
    started = time.monotonic()
    size = fetch_into(url, config.token(), staging)
    _run(["mariabackup", "--prepare", f"--target-dir={staging}"], "mariabackup --prepare", 600)
    gtid = backup_gtid(staging)
    log.info("clone of %s prepared: %.1f MB at %s in %.1fs", leader, size / 1e6, gtid, time.monotonic() - started)

    _run(config.mariadb_control.stop, "stopping MariaDB", 120)
    datadir.rename(old)
    staging.rename(datadir)
    try:
        _run(config.mariadb_control.start, "starting MariaDB on the clone", 300)
        if not db.wait_reachable(60):
            raise CloneError("MariaDB did not answer after starting on the clone")
    except CloneError:
        # Put the old datadir back so this node at least runs (read-only, diverged) for the next try.
        with contextlib.suppress(CloneError):
            _run(config.mariadb_control.stop, "stopping MariaDB", 120)
        datadir.rename(staging)
        old.rename(datadir)
        with contextlib.suppress(CloneError):
            _run(config.mariadb_control.start, "starting MariaDB on the old datadir", 300)
        raise
    db.start_replica_at(
        gtid,
        host=config.address_of(leader),
        port=config.mariadb.port,
        user=config.repl_user,
        password=config.repl_password(),
        tls=config.repl_tls_clause(),
    )
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    return gtid
