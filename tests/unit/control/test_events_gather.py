"""control/events.py `gather`: on servers, every server's own event log merged with this machine's, in time
order; a server that cannot be read adds nothing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from webinfra.control import events
from webinfra.errors import WebinfraError
from webinfra.state import ServerLayout


def line(ts: str, source: str, host: str, kind: str) -> str:
    return json.dumps({"ts": ts, "source": source, "host": host, "kind": kind, "detail": ""}) + "\n"


class Server:
    def __init__(self, text: str | None, fails: bool = False) -> None:
        self.text, self.fails = text, fails
        self.asked: list[Path] = []

    def read_file(self, path: Path) -> str | None:
        self.asked.append(path)
        if self.fails:
            raise WebinfraError("ssh: connect to host 10.20.0.13 port 22: No route to host")
        return self.text


def cluster(tmp_path: Path, servers: bool, hosts: dict[str, Server]) -> Any:
    local = tmp_path / "events.jsonl"
    local.write_text(line("2026-12-06T05:00:01.000Z", "webinfra", "web-01", "switchover"))
    layout = SimpleNamespace(events_file=local)
    topology = SimpleNamespace(hosts=[SimpleNamespace(name=n) for n in hosts])
    return SimpleNamespace(layout=layout, servers=servers, topology=topology, hosts=hosts)


def test_servers_logs_are_merged_in_time_order(tmp_path: Path) -> None:
    hosts = {
        "web-01": Server(line("2026-12-06T05:00:02.500Z", "agent", "web-01", "demoted")),
        "web-02": Server(line("2026-12-06T05:00:02.100Z", "agent", "web-02", "promoted") + '{"ts": "2026-12'),
        "lb-01": Server(None),  # no log on this server
        "etcd-01": Server(line("2026-12-06T04:59:59.000Z", "monitor", "lb-02", "vip_moved")),
        "web-03": Server("", fails=True),
    }
    found = events.gather(cluster(tmp_path, True, hosts))
    assert [(e["source"], e["kind"]) for e in found] == [
        ("monitor", "vip_moved"),
        ("webinfra", "switchover"),
        ("agent", "promoted"),
        ("agent", "demoted"),
    ]
    assert {p for s in hosts.values() for p in s.asked} == {ServerLayout().events_file}


def test_emulated_hosts_share_one_file_and_nothing_is_asked(tmp_path: Path) -> None:
    hosts = {"web-01": Server(line("2026-12-06T05:00:02.500Z", "agent", "web-01", "demoted"))}
    found = events.gather(cluster(tmp_path, False, hosts))
    assert [e["kind"] for e in found] == ["switchover"] and hosts["web-01"].asked == []
