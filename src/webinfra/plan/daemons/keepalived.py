"""keepalived on an LB pair: `keepalived.conf`, its HAProxy check script and (with monitoring) the notify
script that exports its VRRP state to node_exporter's textfile collector. Pure (its start hook and the
wait for the VIP: daemons/keepalived.py)."""

from __future__ import annotations

from webinfra.model import Role, Topology
from webinfra.plan.render import NOTHING, Contribution, HostContext, render
from webinfra.plan.spec import FileSpec, Probe, ServiceSpec
from webinfra.state import HostDirs

KEEPALIVED_TEXTFILE = "keepalived.prom"


VRRP_STATES = ("MASTER", "BACKUP", "FAULT", "STOP")


# keepalived runs this on every VRRP state change (`notify`: INSTANCE <name> <state> <priority>) and when it
# stops (`notify_stop`); node_exporter's textfile collector exports what it writes. The label is `vrrp_instance`:
# `instance` is the scrape target's own label. Written to a temporary file
# then renamed, so a scrape never reads half a file. (Its own comment names plan/exporters.py, where it lived:
# kept, since the rendered file must not change.)
KEEPALIVED_NOTIFY = """#!/bin/sh
# keepalived's VRRP state, for node_exporter's textfile collector (webinfra: plan/exporters.py).
out={out}
tmp="$out.$$"
{{
  echo "# HELP keepalived_vrrp_state 1 for the VRRP state keepalived has now"
  echo "# TYPE keepalived_vrrp_state gauge"
  for s in {states}; do
    if [ "$s" = "$3" ]; then v=1; else v=0; fi
    echo "keepalived_vrrp_state{{vrrp_instance=\\"$2\\",state=\\"$s\\"}} $v"
  done
  echo "# HELP keepalived_vrrp_state_change_timestamp_seconds When the state last changed"
  echo "# TYPE keepalived_vrrp_state_change_timestamp_seconds gauge"
  echo "keepalived_vrrp_state_change_timestamp_seconds{{vrrp_instance=\\"$2\\"}} $(date +%s)"
}} > "$tmp" && mv "$tmp" "$out"
"""


def keepalived_state_exported(topo: Topology, name: str) -> bool:
    return topo.monitoring_host is not None and topo.lb_pair and topo.host(name).has(Role.LB)


def keepalived_notify_file(topo: Topology, name: str, dirs: HostDirs) -> FileSpec | None:
    """The notify script keepalived.conf names (None: no monitoring, or no keepalived on this host)."""
    if not keepalived_state_exported(topo, name):
        return None
    script = KEEPALIVED_NOTIFY.format(out=dirs.run / KEEPALIVED_TEXTFILE, states=" ".join(VRRP_STATES))
    return FileSpec(dirs.etc / "keepalived-notify.sh", script, 0o755)


CHECK_HAPROXY = """#!/bin/sh
# keepalived's health check of this LB's HAProxy: its master process (pid file) is alive.
pid=$(cat {pidfile} 2>/dev/null) || exit 1
exec kill -0 "$pid"
"""


def keepalived_files_and_service(topo: Topology, name: str, dirs: HostDirs) -> tuple[list[FileSpec], ServiceSpec]:
    lbs = topo.with_role(Role.LB)
    index = [h.name for h in lbs].index(name)
    vip = topo.vip
    assert vip is not None
    cfg = dirs.etc / "keepalived.conf"
    check = dirs.etc / "check-haproxy.sh"
    notify = keepalived_notify_file(topo, name, dirs)
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


def contribute(ctx: HostContext) -> Contribution:
    if not (ctx.spec.has(Role.LB) and ctx.topo.lb_pair):
        return NOTHING
    files, service = keepalived_files_and_service(ctx.topo, ctx.name, ctx.dirs)
    return Contribution(files, [service])
