"""EtcdClient against a real etcd with TLS and auth on (one throwaway member on 127.0.0.1, certificates
from webinfra's PKI code): the agent's user logs in, gets a token, and logs in again when etcd forgets
it (a restart); anonymous, wrong-password and plain-HTTP clients are refused; the user may touch its
prefix only."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from agent_testlib import ETCD, free_port, stop_pid, wait_for

from webinfra.agent.dcs import DcsAuthError, DcsError, DcsUnreachable, EtcdClient, EtcdCredentials, prefix_end
from webinfra.services import pki

PREFIX = "/webinfra/tauth/"
ROOT = EtcdCredentials("root", "root-secret")
AGENT = EtcdCredentials("agent", "agent-secret")


@dataclass
class SecureEtcd:
    base: Path
    port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.base / "ca.pem"

    def make_certs(self) -> None:
        now = dt.datetime.now(dt.UTC)
        ca_key, ca = pki.new_ca("tauth", now)
        key, cert = pki.issue(ca_key, ca, pki.CertRequest("e", "e", ("localhost",), ("127.0.0.1",)), now)
        self.ca.write_bytes(pki.pem_cert(ca))
        (self.base / "e.crt").write_bytes(pki.pem_cert(cert))
        (self.base / "e.key").write_bytes(pki.pem_key(key))

    def start(self) -> None:
        assert ETCD is not None
        peer = f"https://127.0.0.1:{self.peer_port}"
        crt, key = str(self.base / "e.crt"), str(self.base / "e.key")
        log = (self.base / "etcd.log").open("ab")
        self.proc = subprocess.Popen(
            [
                ETCD,
                "--name=default",
                f"--data-dir={self.base / 'data'}",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                f"--cert-file={crt}",
                f"--key-file={key}",
                f"--peer-cert-file={crt}",
                f"--peer-key-file={key}",
                f"--peer-trusted-ca-file={self.ca}",
                "--peer-client-cert-auth",
                "--bcrypt-cost=4",
                "--logger=zap",
                "--log-level=warn",
            ],
            stdout=log,
            stderr=log,
        )

        def healthy() -> bool:
            try:
                return (
                    httpx.get(
                        self.url + "/health", verify=ssl.create_default_context(cafile=self.ca), timeout=0.5
                    ).json()["health"]
                    == "true"
                )
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        wait_for("etcd /health over TLS", healthy, 20)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
            self.proc = None


@pytest.fixture(scope="module")
def etcd() -> Iterator[SecureEtcd]:
    if ETCD is None:
        pytest.skip("etcd is not installed (Debian: etcd-server)")
    server = SecureEtcd(Path(tempfile.mkdtemp(prefix="webinfra-agent-etcd-auth-")))
    try:
        server.make_certs()
        server.start()
        _bootstrap(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def _bootstrap(server: SecureEtcd) -> None:
    """What `webinfra up` does (control/etcd_access.py), by hand: root, the agent role and user, auth on."""
    c = EtcdClient([server.url], timeout=5, ca_file=server.ca)
    c.call("/v3/auth/user/add", {"name": ROOT.user, "password": ROOT.password})
    c.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
    c.call("/v3/auth/role/add", {"name": "agent"})
    perm = {"permType": "READWRITE", "key": _b64(PREFIX), "range_end": prefix_end(PREFIX)}
    c.call("/v3/auth/role/grant", {"name": "agent", "perm": perm})
    c.call("/v3/auth/user/add", {"name": AGENT.user, "password": AGENT.password})
    c.call("/v3/auth/user/grant", {"user": AGENT.user, "role": "agent"})
    c.call("/v3/auth/enable", {})
    c.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def agent_client(etcd: SecureEtcd, creds: EtcdCredentials = AGENT) -> EtcdClient:
    return EtcdClient([etcd.url], timeout=2, ca_file=etcd.ca, credentials=creds)


def test_the_agent_user_reads_and_writes_its_prefix(etcd: SecureEtcd) -> None:
    c = agent_client(etcd)
    lease = c.grant(5)
    c.put(PREFIX + "leader", "me", lease=lease)
    assert c.get(PREFIX + "leader") is not None
    assert c.keepalive(lease) > 0
    assert [kv.key for kv in c.get_prefix(PREFIX)] == [PREFIX + "leader"]
    assert c.revoke(lease)
    assert c.get(PREFIX + "leader") is None


def test_the_agent_user_cannot_touch_anything_else(etcd: SecureEtcd) -> None:
    c = agent_client(etcd)
    for attempt in (
        lambda: c.put("/webinfra/other/leader", "x"),
        lambda: c.get("/webinfra/other/leader"),
        lambda: c.get_prefix("/webinfra/"),  # the parent of its prefix: other clusters' keys
        lambda: c.call("/v3/auth/user/add", {"name": "evil", "password": "x"}),
        lambda: c.call("/v3/auth/disable", {}),
    ):
        with pytest.raises(DcsError) as refused:
            attempt()
        assert refused.value.code == 7, refused.value  # PermissionDenied


def test_anonymous_and_wrong_users_are_refused(etcd: SecureEtcd) -> None:
    anonymous = EtcdClient([etcd.url], timeout=2, ca_file=etcd.ca)
    with pytest.raises(DcsError, match="user name is empty"):
        anonymous.get(PREFIX + "leader")
    for creds in (EtcdCredentials("agent", "wrong"), EtcdCredentials("nobody", "x"), EtcdCredentials("root", "")):
        with pytest.raises(DcsAuthError):
            agent_client(etcd, creds).get(PREFIX + "leader")


def test_plain_http_and_an_unknown_ca_are_refused(etcd: SecureEtcd) -> None:
    plain = EtcdClient([etcd.url.replace("https://", "http://")], timeout=2, credentials=AGENT)
    with pytest.raises(DcsUnreachable):
        plain.get(PREFIX + "leader")
    system_cas = EtcdClient([etcd.url], timeout=2, credentials=AGENT)  # not our CA: the server is not trusted
    with pytest.raises(DcsUnreachable):
        system_cas.get(PREFIX + "leader")


def test_the_token_is_renewed_when_etcd_forgets_it(etcd: SecureEtcd) -> None:
    c = agent_client(etcd)
    c.put(PREFIX + "k", "1")
    first = c._token
    assert first
    etcd.stop()  # simple tokens live in memory: a restarted member no longer knows ours
    etcd.start()
    wait_for("the agent's client working again", lambda: _works(c), 20)
    assert c._token and c._token != first
    assert c.get(PREFIX + "k") is not None


def test_an_invalid_token_is_replaced_once(etcd: SecureEtcd) -> None:
    c = agent_client(etcd)
    c.put(PREFIX + "k", "1")
    c._token = "forged.1"
    assert c.get(PREFIX + "k") is not None  # re-authenticated, then the call retried
    assert c._token != "forged.1"


def _works(c: EtcdClient) -> bool:
    try:
        c.put(PREFIX + "k", "2")
    except (DcsUnreachable, DcsError):
        return False
    return True
