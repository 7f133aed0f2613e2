"""The site's app (webinfra.site under uvicorn) on hosts with the `app` role: `site.json` and the command
line, running the release `webinfra deploy` recorded. Pure."""

from __future__ import annotations

import json

from webinfra.model import Role, Topology
from webinfra.plan.render import NOTHING, Contribution, HostContext
from webinfra.plan.spec import AppRelease, FileSpec, Probe, ServiceSpec
from webinfra.state import HostDirs, Layout

SITE_CONFIG_ENV = "WEBINFRA_SITE_CONFIG"


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


METRICS_DIR_ENV = "WEBINFRA_METRICS_DIR"


def site_metrics_env(topo: Topology, dirs: HostDirs) -> tuple[tuple[str, str], ...]:
    """With several uvicorn workers, the app's metrics live in files that every worker writes and any worker
    reads back on a scrape (prometheus_client's multiprocess mode); one worker keeps them in memory."""
    if topo.app.workers <= 1:
        return ()
    return ((METRICS_DIR_ENV, str(dirs.tmp / "app-metrics")),)


def contribute(ctx: HostContext) -> Contribution:
    topo, dirs, name = ctx.topo, ctx.dirs, ctx.name
    if not ctx.spec.has(Role.APP):
        return NOTHING
    site_json = dirs.etc / "site.json"
    release = ctx.releases.get(name, AppRelease(topo.app.version))
    # 0600: it names the cluster's secret files (the files themselves are 0600 in a 0700 directory).
    config = FileSpec(site_json, render_site_config(topo, ctx.layout, name, release.version), mode=0o600)
    # A deployed release: uvicorn imports `webinfra.site` from the release directory first.
    app_dir = ("--app-dir", str(release.app_dir)) if release.app_dir is not None else ()
    service = ServiceSpec(
        name="app",
        argv=(
            ctx.python,
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
        probe=Probe("http", ctx.address, topo.app.port, "/healthz", topo.site.name),
        pidfile=dirs.run / "app.svc.pid",
        log=dirs.log / "app.log",
        configs=(site_json,),
        env=((SITE_CONFIG_ENV, str(site_json)), *site_metrics_env(topo, dirs)),
        stop_timeout=10.0,
    )
    return Contribution([config], [service])
