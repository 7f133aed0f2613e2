"""Start, stop, reload and inspect one service (a `ServiceSpec`) on a host, tracked by PID file.

Daemon-specific steps (MariaDB's first-time init, HAProxy's state dump before a reload) are hooks
registered by the daemon modules; this module knows nothing about any particular daemon.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from webinfra.errors import WebinfraError
from webinfra.hosts.base import CommandError, Host
from webinfra.hosts.process import read_pidfile, running_pid, stop_tracked, track, write_pidfile
from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.services.probe import probe_once, wait_until


class ServiceState(StrEnum):
    RUNNING = "running"  # process alive and its probe answers
    STARTING = "starting"  # process alive, probe not answering (yet)
    STOPPED = "stopped"


class ServiceError(WebinfraError, RuntimeError):
    pass


@dataclass
class Hooks:
    before_start: Callable[[Host, HostPlan, ServiceSpec], None] | None = None
    before_reload: Callable[[Host, HostPlan, ServiceSpec], None] | None = None
    before_stop: Callable[[Host, HostPlan, ServiceSpec], None] | None = None


HOOKS: dict[str, Hooks] = {}


def register_hooks(service: str, hooks: Hooks) -> None:
    HOOKS[service] = hooks


def write_configs(host: Host, plan: HostPlan, svc: ServiceSpec) -> bool:
    """Write the service's config files; True when any changed."""
    changed = False
    for f in plan.files_of(svc):
        changed |= host.write_file(f.path, f.content, f.mode)
    return changed


def pid_of(svc: ServiceSpec) -> int | None:
    return running_pid(svc.pidfile)


def ready(host: Host, svc: ServiceSpec, timeout: float = 1.0) -> bool:
    """The service's probe answers, tried from the host itself."""
    try:
        return host.call(lambda: probe_once(svc.probe, timeout=timeout))
    except CommandError:
        return False


def state_of(host: Host, svc: ServiceSpec) -> ServiceState:
    if pid_of(svc) is None:
        return ServiceState.STOPPED
    return ServiceState.RUNNING if ready(host, svc, timeout=0.5) else ServiceState.STARTING


def start(host: Host, plan: HostPlan, svc: ServiceSpec, timeout: float = 30.0) -> str:
    """Bring the service to running with its current config. Returns what was done:
    'started', 'reloaded', 'restarted' or 'unchanged' (idempotent)."""
    changed = write_configs(host, plan, svc)
    if pid_of(svc) is not None:
        if not changed:
            action = "unchanged"
        elif svc.reload_signal:
            hooks = HOOKS.get(svc.name)
            if hooks and hooks.before_reload:
                hooks.before_reload(host, plan, svc)
            proc = read_pidfile(svc.pidfile)
            assert proc is not None
            os.kill(proc.pid, getattr(signal, f"SIG{svc.reload_signal}"))
            action = "reloaded"
        else:
            stop(host, plan, svc)
            _spawn(host, plan, svc)
            action = "restarted"
    else:
        _spawn(host, plan, svc)
        action = "started"
    if not wait_until(lambda: ready(host, svc), timeout):
        alive = pid_of(svc) is not None
        raise ServiceError(
            f"{plan.name}: {svc.name} did not become ready within {timeout:g}s "
            f"({'still starting' if alive else 'process exited'}; see {svc.log})"
        )
    return action


def launch(host: Host, plan: HostPlan, svc: ServiceSpec) -> None:
    """Write the service's configs and start it, without waiting for it to be ready: for callers that poll
    a stricter condition themselves (a rolling deploy waits for the new version's /healthz)."""
    write_configs(host, plan, svc)
    _spawn(host, plan, svc)


def _spawn(host: Host, plan: HostPlan, svc: ServiceSpec) -> None:
    for d in plan.dirs.all():
        d.mkdir(parents=True, exist_ok=True)
    hooks = HOOKS.get(svc.name)
    if hooks and hooks.before_start:
        hooks.before_start(host, plan, svc)
    pid = host.spawn(svc.argv, log_path=svc.log, env=dict(svc.env))
    try:
        write_pidfile(svc.pidfile, track(pid, svc.argv))
    except ProcessLookupError:
        raise ServiceError(f"{plan.name}: {svc.name} exited at once; see {svc.log}") from None


def stop(host: Host, plan: HostPlan, svc: ServiceSpec, *, kill: bool = False) -> bool:
    """Stop the service (SIGKILL at once when `kill`, to emulate a crash). True if it was running."""
    proc = read_pidfile(svc.pidfile)
    if not kill:
        hooks = HOOKS.get(svc.name)
        if hooks and hooks.before_stop and pid_of(svc) is not None:
            # Best effort: stopping must not fail because a courtesy step did.
            with contextlib.suppress(CommandError, OSError):
                hooks.before_stop(host, plan, svc)
    was_running = stop_tracked(proc, timeout=svc.stop_timeout, sig=signal.SIGKILL if kill else signal.SIGTERM)
    svc.pidfile.unlink(missing_ok=True)
    return was_running
