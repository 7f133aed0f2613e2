"""`up`, `plan` and `down` for a topology whose hosts are servers ([machines] kind = "ssh"): the same
commands, driven through webinfra/servers/ (pyinfra) instead of the emulated runtime."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from webinfra.cli.common import console, print_json, progress_printer
from webinfra.errors import EXIT_CHANGES_PENDING
from webinfra.model import Topology
from webinfra.state import Layout


def up(topo: Topology, topology_text: str, state_dir: Path | None) -> None:
    from webinfra.servers import run

    started = time.monotonic()
    console.print(f"[bold]webinfra up[/] cluster [cyan]{topo.name}[/] ({len(topo.hosts)} servers over SSH)")
    changes = run.up(topo, state_dir, progress_printer())
    # `down -c NAME` and `plan -c NAME` find the servers through the topology last applied.
    Layout.for_cluster(topo.name, state_dir).topology_file.write_text(topology_text)
    total = sum(len(c) for c in changes.values())
    console.print(
        f"[bold green]up[/] in {time.monotonic() - started:.1f}s — "
        + (f"{total} changes" if total else "no changes on any server")
        + f" — site [bold]{topo.site.name}[/] at"
    )
    console.print(topo.site_url)


def plan(topo: Topology, state_dir: Path | None, as_json: bool) -> None:
    from webinfra.servers import run

    pending = run.diff(topo, state_dir, progress_printer(as_json))
    if as_json:
        print_json({"changed": any(pending.values()), "hosts": pending})
    else:
        for host, names in pending.items():
            console.print(f"[bold]{host}[/]: " + ("no changes" if not names else f"{len(names)} changes"))
            for name in names:
                console.print(f"  ~ {name}")
    sys.exit(EXIT_CHANGES_PENDING if any(pending.values()) else 0)


def down(topo: Topology, state_dir: Path | None, purge: bool) -> None:
    from webinfra.servers import teardown

    teardown.down(topo, state_dir, purge, progress_printer())
    console.print(f"[bold]down[/] cluster {topo.name}" + (" (data purged)" if purge else " (data kept)"))
