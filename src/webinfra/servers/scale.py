"""The servers' side of `webinfra scale` (ops/scale_servers.py): which servers a topology change touches, and
`up`'s or `down`'s operations on those servers only (run.py's `apply`, teardown.py's `stop_servers`).

- `touched`: the hosts a topology change gives other files or services (pure: two plans compared), and which
  of their services read a changed file.
- `reachable`: the servers named connected and checked (Debian 12, root or sudo), else one line, exit 1.
- `apply`: `up`'s operations on the servers named: a new server gets its whole `up` (packages, users, units,
  configs, the release venv, its services started); on the others a `quiet` service's changed config is
  written but neither reloaded nor restarted, because the caller applies it the way clients do not see
  (HAProxy's runtime API, an app's drained restart).
- `retire`: a removed server's units stopped and disabled (its data is kept, as by `down` without `--purge`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from webinfra.model import Topology
from webinfra.plan.spec import ClusterPlan
from webinfra.servers import run, teardown
from webinfra.servers.run import Say
from webinfra.state import Layout


def touched(old: ClusterPlan, new: ClusterPlan) -> dict[str, set[str]]:
    """Hosts in both plans whose files or services differ -> the services among them that read a changed
    file (empty for a change that is only, say, the firewall's ruleset)."""
    out: dict[str, set[str]] = {}
    before = {hp.name: hp for hp in old.hosts}
    for hp in new.hosts:
        was = before.get(hp.name)
        if was is None:
            continue
        old_files = {f.path: f.content for f in was.files}
        changed = {f.path for f in hp.files if old_files.get(f.path) != f.content}
        changed |= set(old_files) - {f.path for f in hp.files}
        if changed or was.services != hp.services:
            out[hp.name] = {svc.name for svc in hp.services if changed & set(svc.configs)}
    return out


def _state_dir(local: Layout) -> Path:
    return local.cluster_dir.parent


def reachable(topo: Topology, names: frozenset[str], say: Say) -> None:
    run.check_usable(topo)
    run.check_servers(topo, say, names)


def apply(
    topo: Topology,
    local: Layout,
    names: frozenset[str],
    say: Say,
    *,
    quiet: Mapping[str, frozenset[str]] | None = None,
    hold: frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """`up`'s operations on the servers `names` of `topo`; returns each one's changed operations."""
    return run.apply(topo, _state_dir(local), names, say, quiet=quiet, hold=hold)


def retire(topo: Topology, local: Layout, names: frozenset[str], say: Say) -> None:
    """Stop and disable every webinfra service of the servers `names` (in `topo`, the topology they are in)."""
    teardown.stop_servers(topo, _state_dir(local), False, names)
    for name in sorted(names):
        say(name, "host", "services stopped and disabled (data kept)")
