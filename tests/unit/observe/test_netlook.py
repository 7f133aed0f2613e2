"""The watcher's look on servers (observe/netlook.py): backends, the VIP holder and the primary read from what
the other servers publish to the monitoring host, and a journal record as `logs --follow` prints it."""

from __future__ import annotations

from testkit import EXAMPLES
from webinfra.model import load_topology
from webinfra.observe.logs import journal_line
from webinfra.observe.netlook import backend_states, look_over_network, master_since, samples, vip_holder_of

HAPROXY = """# HELP haproxy_server_status Current status of the service.
# TYPE haproxy_server_status gauge
haproxy_server_status{proxy="site",server="web-01",state="DOWN"} 0
haproxy_server_status{proxy="site",server="web-01",state="UP"} 1
haproxy_server_status{proxy="site",server="web-02",state="DOWN"} 1
haproxy_server_status{proxy="site",server="web-02",state="UP"} 0
haproxy_server_status{proxy="site_writes",server="web-01",state="MAINT"} 1
"""
NODE_MASTER = (
    'keepalived_vrrp_state{state="BACKUP",vrrp_instance="site"} 0\n'
    'keepalived_vrrp_state{state="MASTER",vrrp_instance="site"} 1\n'
    'keepalived_vrrp_state_change_timestamp_seconds{vrrp_instance="site"} 1.765e+09\n'
)


def test_samples_and_backend_states_from_haproxy_s_exporter() -> None:
    assert len(samples(HAPROXY, "haproxy_server_status")) == 5
    assert backend_states(HAPROXY) == {"web-01": "up", "web-02": "down"}
    assert master_since(NODE_MASTER) == 1765000000 and master_since(NODE_MASTER.replace("} 1", "} 0")) is None
    # A killed keepalived's file still says MASTER: the one that became MASTER last holds the VIP.
    assert vip_holder_of({"lb-01": 100.0, "lb-02": 200.0}) == "lb-02" and vip_holder_of({}) is None


def test_look_over_network_asks_each_lb_and_agent() -> None:
    topo = load_topology(EXAMPLES / "servers.toml")
    pages = {
        "http://10.20.0.10:9100/metrics": (200, NODE_MASTER.replace("} 1", "} 2")),  # lb-01: not MASTER
        "http://10.20.0.11:9100/metrics": (200, NODE_MASTER),
        "http://10.20.0.11:8405/metrics": (200, HAPROXY),
        "http://10.20.0.13:8008/primary": (200, "primary"),
        "http://10.20.0.12:8008/primary": (503, "replica"),
    }
    asked: list[str] = []

    def get(url: str) -> tuple[int, str] | None:
        asked.append(url)
        return pages.get(url)

    view = look_over_network(topo, get)
    assert view.vip_holder == "lb-02" and view.primary == "web-02"
    assert view.backends == {"web-01": "up", "web-02": "down"}
    assert not any(u.startswith("http://10.20.0.10:8405") for u in asked)  # the VIP holder's HAProxy first


def test_a_journal_record_as_logs_follow_prints_it() -> None:
    record = {"_SYSTEMD_UNIT": "webinfra-nginx.service", "MESSAGE": "ready", "__REALTIME_TIMESTAMP": "1765000000000000"}
    assert journal_line(record) == ("webinfra-nginx.service", "2025-12-06T05:46:40+00:00 ready")
    started = {"_COMM": "systemd", "_SYSTEMD_UNIT": "init.scope", "UNIT": "webinfra-app.service", "MESSAGE": "Started"}
    assert journal_line(started) == ("webinfra-app.service", "Started")
    assert journal_line({"_SYSTEMD_UNIT": "x.service", "MESSAGE": [104, 105]}) == ("x.service", "hi")


def test_the_server_watcher_records_what_its_look_sees_in_its_own_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from webinfra.control import events
    from webinfra.observe.monitor import MonitorService, ServerSide, View
    from webinfra.state import Layout

    topo = load_topology(EXAMPLES / "servers.toml")
    views = iter([View(vip_holder="lb-01", primary="web-01"), View(vip_holder="lb-02", primary="web-01")])
    layout = Layout(tmp_path)
    service = MonitorService(ServerSide(topo, layout), looker=lambda: next(views))
    service.tick()
    service.tick()
    assert [(e["kind"], e["host"]) for e in events.read(layout.events_file)] == [("vip_moved", "lb-02")]
    assert service.vip_holder.labels("lb-02")._value.get() == 1
