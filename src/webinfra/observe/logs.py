"""`webinfra logs`: the services' log files of the hosts, their ends, the lines since a time, and following
them as they grow (`--follow`).

On servers each service logs to journald instead: its unit's journal (`journalctl -u`, run on the server);
`--follow` keeps one `journalctl -f` per server open over SSH (`follow_journals`), all of that server's units in
it (one SSH session per server, not per unit: sshd allows 10 sessions on a shared connection).

Each daemon writes its own file (<host>/log/<service>*.log) in its own format, so `--since` reads the time
at the start of a line in the formats these daemons use (ISO 8601 as MariaDB, etcd, Prometheus and the
agents write it, nginx's `05/Dec/2026:07:40:27`, syslog's `Dec  5 07:40:27`); a line without a time (a
continuation, or a daemon that writes none, such as HAProxy's or uvicorn's) takes the time of the line above
it, and a file with no time at all counts from its last change.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from webinfra.control.cluster import Cluster
from webinfra.errors import UsageError
from webinfra.runtime import Machine
from webinfra.runtime.ssh import unit_name


@dataclass(frozen=True)
class LogFile:
    host: str
    service: str
    path: Path


def log_files(cluster: Cluster, hosts: list[str], services: list[str]) -> list[LogFile]:
    """The log files of `hosts` (every host when empty), of `services` (every service when empty)."""
    names = hosts or [h.name for h in cluster.topology.hosts]
    known = {svc.name for hp in cluster.plan.hosts for svc in hp.services}
    unknown = [s for s in services if s not in known]
    if unknown:
        raise UsageError(
            f"no service {unknown[0]!r} in cluster {cluster.topology.name} (services: {', '.join(sorted(known))})"
        )
    out = []
    for host in names:
        planned = [s.name for s in cluster.services_of(host, None)]  # an unknown host: UsageError
        wanted = [s for s in planned if not services or s in services]
        if hosts and services and not wanted:
            raise UsageError(f"host {host!r} runs none of {', '.join(services)} (it runs: {', '.join(planned)})")
        if cluster.servers:  # a server's services log to journald, one unit each
            out += [LogFile(host, service, Path(unit_name(service))) for service in wanted]
            continue
        log_dir = cluster.layout.host(host).log
        taken: set[Path] = set()
        for service in sorted(wanted, key=len, reverse=True):  # longest first: a name may prefix another
            for path in sorted(log_dir.glob(f"{service}*")):
                if path not in taken and path.is_file():
                    taken.add(path)
                    out.append(LogFile(host, service, path))
    return sorted(out, key=lambda f: (names.index(f.host), str(f.path)))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`10m`, `2h`, `30s`, `1d` ago, or an ISO 8601 time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    m = _DURATION.match(text.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: a duration (30s, 10m, 2h, 1d) or an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})[T ]\s?(\d{1,2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
_NGINX = re.compile(r"(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}:\d{2}:\d{2}) ([+-]\d{4})")
_SYSLOG = re.compile(r"^([A-Z][a-z]{2})\s+(\d{1,2}) (\d{2}:\d{2}:\d{2})")


def line_time(line: str, year: int) -> datetime | None:
    """The time a log line starts with (in its first 80 characters), or None."""
    head = line[:80]
    m = _ISO.search(head)
    if m:
        date, clock, _frac, zone = m.groups()
        zone = "+00:00" if zone in (None, "Z") else zone
        try:
            return datetime.fromisoformat(f"{date}T{clock.zfill(8)}{zone}")
        except ValueError:
            return None
    m = _NGINX.search(head)
    if m:
        try:
            return datetime.strptime(" ".join(m.groups()), "%d %b %Y %H:%M:%S %z")
        except ValueError:
            return None
    m = _SYSLOG.match(head)
    if m:
        try:
            return datetime.strptime(f"{year} {m.group(1)} {m.group(2)} {m.group(3)}", "%Y %b %d %H:%M:%S").replace(
                tzinfo=UTC
            )
        except ValueError:
            return None
    return None


def lines_since(lines: list[str], since: datetime, file_time: datetime) -> list[str]:
    """The lines written at or after `since`; undated lines take the time of the dated line above them."""
    current: datetime | None = None
    dated = [line_time(line, since.year) for line in lines]
    if not any(dated):
        return lines if file_time >= since else []
    out = []
    for line, when in zip(lines, dated, strict=True):
        current = when or current
        if current is not None and current >= since:
            out.append(line)
    return out


def read_tail(log: LogFile, lines: int | None, since: datetime | None = None) -> list[str]:
    """The last `lines` lines (all when None) of the file, of those written since `since` if given."""
    text = log.path.read_text(errors="replace").splitlines()
    if since is not None:
        mtime = datetime.fromtimestamp(log.path.stat().st_mtime, UTC)
        text = lines_since(text, since, mtime)
    if lines is None:
        return text
    return text[len(text) - lines :] if 0 < lines < len(text) else (text if lines > 0 else [])


def tails(
    cluster: Cluster, logs: list[LogFile], lines: int | None, since: datetime | None
) -> list[tuple[LogFile, list[str]]]:
    """Each log's end: a file here (emulated), or its unit's journal on the server."""
    if cluster.servers:
        return [(log, read_journal(cluster.hosts[log.host], log, lines, since)) for log in logs]
    return [(log, read_tail(log, lines, since)) for log in logs]


def read_journal(machine: Machine, log: LogFile, lines: int | None, since: datetime | None = None) -> list[str]:
    """A server's: the unit's journal, the last `lines` lines (all when None) of those since `since`."""
    argv = ["journalctl", "--no-pager", "--quiet", "-o", "short-iso", "-u", log.path.name]
    if since is not None:
        argv += ["--since", f"@{int(since.timestamp())}"]
    if lines is not None:
        argv += ["-n", str(max(lines, 0))]
    text = machine.run(argv, timeout=30).stdout.splitlines()
    return text if lines is None or lines > 0 else []


def follow(logs: list[LogFile], poll: float = 0.2, stop_after: float | None = None) -> Iterator[tuple[LogFile, str]]:
    """Yield (file, line) as lines are appended to any of `logs`, from their ends at the time of the call (like
    `tail -F`: a file truncated or replaced is read again from its start)."""
    offsets = {log.path: (log.path.stat().st_size if log.path.exists() else 0) for log in logs}
    return _follow(logs, offsets, poll, stop_after)


def _follow(
    logs: list[LogFile], offsets: dict[Path, int], poll: float, stop_after: float | None
) -> Iterator[tuple[LogFile, str]]:
    buffers = {log.path: "" for log in logs}
    started = time.monotonic()
    while stop_after is None or time.monotonic() - started < stop_after:
        for log in logs:
            try:
                size = log.path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets[log.path]:
                offsets[log.path] = 0  # rotated or truncated
            with open(log.path, errors="replace") as f:
                f.seek(offsets[log.path])
                chunk = f.read()
                offsets[log.path] = f.tell()
            buffers[log.path] += chunk
            while "\n" in buffers[log.path]:
                line, buffers[log.path] = buffers[log.path].split("\n", 1)
                yield log, line
        time.sleep(poll)


def journal_line(record: dict[str, object]) -> tuple[str, str] | None:
    """(unit, line) of one `journalctl -o json` record: the daemon's own lines (`_SYSTEMD_UNIT`) and systemd's
    about the unit (`UNIT`: started, stopped, failed), the time first as `short-iso` shows it. Pure."""
    unit = record.get("UNIT") if record.get("_COMM") == "systemd" else record.get("_SYSTEMD_UNIT")
    message = record.get("MESSAGE")
    if isinstance(message, list):  # journald's form of a message that is not UTF-8: its bytes
        message = bytes(int(b) for b in message).decode(errors="replace")
    if not isinstance(unit, str) or not isinstance(message, str):
        return None
    try:
        micros = int(str(record.get("__REALTIME_TIMESTAMP")))
    except ValueError:
        return unit, message
    when = datetime.fromtimestamp(micros / 1e6, UTC).isoformat(timespec="seconds")
    return unit, f"{when} {message}"


def follow_journals(cluster: Cluster, logs: list[LogFile]) -> Iterator[tuple[LogFile, str]]:
    """Servers: yield (log, line) as the units' journals grow, from now (`journalctl -f -n 0` per server,
    started at the call, so no line written after it is lost); the SSH sessions end with the iterator."""
    by_host: dict[str, dict[str, LogFile]] = {}
    for log in logs:
        by_host.setdefault(log.host, {})[log.path.name] = log
    lines: queue.Queue[tuple[LogFile, str] | None] = queue.Queue()
    procs = []
    for host, units in by_host.items():
        argv = ["journalctl", "-f", "-n", "0", "-o", "json", *(a for u in units for a in ("-u", u))]
        proc = subprocess.Popen(
            cluster.hosts[host].local_argv(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        procs.append(proc)
        threading.Thread(target=_read_journal, args=(proc, units, lines), daemon=True).start()

    def stream() -> Iterator[tuple[LogFile, str]]:
        ended = 0
        try:
            while ended < len(procs):
                item = lines.get()
                if item is None:  # one server's journalctl ended (the connection dropped)
                    ended += 1
                    continue
                yield item
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()

    return stream()


def _read_journal(
    proc: subprocess.Popen[str], units: dict[str, LogFile], out: queue.Queue[tuple[LogFile, str] | None]
) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        try:
            found = journal_line(json.loads(raw))
        except ValueError:
            continue
        if found is not None and found[0] in units:
            out.put((units[found[0]], found[1]))
    out.put(None)
