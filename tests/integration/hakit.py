"""Helpers for HA integration tests: the hardened topology with fast timings; the split-brain monitor and the
check that every acknowledged write survived live in webinfra.proving.chaos.splitbrain (re-exported here)."""

from __future__ import annotations

from pathlib import Path

from webinfra.model.relocate import amended, example_file, relocated
from webinfra.proving.chaos.splitbrain import SplitBrainMonitor, missing_writes

__all__ = ["ROOT", "SplitBrainMonitor", "hardened_topology", "missing_writes"]

ROOT = Path(__file__).resolve().parents[2]


def hardened_topology(name: str, octet: int, extra: str = "") -> str:
    """examples/hardened.toml with its own name and subnet, and fast LB health checks. TLS and the firewall
    (on by default) are off here: these tests exercise failover with plain-HTTP clients. The hardened example
    with both on is checked by test_security.py."""
    text = relocated(example_file("hardened.toml").read_text(), name, f"198.18.{octet}.0/24")
    text = amended(text, {"firewall": False, "tls": {"enabled": False}, "lb": {"check_interval_ms": 500}})
    return text + "\n" + extra
