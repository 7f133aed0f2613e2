"""The daemons' registry (daemons/registry.py) is the one list the cluster dispatches from."""

from __future__ import annotations

import re

from testkit import REPO
from webinfra.daemons import registry
from webinfra.plan.spec import SERVICE_ORDER
from webinfra.services import supervisor

SRC = REPO / "src" / "webinfra"


def test_one_entry_per_planned_service_in_start_order() -> None:
    assert tuple(d.name for d in registry.DAEMONS) == SERVICE_ORDER


def test_the_cluster_and_scale_do_not_branch_on_service_names() -> None:
    for path in (SRC / "control" / "cluster.py", SRC / "ops" / "scale.py"):
        assert not re.search(r"svc\.name\s*(==|in)", path.read_text()), path


def test_no_module_registers_hooks_on_import() -> None:
    for path in SRC.rglob("*.py"):
        for line in path.read_text().splitlines():
            assert not line.startswith("supervisor.register_hooks("), path
            assert "noqa: F401 (hooks" not in line, path


def test_install_hooks_gives_the_supervisor_each_daemons_hooks() -> None:
    registry.install_hooks()
    for d in registry.DAEMONS:
        assert supervisor.HOOKS[d.name] is d.hooks
