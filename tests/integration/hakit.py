"""Helpers for HA integration tests: the hardened topology with fast timings; the split-brain monitor and the
check that every acknowledged write survived live in webinfra.proving.chaos.splitbrain (re-exported here)."""

from __future__ import annotations

import re
from pathlib import Path

from webinfra.proving.chaos.splitbrain import SplitBrainMonitor, missing_writes

__all__ = ["ROOT", "SplitBrainMonitor", "hardened_topology", "missing_writes"]

ROOT = Path(__file__).resolve().parents[2]


def hardened_topology(name: str, octet: int, extra: str = "") -> str:
    """examples/hardened.toml with its own name and subnet, and fast LB health checks. TLS and the firewall
    (on by default) are off here: these tests exercise failover with plain-HTTP clients. The hardened example
    with both on is checked by test_security.py."""
    text = (ROOT / "examples" / "hardened.toml").read_text()
    plain = f'name = "{name}"\nfirewall = false\n\n[tls]\nenabled = false'
    text = re.sub(r'^name = "webinfra"$', plain, text, count=1, flags=re.M)
    text = text.replace("198.18.0.", f"198.18.{octet}.")
    text = re.sub(r'^route_writes_to = "any"$', 'route_writes_to = "any"\ncheck_interval_ms = 500', text, flags=re.M)
    return text + "\n" + extra
