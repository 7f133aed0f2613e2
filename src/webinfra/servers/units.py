"""What each server needs, derived from its `HostPlan`: Debian packages, the system user of each daemon, and a
systemd unit per service. Pure, so it is unit-tested and `plan --diff` can show it without a server."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from webinfra.control.preflight import HELPERS, PACKAGE_OF
from webinfra.plan.spec import HostPlan, ServiceSpec
from webinfra.state import SERVER_DATA, SERVER_ETC, SERVER_LOG, SERVER_RUN

GROUP = "webinfra"  # every daemon user is in it: it may write the shared log and runtime directories
RELEASES = "/opt/webinfra/releases"  # one venv per wheelhouse (the app, the HA agent, the event watcher)
WHEELS = "/opt/webinfra/wheels"
UNIT_DIR = "/etc/systemd/system"
TMPFILES = "/etc/tmpfiles.d/webinfra.conf"

# Who runs each daemon: Debian's own user where its package makes one, webinfra's otherwise. keepalived
# stays root (it sets addresses and sends VRRP); the HA agent stops and clones MariaDB (root, as on Debian's
# own mariadb tooling).
USER_OF = {
    "haproxy": "haproxy",
    "dbproxy": "haproxy",
    "nginx": "www-data",
    "mariadb": "mysql",
    "app": "webinfra",
    "monitor": "webinfra",
    "etcd": "etcd",
    "prometheus": "prometheus",
    "alertmanager": "prometheus",
    "node-exporter": "prometheus",
    "nginx-exporter": "prometheus",
    "mysqld-exporter": "prometheus",
    "keepalived": "root",
    "agent": "root",
}
# Users webinfra creates itself (the others come with their Debian package).
OWN_USERS = ("webinfra",)
# Debian's own unit of a package webinfra runs under its own unit: stopped and disabled, so it neither
# holds the port nor comes back at boot.
DISTRO_UNITS = {
    "haproxy": "haproxy.service",
    "nginx": "nginx.service",
    "mariadb": "mariadb.service",
    "keepalived": "keepalived.service",
    "etcd": "etcd.service",
    "prometheus": "prometheus.service",
    "alertmanager": "prometheus-alertmanager.service",
    "node-exporter": "prometheus-node-exporter.service",
    "nginx-exporter": "prometheus-nginx-exporter.service",
    "mysqld-exporter": "prometheus-mysqld-exporter.service",
}
# Programs webinfra runs on a server beside a daemon: `ip` shows which LB holds the VIP (servers/hardened.py).
EXTRA_PROGRAMS = {"keepalived": ("ip",)}
# Daemons that bind a port below 1024 as their own user.
LOW_PORTS = ("haproxy", "nginx", "dbproxy")


def unit_name(service: str) -> str:
    return f"webinfra-{service}.service"


def runs_python(svc: ServiceSpec) -> bool:
    return svc.argv[0].startswith(RELEASES)


def packages(plan: HostPlan, firewall: bool) -> list[str]:
    """The Debian packages this host's services need, and nothing else."""
    # python3 on every server: webinfra's probes and HTTP requests from the server run its helper
    # (runtime/ssh.py). netbase: /etc/protocols, where nft resolves `ip protocol vrrp` (a minimal Debian
    # lacks it).
    wanted: list[str] = ["python3", *(["nftables", "netbase"] if firewall else [])]
    for svc in plan.services:
        programs = [*HELPERS.get(svc.name, ()), *EXTRA_PROGRAMS.get(svc.name, ())]
        if runs_python(svc):
            wanted += ["python3", "python3-venv"]
        else:
            programs.insert(0, svc.argv[0])
        for program in programs:
            if program in PACKAGE_OF:
                wanted.append(PACKAGE_OF[program])
    return sorted(set(wanted))


def users(plan: HostPlan) -> list[str]:
    return sorted({USER_OF.get(svc.name, "webinfra") for svc in plan.services} - {"root"})


@dataclass(frozen=True)
class Unit:
    service: str
    name: str
    text: str
    reloads: bool  # ExecReload is the daemon's own reload: a config change reloads instead of restarting


def unit(svc: ServiceSpec, cluster: str) -> Unit:
    user = USER_OF.get(svc.name, "webinfra")
    lines = [
        "# Written by webinfra: changes are overwritten by the next `webinfra up`.",
        "[Unit]",
        f"Description=webinfra {svc.name} (cluster {cluster})",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"Group={GROUP}" if user != "root" else "Group=root",
        f"ExecStart={shlex.join(svc.argv)}",
        *(f"Environment={shlex.quote(f'{k}={v}')}" for k, v in svc.env),
    ]
    if svc.reload_signal:
        lines.append(f"ExecReload=/bin/kill -{svc.reload_signal} $MAINPID")
    if svc.name in LOW_PORTS:
        lines.append("AmbientCapabilities=CAP_NET_BIND_SERVICE")
    lines += [
        "Restart=always",
        "RestartSec=2",
        f"TimeoutStopSec={svc.stop_timeout:g}",
        "StandardOutput=journal",
        "StandardError=journal",
        f"SyslogIdentifier=webinfra-{svc.name}",
        "LimitNOFILE=65536",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return Unit(svc.name, unit_name(svc.name), "\n".join(lines), svc.reload_signal is not None)


def tmpfiles() -> str:
    """/run is a tmpfs: systemd-tmpfiles makes the runtime directory again at every boot."""
    return f"# Written by webinfra.\nd {SERVER_RUN} 0770 root {GROUP} -\n"


# (path, owner, group, mode) of every directory webinfra writes on a server, made before any file.
DIRECTORIES = (
    (str(SERVER_ETC), "root", GROUP, "750"),
    (str(SERVER_ETC / "secrets"), "root", GROUP, "750"),
    (str(SERVER_ETC / "pki"), "root", GROUP, "750"),
    (str(SERVER_DATA), "root", GROUP, "770"),
    (str(SERVER_DATA / "tmp"), "root", GROUP, "1770"),
    (str(SERVER_LOG), "root", GROUP, "770"),
    (str(SERVER_RUN), "root", GROUP, "770"),
)
