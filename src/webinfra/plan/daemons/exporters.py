"""The exporters each host runs when the topology has a monitoring host, for what that host runs. Pure.

    node-exporter    every host    Debian's prometheus-node-exporter, with the collectors that make sense in a
                                   network namespace; on an LB pair also its textfile collector, which reads
                                   the VRRP state keepalived's notify script writes (`keepalived.prom`)
    mysqld-exporter  db hosts      Debian's prometheus-mysqld-exporter, over the local socket
    nginx-exporter   web hosts     Debian's prometheus-nginx-exporter, reading nginx's `stub_status` page, which
                                   nginx serves on 127.0.0.1 only (nginx.conf.j2)

HAProxy (LBs and dbproxies), the app, the DB agents and etcd serve their own /metrics: no exporter needed.

Merged in one module: each is a command line and a probe (mysqld_exporter's start hook is
daemons/mysqld_exporter.py).
"""

from __future__ import annotations

from webinfra.model import Role, Topology
from webinfra.plan.daemons.keepalived import keepalived_state_exported
from webinfra.plan.daemons.nginx import NGINX_STATUS_PATH
from webinfra.plan.render import NOTHING, Contribution, HostContext
from webinfra.plan.spec import Probe, ServiceSpec
from webinfra.state import HostDirs

# node_exporter collectors that work inside a network namespace and say something useful about a host.
# The defaults include collectors that read hardware or host-wide state (hwmon, thermal, rapl, mdadm...):
# in an emulated host they either fail or describe the whole machine, so only these are enabled.
NODE_COLLECTORS = (
    "cpu",
    "meminfo",
    "loadavg",
    "netdev",
    "filesystem",
    "stat",
    "time",
    "uname",
    "vmstat",
    "sockstat",
    "netstat",
    "pressure",
    "filefd",
)


FILESYSTEM_EXCLUDE = "^/(dev|proc|run|sys|var/lib/docker/.+)($|/)"


MYSQLD_EXPORTER_CNF = "mysqld-exporter.cnf"


EXPORTER_SECRET = "db-exporter"


def node_exporter_service(topo: Topology, name: str, dirs: HostDirs) -> ServiceSpec:
    address, port = str(topo.address_of(name)), topo.monitoring.node_exporter_port
    textfile: tuple[str, ...] = ()
    if keepalived_state_exported(topo, name):
        textfile = ("--collector.textfile", f"--collector.textfile.directory={dirs.run}")
    return ServiceSpec(
        name="node-exporter",
        argv=(
            "prometheus-node-exporter",
            f"--web.listen-address={address}:{port}",
            "--log.level=warn",
            "--collector.disable-defaults",
            *(f"--collector.{c}" for c in NODE_COLLECTORS),
            f"--collector.filesystem.mount-points-exclude={FILESYSTEM_EXCLUDE}",
            *textfile,
        ),
        probe=Probe("tcp", address, port),
        pidfile=dirs.run / "node-exporter.svc.pid",
        log=dirs.log / "node-exporter.log",
    )


def mysqld_exporter_service(topo: Topology, name: str, dirs: HostDirs) -> ServiceSpec:
    """The client file it reads holds a password, so it is not part of the plan: the service's start hook
    (daemons/mysqld_exporter.py) writes it (0600) and makes sure the `exporter` account exists."""
    address, port = str(topo.address_of(name)), topo.monitoring.mysqld_exporter_port
    return ServiceSpec(
        name="mysqld-exporter",
        argv=(
            "prometheus-mysqld-exporter",
            f"--web.listen-address={address}:{port}",
            f"--config.my-cnf={dirs.etc / MYSQLD_EXPORTER_CNF}",
            "--log.level=warn",
            # Kept: global status and variables, replication status. Off: what needs more privileges or a
            # plugin MariaDB does not load here.
            "--no-collect.info_schema.innodb_cmp",
            "--no-collect.info_schema.innodb_cmpmem",
            "--no-collect.info_schema.query_response_time",
        ),
        probe=Probe("tcp", address, port),
        pidfile=dirs.run / "mysqld-exporter.svc.pid",
        log=dirs.log / "mysqld-exporter.log",
    )


def nginx_exporter_service(topo: Topology, name: str, dirs: HostDirs) -> ServiceSpec:
    address, port = str(topo.address_of(name)), topo.monitoring.nginx_exporter_port
    return ServiceSpec(
        name="nginx-exporter",
        argv=(
            "prometheus-nginx-exporter",
            f"-web.listen-address={address}:{port}",
            f"-nginx.scrape-uri=http://127.0.0.1:{topo.monitoring.nginx_status_port}{NGINX_STATUS_PATH}",
            # nginx may start a moment later (a host started service by service): keep trying instead of exiting.
            "-nginx.retries=30",
            "-nginx.retry-interval=1s",
            "-nginx.timeout=2s",
        ),
        probe=Probe("tcp", address, port),
        pidfile=dirs.run / "nginx-exporter.svc.pid",
        log=dirs.log / "nginx-exporter.log",
    )


def exporter_services(topo: Topology, name: str, dirs: HostDirs) -> list[ServiceSpec]:
    spec = topo.host(name)
    services = [node_exporter_service(topo, name, dirs)]
    if spec.has(Role.DB):
        services.append(mysqld_exporter_service(topo, name, dirs))
    if spec.has(Role.WEB):
        services.append(nginx_exporter_service(topo, name, dirs))
    return services


def contribute(ctx: HostContext) -> Contribution:
    """Every host's exporters, when the topology has a monitoring host."""
    if ctx.topo.monitoring_host is None:
        return NOTHING
    return Contribution([], exporter_services(ctx.topo, ctx.name, ctx.dirs))
