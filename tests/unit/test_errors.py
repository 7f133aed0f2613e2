"""webinfra.errors: one base carrying the exit code, mapped in one place for the CLI and the dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from webinfra import errors
from webinfra.control.etcd_access import EtcdAuthError
from webinfra.daemons.haproxy import RuntimeApiError
from webinfra.model import TopologyError
from webinfra.model.edit import EditError
from webinfra.observe.prom import PrometheusError
from webinfra.runtime import CommandError, FaultError, MachineUnreachable
from webinfra.runtime.emulated.hostd import HostdError
from webinfra.services.releases import CodeBaseError
from webinfra.services.supervisor import ServiceError
from webinfra.testbed import LabError, LabUsageError

SRC = Path(__file__).resolve().parents[2] / "src" / "webinfra"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (TopologyError("t.toml", "hosts", 1, "bad"), 2),
        (errors.UsageError("no such host"), 2),
        (EditError("host exists"), 2),
        (CodeBaseError("no app.py"), 2),
        (LabUsageError("bad"), 2),
        (errors.ClusterError("failed"), 1),
        (CommandError("h", ["false"], 1, "boom"), 1),
        (ServiceError("x"), 1),
        (HostdError("x"), 1),
        (MachineUnreachable("x"), 1),
        (FaultError("x"), 1),
        (RuntimeApiError("x"), 1),
        (EtcdAuthError("x"), 1),
        (PrometheusError("x"), 1),
        (LabError("x"), 1),
        (OSError("x"), 1),
    ],
)
def test_each_error_carries_its_exit_code(exc: BaseException, code: int) -> None:
    assert isinstance(exc, errors.EXPECTED)
    assert errors.exit_code_of(exc) == code
    assert errors.label_of(exc) == ("error" if code == 2 else "failed")


def test_older_bases_kept_for_callers_that_catch_them() -> None:
    assert isinstance(TopologyError("t", "f", 1, "m"), ValueError)
    assert isinstance(errors.UsageError("m"), errors.ClusterError)
    assert isinstance(CommandError("h", ["x"], 1, ""), RuntimeError)


def test_a_bug_is_not_expected() -> None:
    assert not isinstance(KeyError("x"), errors.EXPECTED)


def test_the_caught_types_are_listed_once() -> None:
    """The CLI and the dashboard catch `errors.EXPECTED`, not a list of their own."""
    for path in [*(SRC / "cli").glob("*.py"), SRC / "dashboard" / "app.py"]:
        text = path.read_text()
        assert "except (ClusterError" not in text and "ServiceError, CommandError" not in text, path
