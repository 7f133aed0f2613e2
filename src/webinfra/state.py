"""Every path webinfra keeps on disk: pure path arithmetic (no file is read or written here), so plans can
name absolute paths and every layer asks one place where a file lives. Imports nothing of webinfra.

<state root>/                (WEBINFRA_STATE_DIR, default /var/lib/webinfra)
  <cluster>/
    topology.toml            the topology last applied
    network.json             what `up` created (bridge, namespaces, veths), for `down`
    events.jsonl             every state change webinfra causes or sees
    weights.json             live HAProxy weights set by `webinfra weight`, applied to an LB that starts later
    server-python            servers: the release venv's python the last `up` installed
    faults.json              faults injected by `webinfra fail`, shown by `status` until `recover`
    deploy.json              the release each app host runs (`up` keeps it)
    db-bootstrapped          marker: with HA, the first `up` set the DB roles; from then on the agents own them
    operation.lock           flock: one deploy or scale at a time
    watcher.lock             flock: one event watcher records at a time
    dashboard.pid, dashboard.json   the running `webinfra dashboard` (pid; URL without its token)
    secrets/                 0700; generated passwords, 0600 each, never printed
    pki/                     0700; the local CA, the site's certificate, one per web/db host (keys 0600)
    hosts/<host>/etc/        rendered configs
    hosts/<host>/run/        pid files (JSON: pid + start time)
    hosts/<host>/log/        one log per service
    hosts/<host>/data/       daemon data (MariaDB datadir, HAProxy server state)
    hosts/<host>/tmp/        scratch (nginx temp paths)
  _lab/                      `webinfra lab`'s labs and images (testbed/lab.py's LabPaths says what a lab keeps)
<run root>/<cluster>/<host>/ (WEBINFRA_RUN_DIR, default /run/webinfra) unix sockets (hostd, admin sockets)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_ROOT = Path("/var/lib/webinfra")
STATE_ROOT_ENV = "WEBINFRA_STATE_DIR"
DEFAULT_SOCKET_ROOT = Path("/run/webinfra")
SOCKET_ROOT_ENV = "WEBINFRA_RUN_DIR"
TOPOLOGY_FILE = "topology.toml"


def state_root() -> Path:
    return Path(os.environ.get(STATE_ROOT_ENV) or DEFAULT_STATE_ROOT)


def socket_root() -> Path:
    return Path(os.environ.get(SOCKET_ROOT_ENV) or DEFAULT_SOCKET_ROOT)


@dataclass(frozen=True)
class HostDirs:
    root: Path
    sockets: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def all(self) -> tuple[Path, ...]:
        return (self.etc, self.run, self.log, self.data, self.tmp, self.sockets)


@dataclass(frozen=True)
class Layout:
    cluster_dir: Path

    @classmethod
    def for_cluster(cls, name: str, root: Path | None = None) -> Layout:
        return cls((root or state_root()) / name)

    @property
    def topology_file(self) -> Path:
        return self.cluster_dir / TOPOLOGY_FILE

    @property
    def network_file(self) -> Path:
        return self.cluster_dir / "network.json"

    @property
    def events_file(self) -> Path:
        return self.cluster_dir / "events.jsonl"

    @property
    def weights_file(self) -> Path:
        return self.cluster_dir / "weights.json"

    @property
    def server_python_file(self) -> Path:
        """Servers: the python of the release venv the last `up` installed (the plan's command lines name it)."""
        return self.cluster_dir / "server-python"

    @property
    def faults_file(self) -> Path:
        return self.cluster_dir / "faults.json"

    @property
    def deploy_file(self) -> Path:
        return self.cluster_dir / "deploy.json"

    @property
    def db_bootstrapped_marker(self) -> Path:
        return self.cluster_dir / "db-bootstrapped"

    @property
    def operation_lock(self) -> Path:
        return self.cluster_dir / "operation.lock"

    @property
    def watcher_lock(self) -> Path:
        return self.cluster_dir / "watcher.lock"

    @property
    def dashboard_pidfile(self) -> Path:
        return self.cluster_dir / "dashboard.pid"

    @property
    def dashboard_info(self) -> Path:
        """The running dashboard's URL (without its token), written by it."""
        return self.cluster_dir / "dashboard.json"

    @property
    def secrets(self) -> Path:
        return self.cluster_dir / "secrets"

    def secret(self, name: str) -> Path:
        return self.secrets / f"{name}.password"

    @property
    def pki(self) -> Path:
        return self.cluster_dir / "pki"

    @property
    def ca_cert(self) -> Path:
        """The local CA's certificate: what HAProxy, the app and replicas verify servers against."""
        return self.pki / "ca.pem"

    @property
    def site_pem(self) -> Path:
        """The site's certificate, its chain and key in one file, as HAProxy's `crt` wants it."""
        return self.pki / "site.pem"

    def host_cert(self, name: str) -> Path:
        return self.pki / f"{name}.crt"

    def host_key(self, name: str) -> Path:
        return self.pki / f"{name}.key"

    @property
    def socket_dir(self) -> Path:
        return socket_root() / self.cluster_dir.name

    def host(self, name: str) -> HostDirs:
        return HostDirs(self.cluster_dir / "hosts" / name, self.socket_dir / name)


# ---- servers ([machines] kind = "ssh") ----
# The same plan rendered for real machines: each host is a whole server, so every path is that server's own,
# in Debian's usual places. The management machine keeps its generated secrets and PKI in its own `Layout`;
# webinfra/servers/ copies to each server only the files its configs name.
SERVER_ETC = Path("/etc/webinfra")
SERVER_DATA = Path("/var/lib/webinfra")
SERVER_RUN = Path("/run/webinfra")
SERVER_LOG = Path("/var/log/webinfra")


@dataclass(frozen=True)
class ServerHostDirs(HostDirs):
    """`root` is /var/lib/webinfra (nginx's prefix); configs, logs and runtime files where Debian keeps them."""

    @property
    def etc(self) -> Path:
        return SERVER_ETC

    @property
    def run(self) -> Path:
        return SERVER_RUN

    @property
    def log(self) -> Path:
        return SERVER_LOG

    @property
    def data(self) -> Path:
        return SERVER_DATA

    @property
    def tmp(self) -> Path:
        return SERVER_DATA / "tmp"


@dataclass(frozen=True)
class ServerLayout(Layout):
    """Paths on a server. `cluster_dir` is the server's data directory; secrets and PKI live under /etc."""

    cluster_dir: Path = SERVER_DATA

    @property
    def secrets(self) -> Path:
        return SERVER_ETC / "secrets"

    @property
    def pki(self) -> Path:
        return SERVER_ETC / "pki"

    @property
    def socket_dir(self) -> Path:
        return SERVER_RUN

    def host(self, name: str) -> HostDirs:
        return ServerHostDirs(SERVER_DATA, SERVER_RUN)
