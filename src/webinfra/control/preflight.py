"""Before `up` starts anything: every program the plan runs is installed, or one line names the Debian
package to install (scripts/install-deps.sh installs them all)."""

from __future__ import annotations

import shutil
from pathlib import Path

from webinfra.plan.spec import ClusterPlan

# Program -> the Debian package that ships it. Helpers run besides the daemons are listed with the
# service that needs them.
PACKAGE_OF = {
    "haproxy": "haproxy",
    "nginx": "nginx",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
    "mariabackup": "mariadb-backup",
    "keepalived": "keepalived",
    "etcd": "etcd-server",
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-mysqld-exporter": "prometheus-mysqld-exporter",
    "prometheus-nginx-exporter": "prometheus-nginx-exporter",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "nft": "nftables",
    "ip": "iproute2",
}
HELPERS = {"mariadb": ("mariadb-install-db", "mariadb"), "agent": ("mariabackup",)}


def needed_programs(plan: ClusterPlan) -> list[str]:
    """Programs `up` runs for this plan, in first-use order (the network and firewall tools first)."""
    needed = ["ip"] + (["nft"] if plan.topology.firewall else [])
    for hp in plan.hosts:
        for svc in hp.services:
            needed += [svc.argv[0], *HELPERS.get(svc.name, ())]
    return list(dict.fromkeys(needed))


def _installed(program: str) -> bool:
    return Path(program).is_file() if "/" in program else shutil.which(program) is not None


def missing_programs(plan: ClusterPlan) -> list[tuple[str, str]]:
    """(program, Debian package) pairs not installed on this machine."""
    return [(p, PACKAGE_OF.get(p, "?")) for p in needed_programs(plan) if not _installed(p)]


def describe_missing(missing: list[tuple[str, str]]) -> str:
    packages = sorted({pkg for _, pkg in missing if pkg != "?"})
    programs = ", ".join(p for p, _ in missing)
    hint = f"apt-get install {' '.join(packages)}" if packages else "install them"
    return f"not installed: {programs} (Debian: {hint}; or scripts/install-deps.sh)"
