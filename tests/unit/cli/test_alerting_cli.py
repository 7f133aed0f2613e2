"""`webinfra silence` and Alertmanager's API values: matchers and durations parsed from the command line, bad
input refused with one line and exit code 2 before anything is sent, and the silence table (pure pieces)."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from rich.console import Console

from webinfra.cli.alerting import alert_state, silence_rows
from webinfra.cli.main import cli
from webinfra.errors import UsageError
from webinfra.observe.alertmanager import label_key, matcher_text, parse_duration, parse_matcher


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alertname=InstanceDown", {"name": "alertname", "value": "InstanceDown", "isRegex": False, "isEqual": True}),
        ("host!=web-01", {"name": "host", "value": "web-01", "isRegex": False, "isEqual": False}),
        ('job=~"site|nginx"', {"name": "job", "value": "site|nginx", "isRegex": True, "isEqual": True}),
        ("job!~node", {"name": "job", "value": "node", "isRegex": True, "isEqual": False}),
        ("host!=", {"name": "host", "value": "", "isRegex": False, "isEqual": False}),
    ],
)
def test_matchers(text: str, expected: dict[str, object]) -> None:
    assert parse_matcher(text) == expected
    assert matcher_text(expected).replace('"', "") == text.replace('"', "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("InstanceDown", "write NAME=VALUE"),
        ("1host=x", "write NAME=VALUE"),
        ("host=", "an empty value would match every alert"),
        ("job=~(", "bad regular expression"),
    ],
)
def test_bad_matchers(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_matcher(text)


def test_durations() -> None:
    assert parse_duration("90m") == dt.timedelta(minutes=90)
    assert parse_duration("1d12h") == dt.timedelta(days=1, hours=12)
    for bad in ("", "2 hours", "30s", "31d", "h"):
        with pytest.raises(UsageError, match="duration"):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["silence", "add", "no-operator"], "matcher 'no-operator'"),
        (["silence", "add", "host=web-01", "--duration", "45d"], "a silence lasts between 1m and 30d"),
        (["silence", "expire", "1234"], "silence id '1234'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(cli, [*argv[:2], "--state-dir", str(tmp_path), *argv[2:]])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # nothing created


def test_alertmanager_status_is_matched_without_the_cluster_label() -> None:
    assert label_key({"alertname": "X", "host": "a", "cluster": "c"}) == (("alertname", "X"), ("host", "a"))
    assert alert_state({"state": "firing", "alertmanager": {"silencedBy": ["id"], "inhibitedBy": []}}) == (
        "[blue]silenced[/]"
    )
    assert alert_state({"state": "firing", "alertmanager": {"silencedBy": [], "inhibitedBy": ["x"]}}) == (
        "[blue]inhibited[/]"
    )
    assert alert_state({"state": "pending"}) == "[yellow]pending[/]"


def test_silence_ids_are_never_wrapped() -> None:
    silence = {
        "id": "9bfb22b8-42f0-496d-95c9-854219dcd9c6",
        "status": {"state": "active"},
        "matchers": [{"name": "host", "value": "web-02", "isRegex": False, "isEqual": True}],
        "endsAt": "2026-12-05T10:00:00.000Z",
        "createdBy": "root",
        "comment": "a long comment that has to wrap somewhere in a narrow terminal",
    }
    console = Console(width=80, record=True)
    console.print(silence_rows([silence]))
    assert silence["id"] in console.export_text()
