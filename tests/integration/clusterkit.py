"""Helpers for integration tests: topologies, HTTP clients for a cluster, leftover checks."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from testkit import wait_for  # noqa: F401 (re-exported: the integration tests import it from here)
from webinfra.control.cluster import Cluster
from webinfra.model.relocate import amended, relocated, seed_text
from webinfra.proving import scratch
from webinfra.runtime.emulated import network as netmod
from webinfra.services import pki, releases

WEBINFRA = Path(sys.executable).parent / "webinfra"

FAST_CHECKS = {"check_interval_ms": 500, "check_fall": 2, "check_rise": 2}


def seed_topology(
    name: str,
    octet: int,
    *,
    route: str = "primary",
    web02_extra: str = "",
    web01_weight: int = 1,
    web02_weight: int = 1,
) -> str:
    """The seed design (examples/seed.toml: lb-01, web-01 primary, web-02 replica) with fast health checks; as
    drawn: no TLS, no firewall (these tests reach servers directly). `web02_extra`: TOML lines for web-02."""
    text = amended(
        relocated(seed_text(), name, f"198.18.{octet}.0/24"),
        {"lb": {"route_writes_to": route, **FAST_CHECKS}},
        hosts={"web-01": {"weight": web01_weight}, "web-02": {"weight": web02_weight, **tomllib.loads(web02_extra)}},
    )
    return text


def leftovers(cluster: Cluster) -> list[str]:
    """Namespaces, links and processes of this cluster still present."""
    left = [ns for ns in netmod.existing_namespaces() if ns.startswith(f"wi-{cluster.topology.name}-")]
    if netmod.link_exists(netmod.bridge_name(cluster.topology.name)):
        left.append(netmod.bridge_name(cluster.topology.name))
    left += [link.veth for link in cluster.network.links if netmod.link_exists(link.veth)]
    return left


def bring_up(toml: str, root: Path) -> Cluster:
    return scratch.bring_up(toml, root, source="<test>")


ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def keep_logs(cluster: Cluster) -> None:
    """Copy every host's logs and the events to artifacts/logs/<cluster>/ before the state is purged,
    so a failure can be read after the run (CI keeps the work tree)."""
    dest = ARTIFACTS / "logs" / cluster.topology.name
    shutil.rmtree(dest, ignore_errors=True)
    for host_dir in (cluster.layout.cluster_dir / "hosts").glob("*"):
        if (host_dir / "log").is_dir():
            shutil.copytree(host_dir / "log", dest / host_dir.name, dirs_exist_ok=True)
    if cluster.layout.events_file.exists():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(cluster.layout.events_file, dest / "events.jsonl")


def take_down(cluster: Cluster) -> None:
    keep_logs(cluster)
    cluster.down(purge=True)
    left = leftovers(cluster)
    netmod.sweep_cluster(cluster.topology.name)
    assert not left, f"teardown left {left}"


def trust(cluster: Cluster) -> ssl.SSLContext | bool:
    """What a client verifies the cluster's certificates with: its CA (TLS on), else the default."""
    if not cluster.topology.tls.enabled:
        return True
    return ssl.create_default_context(cafile=str(pki.ca_path(cluster.topology, cluster.layout)))


def site(cluster: Cluster, **kwargs: object) -> httpx.Client:
    """An HTTP(S) client for the site through the load balancer (trusting the cluster's CA)."""
    kwargs.setdefault("verify", trust(cluster))
    return httpx.Client(base_url=cluster.topology.site_url, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def direct(cluster: Cluster, host: str, **kwargs: object) -> httpx.Client:
    """An HTTP(S) client for one server's nginx, bypassing the load balancer."""
    scheme = "https" if cluster.topology.backend_tls else "http"
    url = f"{scheme}://{cluster.topology.address_of(host)}:{cluster.topology.web.port}"
    kwargs.setdefault("verify", trust(cluster))
    return httpx.Client(base_url=url, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def cli(cluster: Cluster, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `webinfra` command against `cluster`."""
    where = ["--state-dir", str(cluster.layout.cluster_dir.parent), "--cluster", cluster.topology.name]
    argv = [str(WEBINFRA), args[0], *where, *args[1:]]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def backend_states(cluster: Cluster) -> dict[str, str]:
    from webinfra.observe.status import snapshot

    return {b["name"]: b["state"] for b in snapshot(cluster)["lb"]["backends"]}


def copy_site(dest: Path, marker: str, *, healthz_500: bool = False) -> Path:
    """A modified copy of the built-in site: every response carries `X-Code: <marker>`."""
    shutil.copytree(releases.builtin_code_base(), dest, ignore=shutil.ignore_patterns("__pycache__"))
    app = dest / "app.py"
    old = 'return {"X-Served-By": host, "X-App-Version": version}'
    assert old in app.read_text()
    new = old.replace("}", f', "X-Code": "{marker}"}}')
    app.write_text(app.read_text().replace(old, new))
    if healthz_500:
        routes = dest / "routes.py"
        healthy = 'return JSONResponse({"status": "ok", "host": config.host, "version": config.version})'
        assert healthy in routes.read_text()
        routes.write_text(routes.read_text().replace(healthy, healthy[:-1] + ", status_code=500)"))
    return dest
