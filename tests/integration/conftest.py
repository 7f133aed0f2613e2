"""Integration fixtures: real clusters in network namespaces.

`shared_cluster` (session scope) is one seed-design cluster that read-mostly tests share; a test that
changes it puts it back. Destructive tests get their own cluster from `make_cluster`. Every cluster is
taken down with --purge at the end and the test fails if anything it created is left behind.
Each cluster has its own name and subnet (198.18.N.0/24), so they never collide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clusterkit import bring_up, seed_topology, take_down

from webinfra.control.cluster import Cluster
from webinfra.state import state_root
from webinfra.testbed.lab import IMAGES_ENV


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = bring_up(seed_topology("tshared", 10), tmp_path_factory.mktemp("state-shared"))
    yield cluster
    take_down(cluster)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[[str], Cluster]]:
    made: list[Cluster] = []

    def make(toml: str) -> Cluster:
        cluster = bring_up(toml, tmp_path / f"state{len(made)}")
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        take_down(cluster)


@pytest.fixture(scope="session")
def lab_images() -> Path:
    """Where lab tests cache the Debian image: built once per test run (in the session's state directory,
    removed at the end), or kept across runs in $WEBINFRA_LAB_IMAGES if set."""
    return Path(os.environ.get(IMAGES_ENV) or state_root() / "_lab" / "images")
