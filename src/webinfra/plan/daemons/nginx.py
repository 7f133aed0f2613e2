"""nginx on hosts with the `web` role: `nginx.conf` (TLS from HAProxy, the app upstreams, the stub_status
page the nginx exporter reads) and the service. Pure."""

from __future__ import annotations

from webinfra.model import Role, Topology
from webinfra.plan.render import NOTHING, Contribution, HostContext, host_tls, render
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec

NGINX_STATUS_PATH = "/stub_status"


def nginx_status(topo: Topology) -> dict[str, object] | None:
    """Values for nginx.conf.j2's stub_status server (None: no monitoring, no status page)."""
    if topo.monitoring_host is None:
        return None
    return {"port": topo.monitoring.nginx_status_port, "path": NGINX_STATUS_PATH}


def contribute(ctx: HostContext) -> Contribution:
    topo, layout, name, dirs = ctx.topo, ctx.layout, ctx.name, ctx.dirs
    if not ctx.spec.has(Role.WEB):
        return NOTHING
    conf = dirs.etc / "nginx.conf"
    apps = [
        {"address": str(topo.address_of(a.name)), "port": topo.app.port, "down": a.name in ctx.draining}
        for a in topo.app_upstreams_of(name)
    ]
    text = render(
        "nginx.conf.j2",
        **ctx.template_values(),
        workers=1,
        bind_address="0.0.0.0",
        port=topo.web.port,
        site_name=topo.site.name,
        apps=apps,
        max_body_kib=topo.web.max_body_kib,
        tls=host_tls(topo, layout, name) if topo.backend_tls else None,
        status=nginx_status(topo),
    )
    service = ServiceSpec(
        name="nginx",
        argv=("nginx", "-c", str(conf), "-p", str(dirs.root), "-e", str(dirs.log / "nginx-error.log")),
        probe=Probe(
            "https" if topo.backend_tls else "http",
            ctx.address,
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
    return Contribution([FileSpec(conf, text)], [service])
