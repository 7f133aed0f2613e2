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
   replicate from the leader;
5. never erase diverged data silently (orchestrator's errant-GTID rule): the old datadir stays next to
   the datadir as `<datadir>.diverged-<UTC time>` (the newest `keep_diverged` of them, default 2), the
   errant transactions (the GTID ranges decide.py found, e.g. 0-1-101..110) are exported from its
   binlogs with `mariadb-binlog --start-position/--stop-position/--do-server-ids` into
   `<that dir>.errant.sql`, and an `errant_transactions` event names the GTIDs, the file and the dir.
   The exports are never pruned (they are small and the only record once the datadir is gone).
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

from webinfra.agent import clock
from webinfra.agent.config import AgentConfig
from webinfra.agent.eventlog import EventLog
from webinfra.agent.mysql import LocalMariaDB
from webinfra.agent.snapshot import GtidState

log = logging.getLogger("webinfra.agent")

CHUNK = 256 * 1024
GTID_STATE_HEADER = "X-Webinfra-Gtid-Binlog-State"  # the source's gtid_binlog_state before the backup
BINLOG_INFO_FILES = ("mariadb_backup_binlog_info", "xtrabackup_binlog_info")


class CloneError(RuntimeError):
    pass


# -- source side ---------------------------------------------------------------------------------------------


def backup_argv(socket: Path, target: Path) -> list[str]:
    """mariabackup streaming xbstream of the MariaDB at `socket` (also what `webinfra scale add-replica` runs)."""
    return [
        "mariabackup",
        "--backup",
        "--stream=xbstream",
        "--user=root",
        f"--socket={socket}",
        f"--target-dir={target}",
    ]


@contextlib.contextmanager
def backup_stream(socket: Path, workdir: Path) -> Iterator[tuple[Iterator[bytes], subprocess.Popen[bytes]]]:
    """Run mariabackup streaming xbstream; yield (chunks, process). The caller checks the exit code after
    the last chunk: only a clean exit may end the HTTP stream normally."""
    target = Path(tempfile.mkdtemp(prefix="clone-", dir=workdir))
    errlog = target.with_suffix(".log").open("wb")
    proc = subprocess.Popen(
        backup_argv(socket, target),
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
            return gtid_in(path.read_text())
    raise CloneError(f"no {' or '.join(BINLOG_INFO_FILES)} in the backup")


def gtid_in(binlog_info: str) -> str:
    """The GTID of a backup's binlog info file's text (its third field; empty: a fresh server's)."""
    fields = binlog_info.split()
    return fields[2] if len(fields) >= 3 else ""


def _run(argv: list[str], what: str, timeout: float) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CloneError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise CloneError(f"{what} exited {proc.returncode}: {tail}")


def fetch_into(url: str, token: str, staging: Path, *, timeout: float = 600.0) -> tuple[int, str]:
    """Stream the backup at `url` into `mbstream -x -C staging`; returns the bytes received and the
    source's GTID state sent with it."""
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
            source_state = resp.headers.get(GTID_STATE_HEADER, "")
            deadline = clock.now() + timeout
            for chunk in resp.iter_bytes(CHUNK):
                unpack.stdin.write(chunk)
                total += len(chunk)
                if clock.now() > deadline:
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
    return total, source_state


def reclone(
    config: AgentConfig, db: LocalMariaDB, leader: str, errant: tuple[str, ...] = (), events: EventLog | None = None
) -> str:
    """Replace the datadir with a copy of `leader`'s and replicate from it, keeping the old one aside with
    its `errant` transactions exported. Returns the GTID cloned at."""
    datadir = config.mariadb.datadir
    staging = datadir.with_name(f".{datadir.name}.clone")
    shutil.rmtree(staging, ignore_errors=True)
    url = f"http://{config.address_of(leader)}:{config.listen_port}/clone"
    started = clock.now()
    size, source_state = fetch_into(url, config.token(), staging)
    _run(["mariabackup", "--prepare", f"--target-dir={staging}"], "mariabackup --prepare", 600)
    gtid = backup_gtid(staging)
    log.info("clone of %s prepared: %.1f MB at %s in %.1fs", leader, size / 1e6, gtid, clock.now() - started)

    _run(config.mariadb_control.stop, "stopping MariaDB", 120)
    old = aside_path(datadir)
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
        binlog_state=restored_state(source_state, gtid),
        host=config.address_of(leader),
        port=config.mariadb.port,
        user=config.repl_user,
        password=config.repl_password(),
        tls=config.repl_tls_clause(),
    )
    shutil.rmtree(staging, ignore_errors=True)
    _surface_diverged(config, old, errant, events)
    return gtid


def restored_state(source_state: str, gtid: str) -> str:
    """The clone's history: the source's binlog state from before the backup, plus the backup's own GTID.
    Every entry of the former is at or before the backup point (it was read first), so the merge is a
    state of the source's history at that point. A malformed header: the backup's GTID alone."""
    try:
        return str(GtidState.parse(source_state, gtid))
    except ValueError:
        return str(GtidState.parse(gtid))


def aside_path(datadir: Path) -> Path:
    """Where a replaced datadir is kept: next to it, named by the UTC time (sortable)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = datadir.with_name(f"{datadir.name}.diverged-{stamp}")
    n = 1
    while path.exists():
        n += 1
        path = datadir.with_name(f"{datadir.name}.diverged-{stamp}-{n}")
    return path


def _surface_diverged(config: AgentConfig, old: Path, errant: tuple[str, ...], events: EventLog | None) -> None:
    """Export the errant transactions, prune old copies, and say where everything is."""
    keep = config.mariadb.keep_diverged
    exported: Path | None = None
    note = ""
    if errant and keep > 0:
        exported = old.with_name(old.name + ".errant.sql")
        try:
            export_errant(old, errant, exported)
        except CloneError as exc:
            note = f"; export failed: {exc}"
            exported = None
    kept = prune_diverged(config.mariadb.datadir, keep)
    where = f"old datadir kept at {old}" if old in kept else "old datadir not kept (keep_diverged = 0)"
    what = ", ".join(errant) if errant else "none identified (replication diverged)"
    # The export first: it is what someone (or the nemesis checker) should open.
    detail = f"errant GTIDs {what}" + (f" exported to {exported}" if exported is not None else "") + f"; {where}"
    log.warning("re-clone: %s%s", detail, note)
    if events is not None:
        events.append("errant_transactions", detail + note)


def export_errant(datadir: Path, errant: tuple[str, ...], out: Path) -> None:
    """`mariadb-binlog` of each errant range ('d-s-first..last') from the binlogs in `datadir`, into `out`."""
    binlogs = sorted(str(f) for f in datadir.glob("*.[0-9][0-9][0-9][0-9][0-9][0-9]"))
    if not binlogs:
        raise CloneError(f"no binlogs in {datadir}")
    with out.open("w") as sink:
        for spec in errant:
            first_gtid, _, last = spec.partition("..")
            domain, server, first = (int(x) for x in first_gtid.split("-"))
            last_seq = int(last) if last else first
            sink.write(f"-- webinfra: errant transactions {spec} (domain {domain}, server_id {server})\n")
            sink.flush()
            argv = [
                "mariadb-binlog",
                "--base64-output=decode-rows",
                "--verbose",
                f"--do-server-ids={server}",
                f"--stop-position={domain}-{server}-{last_seq}",
                *([f"--start-position={domain}-{server}-{first - 1}"] if first > 1 else []),
                *binlogs,
            ]
            try:
                proc = subprocess.run(argv, stdout=sink, stderr=subprocess.PIPE, text=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise CloneError(f"mariadb-binlog: {exc}") from exc
            if proc.returncode != 0:
                raise CloneError(f"mariadb-binlog exited {proc.returncode}: {proc.stderr.strip()[-300:]}")


def prune_diverged(datadir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` kept-aside datadirs; returns those kept. Their `.errant.sql`
    exports stay: a nemesis run re-cloned one node three times and lost the first export with its dir."""
    copies = sorted(p for p in datadir.parent.glob(f"{datadir.name}.diverged-*") if p.is_dir())
    doomed, kept = (copies[:-keep], copies[-keep:]) if keep > 0 else (copies, [])
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return kept
