"""servers/fanout.py: each host's work in a forked process, the outcomes in the hosts' order."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webinfra.servers import ServersError, fanout


def test_every_host_runs_at_once_and_outcomes_keep_the_hosts_order() -> None:
    def work(host: str) -> str:
        time.sleep(1.0)
        return f"{host} on {os.getpid()}"

    started = time.monotonic()
    outcomes = fanout.each_host(["b", "a", "c"], work)
    # Side by side: one after another would take 3 s; the slack is for a loaded 2-core machine (the suite's
    # shared cluster still runs while the unit tests do).
    assert time.monotonic() - started < 2.5
    assert [o.host for o in outcomes] == ["b", "a", "c"]
    pids = {o.value.split(" on ")[1] for o in outcomes if o.value}
    assert len(pids) == 3 and str(os.getpid()) not in pids


def test_a_failure_is_one_line_naming_the_host_and_the_others_still_report() -> None:
    def work(host: str) -> int:
        if host == "web-02":
            raise ServersError("operation 'packages' failed\n(run `webinfra up` again once fixed)")
        if host == "lb-01":
            os._exit(3)  # dies without a result
        return 1

    outcomes = fanout.each_host(["lb-01", "web-01", "web-02"], work)
    assert outcomes[1].value == 1
    with pytest.raises(ServersError) as raised:
        fanout.values(outcomes, ServersError)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("lb-01: its process ended without a result (exit code 3); web-02: operation")


def test_what_the_parent_had_buffered_is_printed_once(tmp_path: Path) -> None:
    script = tmp_path / "fan.py"
    script.write_text(
        "import sys\nfrom webinfra.servers import fanout\n"
        "sys.stdout.write('buffered\\n')\nfanout.each_host(['a', 'b', 'c'], lambda host: 1)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert out == "buffered\n"
