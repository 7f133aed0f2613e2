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
# then renamed, so a scrape never reads half a file; 0644 whatever keepalived's umask, since on servers the node
# exporter reads it as its own user (`prometheus`). (Its own comment names plan/exporters.py, where it lived:
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
}} > "$tmp" && chmod 644 "$tmp" && mv "$tmp" "$out"
"""


def keepalived_state_exported(topo: Topology, name: str) -> bool:
    return topo.monitoring_host is not None and topo.lb_pair and topo.host(name).has(Role.LB)


def keepalived_notify_file(topo: Topology, name: str, dirs: HostDirs) -> FileSpec | None:
    """The notify script keepalived.conf names (None: no monitoring, or no keepalived on this host)."""
    if not keepalived_state_exported(topo, name):
        return None
    script = KEEPALIVED_NOTIFY.format(out=dirs.run / KEEPALIVED_TEXTFILE, states=" ".join(VRRP_STATES))
    return FileSpec(dirs.etc / "keepalived-notify.sh", script, 0o755)


# keepalived runs this every second (it cannot run a script more often, and its track_process, which would
# react at once, works only in the initial network namespace). So on the LB holding the VIP the script
# looks every 0.1 s for 0.75 s of each second and fails the moment HAProxy is gone: a crash is seen within
# ~0.1 s (0.35 s at worst) instead of up to 1 s, and the peer takes the VIP that much sooner (lb-crash).
# keepalived starts a run a second after the last one started and skips that tick while a run is still
# going: hence 0.75 s and one last sleep, under 1 s. An LB without the VIP looks once and answers at
# once: its HAProxy serves nobody, and keepalived waits for the first answer before it may take the VIP
# (a 0.75 s answer would delay `up` by that much). bash, not sh: $EPOCHREALTIME and the loop over
# /proc/net/fib_trie (this namespace's local addresses) need no process per look.
CHECK_HAPROXY = """#!/bin/bash
# keepalived's health check of this LB's HAProxy: its master process (pid file) is alive. Run every
# second; while this LB holds the VIP it looks every 0.1 s for 0.75 s and fails as soon as HAProxy is gone.
read -r pid 2>/dev/null < {pidfile} || exit 1
kill -0 "$pid" 2>/dev/null || exit 1
holds=0
while read -r line; do
    [[ $line == "|-- {vip}" ]] && {{ holds=1; break; }}
done < /proc/net/fib_trie
(( holds )) || exit 0
start=${{EPOCHREALTIME/./}}
while (( ${{EPOCHREALTIME/./}} - start < 750000 )); do
    sleep 0.1
    # Gone: fail, unless HAProxy was restarted meanwhile (a new pid in the file, alive).
    kill -0 "$pid" 2>/dev/null || {{ read -r pid 2>/dev/null < {pidfile} && kill -0 "$pid" 2>/dev/null; }} || exit 1
done
exit 0
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
    check_file = FileSpec(check, CHECK_HAPROXY.format(pidfile=dirs.run / "haproxy.pid", vip=vip), 0o755)
    return [FileSpec(cfg, text), check_file, *((notify,) if notify else ())], service


def contribute(ctx: HostContext) -> Contribution:
    if not (ctx.spec.has(Role.LB) and ctx.topo.lb_pair):
        return NOTHING
    files, service = keepalived_files_and_service(ctx.topo, ctx.name, ctx.dirs)
    peers = tuple(str(ctx.topo.address_of(h.name)) for h in ctx.topo.with_role(Role.LB) if h.name != ctx.name)
    return Contribution(files, [service], vrrp_peers=peers)
