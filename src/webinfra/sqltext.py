"""SQL text helpers shared by the cluster side (daemons/mariadb.py) and the HA agent, which imports
nothing else of webinfra (it runs alone on a DB host; see the import-linter contracts in pyproject.toml)."""

from __future__ import annotations


def quote(value: str) -> str:
    """A SQL string literal. Only for values we generate or validate (names, passwords)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
