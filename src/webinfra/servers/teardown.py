"""`down` on servers: every webinfra unit stopped and disabled in reverse start order, on each server at once;
`--purge` also removes webinfra's units, configs, data, logs and releases (Debian's packages stay)."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api import State
from pyinfra.api.host import Host as PyinfraHost
from pyinfra.api.operation import add_op
from pyinfra.context import ctx_state
from pyinfra.operations import files, systemd

from webinfra.model import Topology
from webinfra.plan.spec import HostPlan
from webinfra.servers import units
from webinfra.servers.run import Say, Target, _connected, _each, _run, check_usable
from webinfra.state import SERVER_DATA, SERVER_ETC, SERVER_LOG


def _down_ops(state: State, host: PyinfraHost, plan: HostPlan, become: bool, purge: bool) -> None:
    with ctx_state.use(state):
        for svc in reversed(plan.services):
            add_op(
                state,
                systemd.service,
                name=f"{plan.name}: stop {svc.name}",
                host=host,
                _sudo=become,
                service=units.unit_name(svc.name),
                running=False,
                enabled=False,
            )
        if not purge:
            return
        for svc in plan.services:
            add_op(
                state,
                files.file,
                name=f"{plan.name}: remove unit {svc.name}",
                host=host,
                _sudo=become,
                path=f"{units.UNIT_DIR}/{units.unit_name(svc.name)}",
                present=False,
            )
        for path in (SERVER_DATA, SERVER_ETC, SERVER_LOG, Path(units.RELEASES).parent, units.TMPFILES):
            op = files.file if str(path).endswith(".conf") else files.directory
            name = f"{plan.name}: remove {path}"
            add_op(state, op, name=name, host=host, _sudo=become, path=str(path), present=False)


def down(topo: Topology, state_dir: Path | None, purge: bool, say: Say) -> None:
    """Stop and disable webinfra's services (reverse start order); `purge` also removes its files and data."""
    check_usable(topo)
    stop_servers(topo, state_dir, purge)
    for plan in topo.hosts:
        say(plan.name, "down", "stopped and disabled" + (", data purged" if purge else ", data kept"))


def stop_servers(topo: Topology, state_dir: Path | None, purge: bool, only: frozenset[str] | None = None) -> None:
    """`down`'s operations on every server (of `only`: `webinfra scale` retiring one)."""
    target = Target.of(topo, state_dir, None)
    plans = {plan.name: plan for plan in target.plan.hosts}

    def stop(name: str) -> bool:
        with _connected(topo, name) as (state, host):
            _down_ops(state, host, plans[name], topo.machines.become_of(name), purge)
            _run(state, None)
        return True

    _each(topo, stop, only)
