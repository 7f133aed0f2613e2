"""Scratch clusters: a design brought up as a cluster of its own, on its own subnet, for one bench, chaos or
nemesis run or one test module, and taken down afterwards. The one place that does it (chaos, the benches
and tests/integration/clusterkit.py use it).

Leftovers of a crashed earlier run under the same name (namespaces, veths, the bridge) are swept first, so
they cannot hold the addresses. `scratch_run` is the frame of a bench run: a state root, the clusters it
brings up there, and their teardown.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from webinfra.control.cluster import Cluster
from webinfra.errors import UsageError
from webinfra.model import parse_topology
from webinfra.model.relocate import relocated
from webinfra.runtime.emulated import sweep_cluster
from webinfra.state import Layout

T = TypeVar("T")
Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def scratch_at(name: str | None, subnet: str | None, default: tuple[str, str]) -> tuple[str, str]:
    """The (name, subnet) a run brings its cluster up as: `default` unless given (--scratch-name,
    --scratch-subnet); a bad one is a UsageError."""
    chosen = (name or default[0], subnet or default[1])
    if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", chosen[0]):
        raise UsageError(f"--scratch-name {chosen[0]!r}: 1-8 lowercase letters and digits, a letter first")
    try:
        ipaddress.IPv4Network(chosen[1])
    except ValueError:
        raise UsageError(f"--scratch-subnet {chosen[1]!r}: not an IPv4 network like 198.18.33.0/24") from None
    return chosen


def prepare(
    text: str, root: Path | None, *, name: str | None = None, subnet: str | None = None, source: str = ""
) -> Cluster:
    """The Cluster for `text` (under `name` on `subnet` when given), nothing started; leftovers swept."""
    if name is not None and subnet is not None:
        text = relocated(text, name, subnet)
    topo = parse_topology(text, source or f"<scratch {name or 'cluster'}>")
    sweep_cluster(topo.name)
    return Cluster(topo, Layout.for_cluster(topo.name, root), text)


def bring_up(
    text: str,
    root: Path | None,
    *,
    name: str | None = None,
    subnet: str | None = None,
    say: Say = _quiet,
    announce: str | None = None,
    source: str = "",
) -> Cluster:
    """Bring up `text` (relocated to `name` and `subnet` when given) as a cluster under `root`; it stays up.
    `announce`: the line said before `up` (default: `up: cluster NAME (N hosts, SUBNET)`)."""
    cluster = prepare(text, root, name=name, subnet=subnet, source=source)
    _up(cluster, say, announce)
    return cluster


def _up(cluster: Cluster, say: Say, announce: str | None) -> None:
    topo = cluster.topology
    say(announce or f"up: cluster {topo.name} ({len(topo.hosts)} hosts, {topo.network.subnet})")
    cluster.up()


def take_down(cluster: Cluster, say: Say = _quiet) -> None:
    """Down with its state purged; whatever a failed `down` left of its network is swept."""
    name = cluster.topology.name
    say(f"down: cluster {name}")
    try:
        cluster.down(purge=True)
    finally:
        sweep_cluster(name)


def on_cluster(
    text: str, name: str, subnet: str, root: Path | None, keep: bool, say: Say, body: Callable[[Cluster], T]
) -> T:
    """Bring up `text` as cluster `name` on `subnet`, run `body` on it, take it down (also when `up` itself
    failed) unless `keep`."""
    cluster = prepare(text, root, name=name, subnet=subnet)
    try:
        _up(cluster, say, None)
        return body(cluster)
    finally:
        if not keep:
            take_down(cluster, say)


class ScratchRun:
    """The clusters of one run, under one state root; `scratch_run` takes down every one it prepared."""

    def __init__(self, root: Path, say: Say) -> None:
        self.root = root
        self.say = say
        self._teardown = contextlib.ExitStack()

    def prepare(self, text: str, *, name: str | None = None, subnet: str | None = None, source: str = "") -> Cluster:
        """`prepare` under this run's root; the cluster is taken down with the run (unless kept)."""
        cluster = prepare(text, self.root, name=name, subnet=subnet, source=source)
        self._teardown.callback(take_down, cluster)
        return cluster

    def bring_up(self, text: str, *, name: str | None = None, subnet: str | None = None, source: str = "") -> Cluster:
        """`bring_up` under this run's root, said through the run's `say`."""
        cluster = self.prepare(text, name=name, subnet=subnet, source=source)
        _up(cluster, self.say, None)
        return cluster


@contextlib.contextmanager
def scratch_run(prefix: str, root: Path | None, keep: bool, say: Say = _quiet) -> Iterator[ScratchRun]:
    """The frame every bench runner shares: a state root (a new temporary one unless `root` is given), the
    clusters the body prepares there, and at the end, unless `keep`, each taken down (the last one first,
    all of them even when one fails, and also when the body or an `up` failed) and a temporary root removed."""
    state = root or Path(tempfile.mkdtemp(prefix=prefix))
    run = ScratchRun(state, say)
    try:
        yield run
    finally:
        if not keep:
            try:
                run._teardown.close()
            finally:
                if root is None:
                    shutil.rmtree(state, ignore_errors=True)
