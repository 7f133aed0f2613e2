"""The supervisor's decisions against the `Machine` protocol (a `FakeMachine`): which of started, unchanged,
reloaded (a named signal) or restarted; stop, kill and state. And `NetnsMachine` satisfies the protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_machine import FakeMachine

from webinfra.plan.layout import HostDirs
from webinfra.plan.spec import FileSpec, HostPlan, Probe, ServiceSpec
from webinfra.runtime import Machine
from webinfra.runtime.emulated import NetnsMachine
from webinfra.services import supervisor
from webinfra.services.supervisor import ServiceError, ServiceState


def _plan(tmp_path: Path, reload_signal: str | None) -> tuple[HostPlan, ServiceSpec]:
    dirs = HostDirs(tmp_path / "h", tmp_path / "s")
    cfg = dirs.etc / "d.conf"
    svc = ServiceSpec(
        name="d",
        argv=("d", "-c", str(cfg)),
        probe=Probe("tcp", "127.0.0.1", 7001),
        pidfile=dirs.run / "d.svc.pid",
        log=dirs.log / "d.log",
        configs=(cfg,),
        reload_signal=reload_signal,
    )
    return HostPlan("fake-01", "198.18.189.2", ("web",), dirs, (FileSpec(cfg, "a = 1\n"),), (svc,)), svc


def _changed(plan: HostPlan, text: str) -> HostPlan:
    f = plan.files[0]
    return HostPlan(plan.name, plan.address, plan.roles, plan.dirs, (FileSpec(f.path, text),), plan.services)


def test_start_then_unchanged_then_reload_by_name(tmp_path: Path) -> None:
    m = FakeMachine(ready={7001})
    plan, svc = _plan(tmp_path, "HUP")
    assert supervisor.start(m, plan, svc, timeout=1) == "started"
    assert supervisor.start(m, plan, svc, timeout=1) == "unchanged"
    assert supervisor.start(m, _changed(plan, "a = 2\n"), svc, timeout=1) == "reloaded"
    assert ("signal", "d", "HUP") in m.calls and m.calls.count(("start", "d")) == 1
    assert m.read_file(plan.files[0].path) == "a = 2\n"


def test_a_daemon_that_cannot_reload_is_restarted(tmp_path: Path) -> None:
    m = FakeMachine(ready={7001})
    plan, svc = _plan(tmp_path, None)
    supervisor.start(m, plan, svc, timeout=1)
    first = supervisor.pid_of(m, svc)
    assert supervisor.start(m, _changed(plan, "a = 3\n"), svc, timeout=1) == "restarted"
    assert ("stop", "d") in m.calls and supervisor.pid_of(m, svc) not in (None, first)


def test_state_stop_and_kill(tmp_path: Path) -> None:
    m = FakeMachine()
    plan, svc = _plan(tmp_path, None)
    assert supervisor.state_of(m, svc) is ServiceState.STOPPED
    supervisor.launch(m, plan, svc)
    assert supervisor.state_of(m, svc) is ServiceState.STARTING  # running, probe silent
    m.ready.add(7001)
    assert supervisor.state_of(m, svc) is ServiceState.RUNNING
    assert supervisor.stop(m, plan, svc, kill=True) and ("kill", "d") in m.calls
    assert not supervisor.stop(m, plan, svc)


def test_a_probe_that_never_answers_is_an_error_naming_the_log(tmp_path: Path) -> None:
    plan, svc = _plan(tmp_path, None)
    with pytest.raises(ServiceError, match=r"did not become ready within 0\.2s .*d\.log"):
        supervisor.start(FakeMachine(), plan, svc, timeout=0.2)


def test_both_machines_satisfy_the_protocol(tmp_path: Path) -> None:
    emulated = NetnsMachine("h", "198.18.189.2", "wi-x-h", HostDirs(tmp_path / "h", tmp_path / "s"), "whx00002")
    assert isinstance(emulated, Machine) and isinstance(FakeMachine(), Machine)
    assert emulated.local_argv(["ss", "-tln"]) == ["ip", "netns", "exec", "wi-x-h", "ss", "-tln"]
    assert emulated.services() == [] and not emulated.service_status("d").running
