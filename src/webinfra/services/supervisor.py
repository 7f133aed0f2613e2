"""Start, stop, reload and inspect one service (a `ServiceSpec`) on a machine, by its name.

Daemon-specific steps (MariaDB's first-time init, HAProxy's state dump before a reload) are hooks
registered by the daemon modules; this module knows nothing about any particular daemon.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from webinfra.errors import WebinfraError
from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.runtime import CommandError, Machine, ServiceRun, ServiceStatus
from webinfra.runtime.probe import wait_until


class ServiceState(StrEnum):
    RUNNING = "running"  # process alive and its probe answers
    STARTING = "starting"  # process alive, probe not answering (yet)
    STOPPED = "stopped"


class ServiceError(WebinfraError, RuntimeError):
    pass


@dataclass
class Hooks:
    before_start: Callable[[Machine, HostPlan, ServiceSpec], None] | None = None
    before_reload: Callable[[Machine, HostPlan, ServiceSpec], None] | None = None
    before_stop: Callable[[Machine, HostPlan, ServiceSpec], None] | None = None


HOOKS: dict[str, Hooks] = {}


def register_hooks(service: str, hooks: Hooks) -> None:
    HOOKS[service] = hooks


def write_configs(host: Machine, plan: HostPlan, svc: ServiceSpec) -> bool:
    """Write the service's config files; True when any changed."""
    changed = False
    for f in plan.files_of(svc):
        changed |= host.put_file(f.path, f.content, f.mode)
    return changed


def pid_of(host: Machine, svc: ServiceSpec) -> int | None:
    """The running service's main PID as the machine reports it (for display and change detection)."""
    return host.service_status(svc.name).pid


def running(host: Machine, svc: ServiceSpec) -> bool:
    return host.service_status(svc.name).running


def ready(host: Machine, svc: ServiceSpec, timeout: float = 1.0) -> bool:
    """The service's probe answers, tried from the host itself."""
    return host.probe(svc.probe, timeout=timeout)


def state_of(host: Machine, svc: ServiceSpec, known: ServiceStatus | None = None) -> ServiceState:
    """`known`: the service's status when the caller already asked for it."""
    if not (known or host.service_status(svc.name)).running:
        return ServiceState.STOPPED
    return ServiceState.RUNNING if ready(host, svc, timeout=0.5) else ServiceState.STARTING


def start(host: Machine, plan: HostPlan, svc: ServiceSpec, timeout: float = 30.0) -> str:
    """Bring the service to running with its current config. Returns what was done:
    'started', 'reloaded', 'restarted' or 'unchanged' (idempotent)."""
    changed = write_configs(host, plan, svc)
    if running(host, svc):
        if not changed:
            action = "unchanged"
        elif svc.reload_signal:
            hooks = HOOKS.get(svc.name)
            if hooks and hooks.before_reload:
                hooks.before_reload(host, plan, svc)
            host.signal_service(svc.name, svc.reload_signal)
            action = "reloaded"
        else:
            stop(host, plan, svc)
            _spawn(host, plan, svc)
            action = "restarted"
    else:
        _spawn(host, plan, svc)
        action = "started"
    if not wait_until(lambda: ready(host, svc), timeout):
        alive = running(host, svc)
        raise ServiceError(
            f"{plan.name}: {svc.name} did not become ready within {timeout:g}s "
            f"({'still starting' if alive else 'process exited'}; see {svc.log})"
        )
    return action


def launch(host: Machine, plan: HostPlan, svc: ServiceSpec) -> None:
    """Write the service's configs and start it, without waiting for it to be ready: for callers that poll
    a stricter condition themselves (a rolling deploy waits for the new version's /healthz)."""
    write_configs(host, plan, svc)
    _spawn(host, plan, svc)


def _spawn(host: Machine, plan: HostPlan, svc: ServiceSpec) -> None:
    # On the machine, not here: a server's directories are its own (they exist once `up` deployed it).
    host.run(["mkdir", "-p", *(str(d) for d in plan.dirs.all())])
    hooks = HOOKS.get(svc.name)
    if hooks and hooks.before_start:
        hooks.before_start(host, plan, svc)
    try:
        host.start_service(ServiceRun(svc.name, svc.argv, svc.log, svc.env))
    except CommandError:
        raise ServiceError(f"{plan.name}: {svc.name} exited at once; see {svc.log}") from None


def stop(host: Machine, plan: HostPlan, svc: ServiceSpec, *, kill: bool = False) -> bool:
    """Stop the service (SIGKILL at once when `kill`, to emulate a crash). True if it was running."""
    if not kill:
        hooks = HOOKS.get(svc.name)
        if hooks and hooks.before_stop and running(host, svc):
            # Best effort: stopping must not fail because a courtesy step did.
            with contextlib.suppress(CommandError, OSError):
                hooks.before_stop(host, plan, svc)
    return host.stop_service(svc.name, timeout=svc.stop_timeout, kill=kill)
