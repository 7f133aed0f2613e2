"""etcd on hosts with the `etcd` role (the hardened design's DCS): its command line, TLS and auth settings.
Pure (what `up` waits for after its phase: daemons/etcd.py; webinfra's client: control/etcd_access.py)."""

from __future__ import annotations

from webinfra.model import Role, Topology
from webinfra.plan.render import NOTHING, Contribution, HostContext
from webinfra.plan.spec import Probe, ServiceSpec
from webinfra.state import HostDirs, Layout

# etcd auth: the root user's password (management side only) and the agents' user, whose role may read
# and write the cluster's key prefix and nothing else. Both 0600 files in the cluster's secrets.
ETCD_ROOT_SECRET = "etcd-root"


ETCD_AGENT_SECRET = "etcd-agent"


ETCD_AGENT_USER = "agent"  # also its role's name


# The passwords are 192-bit random secrets, so bcrypt's work factor adds no strength; the lowest cost keeps
# each /v3/auth/authenticate (a raft round on every member) cheap during a failover.
ETCD_BCRYPT_COST = 4


# Go's names for the Mozilla "intermediate" TLS 1.2 suites that fit our ECDSA keys (TLS 1.3 is not affected).
ETCD_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,"
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
)


def etcd_secured(topo: Topology) -> bool:
    """etcd speaks TLS (clients and peers) and has auth on: with [tls] enabled, which gives us the CA."""
    return topo.tls.enabled


def etcd_scheme(topo: Topology) -> str:
    return "https" if etcd_secured(topo) else "http"


def etcd_endpoints(topo: Topology) -> list[str]:
    scheme = etcd_scheme(topo)
    return [f"{scheme}://{topo.address_of(h.name)}:{topo.etcd.client_port}" for h in topo.with_role(Role.ETCD)]


def etcd_tls_args(topo: Topology, layout: Layout, name: str) -> tuple[str, ...]:
    """Client and peer TLS with this host's own certificate; members must show one from the cluster's CA."""
    if not etcd_secured(topo):
        return ()
    cert, key, ca = str(layout.host_cert(name)), str(layout.host_key(name)), str(layout.ca_cert)
    return (
        "--cert-file",
        cert,
        "--key-file",
        key,
        "--peer-cert-file",
        cert,
        "--peer-key-file",
        key,
        "--peer-trusted-ca-file",
        ca,
        "--peer-client-cert-auth",
        "--cipher-suites",
        ETCD_CIPHER_SUITES,
        "--bcrypt-cost",
        str(ETCD_BCRYPT_COST),
    )


def etcd_service(topo: Topology, layout: Layout, name: str, dirs: HostDirs) -> ServiceSpec:
    address = str(topo.address_of(name))
    scheme = etcd_scheme(topo)
    peers = ",".join(
        f"{h.name}={scheme}://{topo.address_of(h.name)}:{topo.etcd.peer_port}" for h in topo.with_role(Role.ETCD)
    )
    client = f"{scheme}://{address}:{topo.etcd.client_port}"
    peer = f"{scheme}://{address}:{topo.etcd.peer_port}"
    return ServiceSpec(
        name="etcd",
        argv=(
            "etcd",
            "--name",
            name,
            "--data-dir",
            str(dirs.data / "etcd"),
            # The host's own address only (no loopback listener): clients are the agents and webinfra.
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            # Prometheus scrapes /metrics (and may read /health) here, in plain HTTP: no keys, no data.
            "--listen-metrics-urls",
            f"http://{address}:{topo.etcd.metrics_port}",
            *etcd_tls_args(topo, layout, name),
            "--initial-cluster",
            peers,
            "--initial-cluster-token",
            f"webinfra-{topo.name}",
            "--initial-cluster-state",
            "new",
            "--heartbeat-interval",
            str(topo.etcd.heartbeat_ms),
            "--election-timeout",
            str(topo.etcd.election_timeout_ms),
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ),
        # The peer port listens at once; client requests wait for quorum, checked after all members start.
        probe=Probe("tcp", address, topo.etcd.peer_port),
        pidfile=dirs.run / "etcd.svc.pid",
        log=dirs.log / "etcd.log",
        stop_timeout=10.0,
    )


def contribute(ctx: HostContext) -> Contribution:
    if not ctx.spec.has(Role.ETCD):
        return NOTHING
    return Contribution([], [etcd_service(ctx.topo, ctx.layout, ctx.name, ctx.dirs)])
