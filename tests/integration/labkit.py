"""Lab machines for the integration tests that need real systemd and SSH (test_lab, test_servers,
test_servers_hardened): booted from the cached image, always taken down, and skipped (not failed) only where
this kernel or container runtime cannot boot systemd in an nspawn container at all."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from testkit import wait_for
from webinfra.testbed import LabError
from webinfra.testbed import lab as labs

WEBINFRA = Path(sys.executable).parent / "webinfra"


def webinfra(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it (a new process), its output captured."""
    return subprocess.run([str(WEBINFRA), *argv], capture_output=True, text=True, timeout=timeout)


def start_lab(paths: labs.LabPaths, spec: labs.LabSpec) -> labs.Lab:
    """`lab up`; when nspawn exited before the first machine's systemd printed a line, what was made is
    taken down and the test skipped."""
    try:
        return labs.up(spec, paths, None, lambda line: None)
    except LabError as exc:
        console = paths.lab(spec.name) / "machines" / "node-01" / "console.log"
        booted = console.exists() and "systemd" in console.read_text(errors="replace")
        stop_lab(paths, spec.name)
        if "systemd-nspawn exited" in str(exc) and not booted:
            pytest.skip(f"systemd-nspawn cannot boot a container here: {exc}")
        raise


def stop_lab(paths: labs.LabPaths, name: str) -> None:
    found = labs.Lab.load(paths, name)
    if found is not None:
        labs.down(found, lambda line: None)


@contextmanager
def booted_lab(paths: labs.LabPaths, spec: labs.LabSpec) -> Iterator[labs.Lab]:
    made = start_lab(paths, spec)
    try:
        yield made
    finally:
        labs.down(made, lambda line: None)


def ssh(lab: labs.Lab, address: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """A shell command on the lab machine at `address`, over SSH with the lab's key."""
    return lab.machine(address).run(lab.ssh_dir, [command], timeout)


Fetch = Callable[[], tuple[int, dict[str, str]]]


class Requests:
    """Requests through the LB or VIP in a thread (`fetch` makes one and returns its status and headers),
    bounded in time: it stops by itself after `limit` seconds. Counts what failed and the app versions seen."""

    def __init__(self, fetch: Fetch, limit: float = 60.0) -> None:
        self.fetch, self.deadline = fetch, time.monotonic() + limit
        self.done = 0
        self.failed: list[object] = []
        self.versions: list[str | None] = []
        self.served_by: list[str | None] = []  # X-Served-By: which app server answered
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                status, headers = self.fetch()
                self.versions.append(headers.get("x-app-version"))
                self.served_by.append(headers.get("x-served-by"))
                if status != 200:
                    self.failed.append(status)
            except OSError as exc:  # urllib's HTTPError (a 5xx) and URLError are OSErrors
                self.failed.append(repr(exc))
            self.done += 1
            time.sleep(0.02)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)


def deploy_under_load(
    fetch: Fetch, where: tuple[str, ...], code: Path
) -> tuple[subprocess.CompletedProcess[str], Requests, float]:
    """`webinfra deploy CODE` while `fetch` runs in a loop (20 requests before, 20 after): the CLI's result,
    the requests (stopped) and the deploy's seconds."""
    load = Requests(fetch)
    wait_for(lambda: load.done >= 20, 30, "requests before the deploy")
    started = time.monotonic()
    result = webinfra("deploy", str(code), *where, timeout=300)
    elapsed = time.monotonic() - started
    seen = load.done
    wait_for(lambda: load.done >= seen + 20, 30, "requests after the deploy")
    load.finish()
    return result, load, elapsed
