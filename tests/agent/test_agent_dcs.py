"""EtcdClient against a real etcd (one throwaway member): leases, txn create-if-absent, range/put/delete,
and a dead endpoint giving a fast, clean DcsUnreachable."""

from __future__ import annotations

import threading
import time

import pytest
from agent_testlib import EtcdServer, free_port, wait_for

from webinfra.agent.dcs import DcsUnreachable, EtcdClient, Keys
from webinfra.agent.records import cluster_view, leader_value


@pytest.fixture
def client(etcd_server: EtcdServer) -> EtcdClient:
    return EtcdClient([etcd_server.url])


def test_put_get_prefix_delete(client: EtcdClient, prefix: str) -> None:
    client.put(prefix + "a", "1")
    client.put(prefix + "b/c", b"\x00\xffbinary")
    client.put(prefix[:-1] + "-outside", "x")  # shares the prefix's text but not its "/"
    kvs = client.get_prefix(prefix)
    assert [(kv.key, kv.value) for kv in kvs] == [(prefix + "a", b"1"), (prefix + "b/c", b"\x00\xffbinary")]
    got = client.get(prefix + "a")
    assert got is not None and got.value == b"1" and got.create_revision > 0
    assert client.delete(prefix + "a") == 1
    assert client.delete(prefix + "a") == 0
    assert client.get(prefix + "a") is None


def test_create_if_absent_second_acquirer_loses(client: EtcdClient, prefix: str) -> None:
    key = prefix + "leader"
    first, second = client.grant(5), client.grant(5)
    assert client.create(key, "web-01", lease=first) is True
    assert client.create(key, "web-02", lease=second) is False
    kv = client.get(key)
    assert kv is not None and kv.value == b"web-01" and kv.lease == first


def test_replace_on_mod_revision(client: EtcdClient, prefix: str) -> None:
    key = prefix + "history"
    assert client.replace(key, "[1]", 0) is True  # 0: only if absent
    kv = client.get(key)
    assert kv is not None
    assert client.replace(key, "[1, 2]", kv.mod_revision) is True
    assert client.replace(key, "[1, 3]", kv.mod_revision) is False  # someone wrote in between
    kv = client.get(key)
    assert kv is not None and kv.value == b"[1, 2]"
    assert client.delete_if(key, kv.mod_revision + 1) is False
    assert client.delete_if(key, kv.mod_revision) is True


def test_lease_keepalive_then_expiry(client: EtcdClient, prefix: str) -> None:
    key = prefix + "leased"
    lease = client.grant(2)
    client.put(key, "x", lease=lease)
    # Kept alive past its TTL: the key stays.
    for _ in range(6):
        assert client.keepalive(lease) == 2
        time.sleep(0.5)
    assert client.get(key) is not None
    last = time.monotonic()
    # Keepalives stop: the key goes within TTL + etcd's 0.5 s expiry sweep (+ slack), not before ~TTL.
    took = wait_for(lambda: client.get(key) is None, 5.0, "leased key to expire", interval=0.05)
    gone_after = time.monotonic() - last
    print(f"lease of TTL 2 expired {gone_after:.2f}s after the last keepalive")
    assert 1.0 <= gone_after <= 3.5, took
    assert client.keepalive(lease) == 0
    assert client.time_to_live(lease) == -1
    assert client.revoke(lease) is False


def test_revoke_deletes_attached_keys_at_once(client: EtcdClient, prefix: str) -> None:
    lease = client.grant(30)
    client.put(prefix + "leader", "me", lease=lease)
    assert 0 < client.time_to_live(lease) <= 30
    assert client.revoke(lease) is True
    assert client.get(prefix + "leader") is None


def test_unreachable_endpoint_is_fast_and_clean() -> None:
    dead = EtcdClient([f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"])
    start = time.monotonic()
    with pytest.raises(DcsUnreachable):
        dead.get("/x")
    assert time.monotonic() - start < 1.0


def test_deadline_bounds_every_call() -> None:
    dead = EtcdClient([f"http://127.0.0.1:{free_port()}"], timeout=0.5)
    dead.set_deadline(time.monotonic() - 1)
    start = time.monotonic()
    with pytest.raises(DcsUnreachable, match="deadline"):
        dead.keepalive(1)
    assert time.monotonic() - start < 0.05


def test_dead_endpoint_skipped_then_live_one_preferred(etcd_server: EtcdServer, prefix: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = EtcdClient([dead, etcd_server.url])
    client.put(prefix + "k", "v")
    assert client.preferred_endpoint == etcd_server.url
    start = time.monotonic()
    for _ in range(20):
        client.get(prefix + "k")
    assert time.monotonic() - start < 1.0  # the dead one is not tried again while the live one answers


def test_cluster_view_from_keys(client: EtcdClient, prefix: str) -> None:
    keys = Keys(prefix)
    lease = client.grant(5)
    client.put(keys.leader, leader_value("web-01", "t", "0-1-5"), lease=lease)
    client.put(keys.initialized, "web-01")
    client.put(keys.member("web-02"), '{"role": "replica", "gtid_seq": 5, "healthy": true, "lag_seconds": 0}')
    client.put(keys.member("web-03"), "not json")
    client.put(keys.switchover, '{"to": null, "requested_at": "t"}')
    client.put(keys.optime, '{"leader": "web-01", "sync": false, "gtid": "0-1-5", "gtid_seq": 5, "at": "t"}')
    view = cluster_view(client.get_prefix(prefix), keys)
    assert view.leader is not None and view.leader.name == "web-01" and view.leader.lease == lease
    assert view.leader.promoted_at_gtid == "0-1-5"
    assert view.initialized == "web-01"
    assert list(view.members) == ["web-02"] and view.members["web-02"].gtid_seq == 5
    assert view.switchover is not None and view.switchover.to is None
    assert view.optime is not None and (view.optime.leader, view.optime.sync, view.optime.gtid_seq) == (
        "web-01",
        False,
        5,
    )
    assert view.optime.mod_revision > 0


def test_watch_calls_back_when_the_key_changes(client: EtcdClient, prefix: str) -> None:
    """The leader-key watch (loop.py wakes on it): a put, and the delete an expired or revoked lease makes."""
    key = prefix + "leader"
    changes: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        watcher = EtcdClient(client.endpoints)
        while not stop.is_set():
            watcher.watch(key, lambda: changes.append(time.monotonic()), stop, idle=1.0)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        # A change made before the watch exists is not reported: put until one is.
        wait_for(lambda: client.put(key, "probe") or bool(changes), 5.0, "the watch to be live", interval=0.1)
        lease = client.grant(5)
        client.put(key, "web-01", lease=lease)
        seen = len(changes)
        revoked = time.monotonic()
        client.revoke(lease)  # deletes the key: what a replica waits for
        wait_for(lambda: len(changes) > seen and changes[-1] > revoked, 5.0, "the revoke's delete to be reported")
        assert changes[-1] - revoked < 1.0, changes
    finally:
        stop.set()
        client.put(key, "wake the stream so the thread sees stop")
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_watch_of_a_dead_endpoint_is_unreachable_fast() -> None:
    dead = EtcdClient([f"http://127.0.0.1:{free_port()}"], timeout=0.3)
    started = time.monotonic()
    with pytest.raises(DcsUnreachable):
        dead.watch("x", lambda: None, threading.Event())
    assert time.monotonic() - started < 2.0
