"""webinfra.state: every path on disk is named there, and only there."""

from __future__ import annotations

import re
from pathlib import Path

from webinfra.state import Layout

SRC = Path(__file__).resolve().parents[2] / "src" / "webinfra"
NAMES = (
    "weights.json",
    "faults.json",
    "deploy.json",
    "db-bootstrapped",
    "operation.lock",
    "watcher.lock",
    "dashboard.pid",
    "dashboard.json",
    "events.jsonl",
    "network.json",
)


def test_the_cluster_files_live_in_the_cluster_directory(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "c1")
    files = [
        layout.weights_file,
        layout.faults_file,
        layout.deploy_file,
        layout.db_bootstrapped_marker,
        layout.operation_lock,
        layout.watcher_lock,
        layout.dashboard_pidfile,
        layout.dashboard_info,
        layout.events_file,
        layout.network_file,
        layout.topology_file,
    ]
    assert {f.parent for f in files} == {tmp_path / "c1"}
    assert len({f.name for f in files}) == len(files)


def test_no_module_but_state_spells_a_cluster_file_name() -> None:
    """A path written as a string literal elsewhere is a second definition (docstrings may mention it)."""
    names = "|".join(re.escape(n) for n in NAMES)
    pattern = re.compile(r"""[/(]\s*["'](""" + names + r""")["']""")
    offenders = [
        f"{path.relative_to(SRC)}: {m.group(1)}"
        for path in SRC.rglob("*.py")
        if path.name != "state.py" and "testbed" not in path.parts  # a lab keeps its own network.json
        for m in pattern.finditer(path.read_text())
    ]
    assert offenders == []
