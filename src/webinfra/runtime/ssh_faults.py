"""The shell an `SshMachine` sends to inject and undo a fault on a server (`webinfra fail/recover`, chaos):
pure functions of their inputs, unit-tested without a server.

    partition_ruleset   an nftables table of its own dropping everything but loopback and the management SSH
    slow_script         netem delay on the cluster interface, the management flow excepted (exit 4: no netem)
    cpu_quota_script    the fallback for `slow` on a kernel without sch_netem: webinfra's units held to a CPU share
    heal_script         all of the above undone, frozen units resumed
"""

from __future__ import annotations

import shlex

from webinfra.runtime.machine import SLOW_CPU_PERCENT, SLOW_DELAY_MS

UNIT_PREFIX = "webinfra-"  # webinfra's systemd units (servers/units.py)
FAULT_TABLE = "webinfra_fault"  # nft table of `partition`, in family inet
SLOW_DELAY = f"{SLOW_DELAY_MS}ms"
# The webinfra units loaded on the server, one per line.
_UNITS = f"systemctl list-units '{UNIT_PREFIX}*.service' --all --plain --no-legend | awk '{{print $1}}'"


def partition_ruleset(management: str, ssh_port: int) -> str:
    """nft input: a table that drops every packet but loopback and the management machine's SSH flow. Its
    own table, priority before the host's firewall: `heal` deletes it and leaves the firewall alone."""
    family = "ip6" if ":" in management else "ip"
    return (
        f"table inet {FAULT_TABLE}\ndelete table inet {FAULT_TABLE}\n"  # replace: declare, delete, define
        f"table inet {FAULT_TABLE} {{\n"
        "  chain input {\n    type filter hook input priority -10; policy drop;\n"
        f'    iif "lo" accept\n    {family} saddr {management} tcp dport {ssh_port} accept\n  }}\n'
        "  chain output {\n    type filter hook output priority -10; policy drop;\n"
        f'    oif "lo" accept\n    {family} daddr {management} tcp sport {ssh_port} accept\n  }}\n'
        "}\n"
    )


def slow_script(address: str, management: str, delay: str = SLOW_DELAY) -> str:
    """Shell: netem `delay` on what the interface holding `address` sends, except to the management machine
    (a prio qdisc whose every band-2 packet goes through netem; a filter puts the management flow in band 0)."""
    a, mgmt = shlex.quote(address), shlex.quote(management)
    return (
        f"set -e; dev=$(ip -o addr show to {a} | awk '{{print $2; exit}}'); "
        f'[ -n "$dev" ] || {{ echo "no interface holds {address}" >&2; exit 3; }}; '
        # exit 4: this kernel lacks a qdisc it needs (sch_prio or sch_netem, as in many containers)
        'if ! tc qdisc replace dev "$dev" root handle 1: prio bands 3 priomap 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 '
        "2>/tmp/.webinfra-netem; then cat /tmp/.webinfra-netem >&2; exit 4; fi; "
        f'if ! tc qdisc add dev "$dev" parent 1:3 handle 30: netem delay {delay} 2>/tmp/.webinfra-netem; then '
        'tc qdisc del dev "$dev" root; cat /tmp/.webinfra-netem >&2; exit 4; fi; '
        f'tc filter add dev "$dev" parent 1: protocol ip prio 1 u32 match ip dst {mgmt}/32 flowid 1:1; echo "$dev"'
    )


def heal_script(address: str) -> str:
    """Shell: delete the partition table and a netem root qdisc (ours), resume frozen webinfra units."""
    a = shlex.quote(address)
    return (
        f"nft delete table inet {FAULT_TABLE} 2>/dev/null; "
        f"dev=$(ip -o addr show to {a} | awk '{{print $2; exit}}'); "
        'if [ -n "$dev" ] && tc qdisc show dev "$dev" 2>/dev/null | grep -q netem; then '
        'tc qdisc del dev "$dev" root; fi; '
        f"systemctl kill -s CONT --kill-who=all '{UNIT_PREFIX}*.service' 2>/dev/null; "
        f'for u in $({_UNITS}); do systemctl set-property --runtime "$u" CPUQuota= 2>/dev/null; done; true'
    )


def cpu_quota_script(percent: int = SLOW_CPU_PERCENT) -> str:
    """Shell: every running webinfra unit held to `percent` % of one CPU, until heal (`--runtime`: a reboot
    forgets it too); prints how many. Exit 6, the quotas lifted again, where the cpu cgroup controller is not
    there to enforce them (systemd accepts the setting all the same, e.g. in a container without delegation):
    a fault that does nothing must not pass for one."""
    return (
        f"n=0; for u in $(systemctl list-units '{UNIT_PREFIX}*.service' --state=running --plain --no-legend "
        "| awk '{print $1}'); do "
        f'systemctl set-property --runtime "$u" CPUQuota={percent}% && n=$((n+1)); done; '
        '[ "$n" -gt 0 ] || { echo "no running webinfra unit" >&2; exit 5; }; '
        "if ! grep -qw cpu /sys/fs/cgroup/system.slice/cgroup.controllers 2>/dev/null; then "
        f'for u in $({_UNITS}); do systemctl set-property --runtime "$u" CPUQuota= ; done; '
        'echo "the cpu cgroup controller is not available here (CPUQuota would not be enforced)" >&2; exit 6; fi; '
        'echo "$n"'
    )
