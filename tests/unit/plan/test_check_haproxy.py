"""keepalived's check of HAProxy (plan/ha.py CHECK_HAPROXY), run for real on a stand-in process: on the LB
that holds the VIP it keeps looking for ~0.75 s and fails as soon as the process is gone; elsewhere it
answers at once. The VIP is "held" when it is one of this namespace's local addresses (127.0.0.1 here)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webinfra.plan.daemons.keepalived import CHECK_HAPROXY

HELD = "127.0.0.1"  # a local address of every namespace
NOT_HELD = "198.51.100.77"  # TEST-NET-2: on no interface here


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    proc = subprocess.Popen(["sleep", "30"])
    pidfile = tmp_path / "haproxy.pid"
    pidfile.write_text(f"{proc.pid}\n")
    yield proc, pidfile
    proc.kill()
    proc.wait()


def _check(tmp_path: Path, pidfile: Path, vip: str) -> tuple[int, float]:
    script = tmp_path / "check-haproxy.sh"
    script.write_text(CHECK_HAPROXY.format(pidfile=pidfile, vip=vip))
    script.chmod(0o755)
    start = time.monotonic()
    code = subprocess.run([str(script)], check=False, timeout=5).returncode
    return code, time.monotonic() - start


def test_without_the_vip_it_answers_at_once(haproxy: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    code, took = _check(tmp_path, haproxy[1], NOT_HELD)
    assert code == 0 and took < 0.5


def test_with_the_vip_it_looks_for_most_of_a_second(
    haproxy: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    code, took = _check(tmp_path, haproxy[1], HELD)
    assert code == 0 and 0.7 <= took < 2.0  # keepalived runs it every second: it must end before the next run


def test_with_the_vip_a_crash_fails_it_within_a_look(
    haproxy: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    proc, pidfile = haproxy
    killer = threading.Timer(0.2, lambda: (proc.kill(), proc.wait()))
    killer.start()
    code, took = _check(tmp_path, pidfile, HELD)
    killer.join()
    assert code == 1 and took < 0.7


def test_a_dead_or_missing_haproxy_fails_at_once(haproxy: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    proc, pidfile = haproxy
    proc.kill()
    proc.wait()
    assert _check(tmp_path, pidfile, NOT_HELD)[0] == 1
    assert _check(tmp_path, tmp_path / "missing.pid", HELD)[0] == 1
