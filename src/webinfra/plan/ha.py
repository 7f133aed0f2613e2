"""Plan pieces of the hardened topology: the LB pair's keepalived, the etcd cluster, the DB agents and
each app host's DB routing (a local HAProxy, "dbproxy"). Pure, like the rest of plan/."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from webinfra.model import Role, Topology
from webinfra.plan import exporters
from webinfra.plan.layout import HostDirs, Layout
from webinfra.plan.monitoring import dbproxy_metrics
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec

AGENT_TOKEN_SECRET = "agent-token"
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


def webinfra_command(python: str) -> str:
    """The `webinfra` console script next to the interpreter running us."""
    return str(Path(python).parent / "webinfra")


def dcs_prefix(topo: Topology) -> str:
    return f"/webinfra/{topo.name}/"


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


def agent_files_and_service(
    topo: Topology, layout: Layout, name: str, dirs: HostDirs, python: str = sys.executable
) -> tuple[FileSpec, ServiceSpec]:
    address = str(topo.address_of(name))
    primary = topo.db_primary
    assert primary is not None
    wi = webinfra_command(python)
    where = ["--state-dir", str(layout.cluster_dir.parent), "-c", topo.name]
    config = {
        "cluster": topo.name,
        "host": name,
        "address": address,
        "listen_address": "0.0.0.0",
        "listen_port": topo.db.agent_port,
        "etcd_endpoints": _local_first(etcd_endpoints(topo), address),
        **(
            {
                "etcd_ca_file": str(layout.ca_cert),
                "etcd_user": ETCD_AGENT_USER,
                "etcd_password_file": str(layout.secret(ETCD_AGENT_SECRET)),
            }
            if etcd_secured(topo)
            else {}
        ),
        "prefix": dcs_prefix(topo),
        "lease_ttl": topo.db.lease_ttl_seconds,
        "loop_interval": topo.db.loop_interval_ms / 1000,
        "replica_max_lag": topo.db.replica_max_lag_seconds,
        "when_no_replica_acks": topo.db.when_no_replica_acks,
        "semi_sync_fallback_ms": topo.db.semi_sync_fallback_ms,
        "mariadb": {
            "socket": str(dirs.sockets / "mariadb.sock"),
            "port": topo.db.port,
            "datadir": str(dirs.data / "mariadb"),
            # my.cnf's pid-file: with the socket, the agent's proof that mysqld is gone (not slow).
            "pid_file": str(dirs.run / "mariadb.pid"),
        },
        "members": {h.name: {"address": str(topo.address_of(h.name))} for h in topo.with_role(Role.DB)},
        "initial_primary": primary.name,
        "repl_user": "repl",
        "repl_password_file": str(layout.secret("db-repl")),
        "token_file": str(layout.secret(AGENT_TOKEN_SECRET)),
        **({"repl_ssl_ca": str(layout.ca_cert)} if topo.tls.enabled else {}),
        "mariadb_control": {
            "stop": [wi, "stop", *where, name, "mariadb"],
            "start": [wi, "start", *where, name, "mariadb"],
        },
        "events_file": str(layout.events_file),
    }
    path = dirs.etc / "agent.json"
    service = ServiceSpec(
        name="agent",
        argv=(python, "-m", "webinfra.agent", "--config", str(path)),
        probe=Probe("http", address, topo.db.agent_port, "/status"),  # 200 from the first cycle on
        pidfile=dirs.run / "agent.svc.pid",
        log=dirs.log / "agent.log",
        configs=(path,),
        stop_timeout=5.0,
    )
    return FileSpec(path, json.dumps(config, indent=2) + "\n"), service


def _local_first(endpoints: list[str], address: str) -> list[str]:
    return sorted(endpoints, key=lambda url: f"//{address}:" not in url)


# build.render: a template's name and its values -> the rendered text (passed in: build imports this module).
Render = Callable[..., str]


def dbproxy_files_and_service(
    topo: Topology, name: str, dirs: HostDirs, render: Render
) -> tuple[FileSpec, ServiceSpec]:
    host = topo.host(name)
    local = host.has(Role.DB)
    servers = [
        {
            "name": d.name,
            "address": str(topo.address_of(d.name)),
            "port": topo.db.port,
            # With a local DB, other nodes serve this host's reads only when the local one cannot.
            "backup": local and d.name != name,
        }
        for d in topo.with_role(Role.DB)
    ]
    cfg = dirs.etc / "dbproxy.cfg"
    text = render(
        "dbproxy.cfg.j2",
        host=name,
        cluster=topo.name,
        runtime_socket=dirs.sockets / "dbproxy.sock",
        agent_port=topo.db.agent_port,
        inter_ms=max(100, topo.db.loop_interval_ms // 2),
        writer_port=topo.db.writer_port,
        reader_port=topo.db.reader_port,
        servers=servers,
        local=local,
        metrics=dbproxy_metrics(topo, name),
    )
    service = ServiceSpec(
        name="dbproxy",
        argv=("haproxy", "-W", "-f", str(cfg), "-p", str(dirs.run / "dbproxy.pid")),
        probe=Probe("tcp", "127.0.0.1", topo.db.writer_port),
        pidfile=dirs.run / "dbproxy.svc.pid",
        log=dirs.log / "dbproxy.log",
        configs=(cfg,),
        reload_signal="USR2",
    )
    return FileSpec(cfg, text), service


CHECK_HAPROXY = """#!/bin/sh
# keepalived's health check of this LB's HAProxy: its master process (pid file) is alive.
pid=$(cat {pidfile} 2>/dev/null) || exit 1
exec kill -0 "$pid"
"""


def keepalived_files_and_service(
    topo: Topology, name: str, dirs: HostDirs, render: Render
) -> tuple[list[FileSpec], ServiceSpec]:
    lbs = topo.with_role(Role.LB)
    index = [h.name for h in lbs].index(name)
    vip = topo.vip
    assert vip is not None
    cfg = dirs.etc / "keepalived.conf"
    check = dirs.etc / "check-haproxy.sh"
    notify = exporters.keepalived_notify_file(topo, name, dirs)
    text = render(
        "keepalived.conf.j2",
        host=name,
        cluster=topo.name,
        check_script=check,
        notify_script=notify.path if notify else None,
        vrid=topo.lb.virtual_router_id,
        priority=150 - 50 * index,
        advert_int=f"{topo.lb.vrrp_advert_ms / 1000:g}",
        address=str(topo.address_of(name)),
        peers=[str(topo.address_of(h.name)) for h in lbs if h.name != name],
        vip=str(vip),
        prefix=topo.network.subnet.prefixlen,
        interface=topo.machines.vip_interface,
    )
    run = dirs.run
    service = ServiceSpec(
        name="keepalived",
        argv=(
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "--vrrp",
            "--use-file",
            str(cfg),
            "--pid",
            str(run / "keepalived.pid"),
            "--vrrp_pid",
            str(run / "keepalived-vrrp.pid"),
            "--checkers_pid",
            str(run / "keepalived-checkers.pid"),
        ),
        probe=Probe("tcp", str(topo.address_of(name)), topo.lb.port),  # HAProxy answers; VRRP has no port
        pidfile=run / "keepalived.svc.pid",
        log=dirs.log / "keepalived.log",
        configs=(cfg, check, *((notify.path,) if notify else ())),
        reload_signal="HUP",
    )
    check_file = FileSpec(check, CHECK_HAPROXY.format(pidfile=dirs.run / "haproxy.pid"), 0o755)
    return [FileSpec(cfg, text), check_file, *((notify,) if notify else ())], service
