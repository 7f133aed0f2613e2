"""The host's firewall (nftables, table `inet webinfra`, in the host's own namespace): load the ruleset the
plan rendered (plan/firewall.py), checked with `nft -c` first; remove it when the topology turns it off;
read back what is loaded. The fault-injection table (`inet webinfra_fault`) is never touched here.
"""

from __future__ import annotations

from webinfra.plan.firewall import TABLE, delete_rules
from webinfra.plan.spec import FileSpec, HostPlan
from webinfra.runtime import CommandError, Machine
from webinfra.services.supervisor import ServiceError

RULES_FILE = "firewall.nft"


def rules_of(plan: HostPlan) -> FileSpec | None:
    """The host's rendered ruleset, or None when the topology has `firewall = false`."""
    return next((f for f in plan.files if f.path.name == RULES_FILE and f.path.parent == plan.dirs.etc), None)


def loaded(host: Machine) -> bool:
    return host.run(["nft", "list", "table", "inet", TABLE], check=False).returncode == 0


def live(host: Machine) -> str:
    """The table as the kernel has it now ('' when there is none)."""
    proc = host.run(["nft", "list", "table", "inet", TABLE], check=False)
    return proc.stdout if proc.returncode == 0 else ""


def apply(host: Machine, plan: HostPlan) -> str:
    """Bring the host's firewall in line with the plan. Returns what was done: 'loaded', 'unchanged',
    'removed' or 'none' (no firewall wanted, none there). Idempotent; the swap is one nft transaction."""
    spec = rules_of(plan)
    if spec is None:
        (plan.dirs.etc / RULES_FILE).unlink(missing_ok=True)  # a stale ruleset would only mislead
        if not loaded(host):
            return "none"
        host.run(["nft", "-f", "-"], input=delete_rules())
        return "removed"
    changed = host.put_file(spec.path, spec.content, spec.mode)
    if not changed and loaded(host):
        return "unchanged"
    try:
        host.run(["nft", "-c", "-f", str(spec.path)])
    except CommandError as exc:
        raise ServiceError(
            f"{plan.name}: firewall ruleset {spec.path} refused by `nft -c`: {exc.stderr.strip()}"
        ) from None
    host.run(["nft", "-f", str(spec.path)])
    return "loaded"
