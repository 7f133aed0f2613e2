"""Topology -> ClusterPlan: every config file rendered, every service's command line, in start order.

Pure: no I/O beyond reading templates from the package, so a plan can be printed (`webinfra plan`),
golden-tested, and each config checked by its own tool (`haproxy -c`, `nginx -t`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from functools import cache

import jinja2

from webinfra.model import Role, Topology
from webinfra.plan import exporters, firewall, ha, monitoring
from webinfra.plan.spec import AppRelease, ClusterPlan, FileSpec, HostPlan, Probe, ServiceSpec
from webinfra.state import Layout

SITE_CONFIG_ENV = "WEBINFRA_SITE_CONFIG"
HAPROXY_THREADS = 1  # one thread measured fastest for this workload on 2 cores shared by every host
# HAProxy towards the web servers (docs/RESILIENCE.md has the measurements): connections on a LAN are set up
# in well under a millisecond, reads and writes answer in tens of them. Past these bounds a request that is
# safe to replay (reads, POSTs carrying an Idempotency-Key) goes to another server; a few failed connections
# in a row mark a server down.
LB_CONNECT_TIMEOUT_MS = 500
LB_READ_TIMEOUT_MS = 1000
LB_KEYED_WRITE_TIMEOUT_MS = 1500
LB_ERROR_LIMIT = 3
# Mozilla "intermediate" (TLS 1.2 ciphers: forward secrecy and AEAD only; TLS 1.3 suites), for HAProxy,
# nginx and MariaDB alike.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
TLS13_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("webinfra.plan", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # configs, not HTML
    )


def render(template: str, **values: object) -> str:
    return _env().get_template(template).render(**values)


def server_id_of(topo: Topology, host: str) -> int:
    """MariaDB server_id: the host's offset in the subnet (unique, never 0, stable when hosts are
    reordered; web-01 at .11 writes GTIDs 0-11-N, which reads well)."""
    return int(topo.address_of(host)) - int(topo.network.subnet.network_address)


def build_plan(
    topo: Topology,
    layout: Layout,
    python: str = sys.executable,
    *,
    releases: Mapping[str, AppRelease] | None = None,
    draining: frozenset[str] = frozenset(),
) -> ClusterPlan:
    """`releases`: the code base each app host runs (deployed by `webinfra deploy`; a host without one runs
    the installed `webinfra.site`, labelled `[app] version`). `draining`: app hosts that every nginx
    in front of them marks `down` (a rolling deploy of app-only hosts)."""
    rulesets = firewall.rulesets(topo) if topo.firewall else {}
    hosts = tuple(
        _host_plan(topo, layout, h.name, python, releases or {}, draining, rulesets.get(h.name)) for h in topo.hosts
    )
    return ClusterPlan(topology=topo, layout=layout, hosts=hosts)


def _host_plan(
    topo: Topology,
    layout: Layout,
    name: str,
    python: str,
    releases: Mapping[str, AppRelease],
    draining: frozenset[str],
    firewall_ruleset: str | None,
) -> HostPlan:
    spec = topo.host(name)
    dirs = layout.host(name)
    address = str(topo.address_of(name))
    files: list[FileSpec] = []
    services: list[ServiceSpec] = []
    common = {
        "host": name,
        "cluster": topo.name,
        "run_dir": dirs.run,
        "log_dir": dirs.log,
        "tmp_dir": dirs.tmp,
    }

    if firewall_ruleset is not None:
        # Loaded by services/firewall.py before any service starts (not a service's config).
        files.append(FileSpec(dirs.etc / "firewall.nft", firewall_ruleset))

    if spec.has(Role.DB):
        cnf = dirs.etc / "my.cnf"
        files.append(
            FileSpec(
                cnf,
                render(
                    "my.cnf.j2",
                    **common,
                    datadir=dirs.data / "mariadb",
                    socket=dirs.sockets / "mariadb.sock",
                    bind_address="0.0.0.0",
                    port=topo.db.port,
                    server_id=server_id_of(topo, name),
                    # With HA every node starts read-only: only the agent holding the lease makes it writable.
                    read_only=topo.ha or spec.db_role == "replica",
                    semi_sync=topo.ha,
                    tls=_host_tls(topo, layout, name) if topo.tls.enabled else None,
                ),
            )
        )
        services.append(
            ServiceSpec(
                name="mariadb",
                argv=("mariadbd", f"--defaults-file={cnf}"),
                probe=Probe("tcp", address, topo.db.port),
                pidfile=dirs.run / "mariadb.svc.pid",
                log=dirs.log / "mariadb.out",
                configs=(cnf,),
                stop_timeout=30.0,
            )
        )

    if spec.has(Role.ETCD):
        services.append(ha.etcd_service(topo, layout, name, dirs))

    if spec.has(Role.DB) and topo.ha:
        agent_file, agent_svc = ha.agent_files_and_service(topo, layout, name, dirs, python)
        files.append(agent_file)
        services.append(agent_svc)

    if spec.has(Role.APP) and topo.ha:
        proxy_file, proxy_svc = ha.dbproxy_files_and_service(topo, name, dirs, render)
        files.append(proxy_file)
        services.append(proxy_svc)

    if spec.has(Role.APP):
        site_json = dirs.etc / "site.json"
        release = releases.get(name, AppRelease(topo.app.version))
        # 0600: it names the cluster's secret files (the files themselves are 0600 in a 0700 directory).
        files.append(FileSpec(site_json, render_site_config(topo, layout, name, release.version), mode=0o600))
        # A deployed release: uvicorn imports `webinfra.site` from the release directory first.
        app_dir = ("--app-dir", str(release.app_dir)) if release.app_dir is not None else ()
        services.append(
            ServiceSpec(
                name="app",
                argv=(
                    python,
                    "-m",
                    "uvicorn",
                    *app_dir,
                    "webinfra.site.app:create_app",
                    "--factory",
                    "--host",
                    "0.0.0.0",
                    "--port",
                    str(topo.app.port),
                    "--workers",
                    str(topo.app.workers),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--timeout-graceful-shutdown",
                    "5",
                    "--backlog",
                    "4096",
                ),
                probe=Probe("http", address, topo.app.port, "/healthz", topo.site.name),
                pidfile=dirs.run / "app.svc.pid",
                log=dirs.log / "app.log",
                configs=(site_json,),
                env=((SITE_CONFIG_ENV, str(site_json)), *monitoring.site_metrics_env(topo, dirs)),
                stop_timeout=10.0,
            )
        )

    if spec.has(Role.WEB):
        conf = dirs.etc / "nginx.conf"
        apps = [
            {"address": str(topo.address_of(a.name)), "port": topo.app.port, "down": a.name in draining}
            for a in topo.app_upstreams_of(name)
        ]
        files.append(
            FileSpec(
                conf,
                render(
                    "nginx.conf.j2",
                    **common,
                    workers=1,
                    bind_address="0.0.0.0",
                    port=topo.web.port,
                    site_name=topo.site.name,
                    apps=apps,
                    max_body_kib=topo.web.max_body_kib,
                    tls=_host_tls(topo, layout, name) if topo.backend_tls else None,
                    status=exporters.nginx_status(topo),
                ),
            )
        )
        services.append(
            ServiceSpec(
                name="nginx",
                argv=(
                    "nginx",
                    "-c",
                    str(conf),
                    "-p",
                    str(dirs.root),
                    "-e",
                    str(dirs.log / "nginx-error.log"),
                ),
                probe=Probe(
                    "https" if topo.backend_tls else "http",
                    address,
                    topo.web.port,
                    "/healthz",
                    topo.site.name,
                    str(layout.ca_cert) if topo.backend_tls else "",
                ),
                pidfile=dirs.run / "nginx.svc.pid",
                log=dirs.log / "nginx.out",
                configs=(conf,),
                reload_signal="HUP",
            )
        )

    if spec.has(Role.LB):
        cfg = dirs.etc / "haproxy.cfg"
        files.append(FileSpec(cfg, render_haproxy(topo, layout, name)))
        services.append(
            ServiceSpec(
                name="haproxy",
                argv=("haproxy", "-W", "-f", str(cfg), "-p", str(dirs.run / "haproxy.pid")),
                probe=Probe("tcp", address, topo.lb.port),
                pidfile=dirs.run / "haproxy.svc.pid",
                log=dirs.log / "haproxy.log",
                configs=(cfg,),
                reload_signal="USR2",
            )
        )
        if topo.lb_pair:
            kfiles, ksvc = ha.keepalived_files_and_service(topo, name, dirs, render)
            files.extend(kfiles)
            services.append(ksvc)

    mon_files, mon_services = monitoring.files_and_services(topo, layout, name, dirs, python)
    files += mon_files
    services += mon_services

    return HostPlan(
        name=name,
        address=address,
        roles=tuple(r.value for r in spec.roles),
        dirs=dirs,
        files=tuple(files),
        services=tuple(services),
    )


def _host_tls(topo: Topology, layout: Layout, name: str) -> dict[str, str]:
    """A web or DB host's own certificate (services/pki.py makes it), and what to verify peers against."""
    return {
        "cert": str(layout.host_cert(name)),
        "key": str(layout.host_key(name)),
        "ca": str(layout.ca_cert),
        "ciphers": TLS12_CIPHERS,
        "ciphersuites": TLS13_CIPHERSUITES,
    }


def haproxy_runtime_socket(layout: Layout, lb_host: str) -> str:
    return str(layout.host(lb_host).sockets / "haproxy.sock")


def render_haproxy(topo: Topology, layout: Layout, name: str) -> str:
    dirs = layout.host(name)
    webs = topo.with_role(Role.WEB)
    servers = [
        {
            "name": w.name,
            "address": str(topo.address_of(w.name)),
            "port": topo.web.port,
            "weight": w.lb_weight,
            "backup": w.is_backup,
            # Re-encrypted hop: nginx's certificate must be issued by our CA for this very host.
            "tls": f" ssl verify required ca-file {layout.ca_cert} verifyhost {w.name}" if topo.backend_tls else "",
        }
        for w in webs
    ]
    primary = topo.db_primary
    write_check: dict[str, str | int | None] = {"uri": "/healthz", "port": None}
    if topo.ha:
        # The primary moves: every web host with a database may take writes, and the agent's /primary
        # check says which one does now (a demoted or dead primary's server gets none).
        route_writes = topo.lb.route_writes_to == "primary"
        write_servers = [{**s, "weight": 1} for w, s in zip(webs, servers, strict=True) if w.has(Role.DB)]
        route_writes = route_writes and bool(write_servers)
        write_check = {"uri": "/primary", "port": topo.db.agent_port}
    else:
        route_writes = topo.lb.route_writes_to == "primary" and primary is not None and primary.has(Role.WEB)
        # The write backend has one server; its weight does not matter, but 0 would refuse every write.
        write_servers = [{**s, "weight": 1} for s in servers if primary is not None and s["name"] == primary.name]
    return render(
        "haproxy.cfg.j2",
        host=name,
        cluster=topo.name,
        runtime_socket=haproxy_runtime_socket(layout, name),
        server_state_file=dirs.data / "haproxy-server-state",
        threads=HAPROXY_THREADS,
        bind_address="0.0.0.0",
        port=topo.lb.port,
        site_name=topo.site.name,
        check_interval_ms=topo.lb.check_interval_ms,
        fast_interval_ms=max(100, topo.lb.check_interval_ms // 4),
        connect_timeout_ms=LB_CONNECT_TIMEOUT_MS,
        read_timeout_ms=LB_READ_TIMEOUT_MS,
        keyed_write_timeout_ms=LB_KEYED_WRITE_TIMEOUT_MS,
        error_limit=LB_ERROR_LIMIT,
        fall=topo.lb.check_fall,
        rise=topo.lb.check_rise,
        servers=servers,
        route_writes=route_writes,
        write_servers=write_servers,
        write_check=write_check,
        tls=_lb_tls(topo, layout),
        metrics=monitoring.haproxy_metrics(topo, name),
    )


def _lb_tls(topo: Topology, layout: Layout) -> dict[str, object] | None:
    if not topo.tls.enabled:
        return None
    return {
        "site_pem": str(layout.site_pem),
        "https_port": topo.lb.https_port,
        "ciphers": TLS12_CIPHERS,
        "ciphersuites": TLS13_CIPHERSUITES,
        "backend": topo.backend_tls,
    }


#: Cluster secrets every app server shares: the key signing the site's cookies (read-your-writes GTID, entry
#: author) and the admin token that may delete any entry (`Authorization: Bearer ...`). Generated once.
SITE_SIGNING_SECRET = "site-signing"
SITE_ADMIN_SECRET = "site-admin"


def render_site_config(topo: Topology, layout: Layout, app_host: str, version: str | None = None) -> str:
    primary = topo.db_primary
    assert primary is not None  # guaranteed by check_topology

    def endpoint(name: str) -> dict[str, object]:
        return {"name": name, "host": str(topo.address_of(name)), "port": topo.db.port}

    if topo.ha:
        # Through this host's DB routing (dbproxy): roles move, the app learns who answered per connection.
        writer: dict[str, object] = {"name": "writer", "host": "127.0.0.1", "port": topo.db.writer_port}
        readers: list[dict[str, object]] = [{"name": "reader", "host": "127.0.0.1", "port": topo.db.reader_port}]
    else:
        writer = endpoint(primary.name)
        readers = [endpoint(r.name) for r in topo.db_readers_for(app_host)]

    config = {
        "host": app_host,
        "site_name": topo.site.name,
        "version": version or topo.app.version,
        "signing_key_file": str(layout.secret(SITE_SIGNING_SECRET)),
        "admin_token_file": str(layout.secret(SITE_ADMIN_SECRET)),
        "db": {
            "database": topo.db.database,
            "user": "site",
            "password_file": str(layout.secret("db-site")),
            "writer": writer,
            "readers": readers,
            "ryw_wait_seconds": topo.db.ryw_wait_seconds,
            "connect_timeout_seconds": 1.0,
            "pool_max_size": 10,
            "suspect_seconds": 2.0,
            **({"identify_servers": True, "write_retry_seconds": 5.0} if topo.ha else {}),
            # TLS to MariaDB, verified against our CA; through the local DB routing the server name is
            # 127.0.0.1, so there only the CA is checked, not the name.
            **({"tls_ca_file": str(layout.ca_cert), "tls_check_hostname": not topo.ha} if topo.tls.enabled else {}),
        },
    }
    return json.dumps(config, indent=2) + "\n"
