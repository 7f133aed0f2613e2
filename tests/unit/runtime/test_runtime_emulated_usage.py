"""What `NetnsMachine.usage` reads: a process tree's memory and CPU (runtime/emulated/usage.py)."""

from __future__ import annotations

import os
import subprocess

from webinfra.runtime.emulated.usage import cpu_seconds, rss_kib, tree_pids


def test_tree_of_a_process_holds_its_children_with_their_memory_and_cpu() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in tree_pids(os.getpid()) and tree_pids(child.pid) == [child.pid]
        assert rss_kib(os.getpid()) > rss_kib(child.pid) > 0
        assert cpu_seconds(os.getpid()) > 0
    finally:
        child.kill()
        child.wait()
    assert tree_pids(child.pid) == [] and rss_kib(child.pid) == 0 and cpu_seconds(child.pid) == 0.0
