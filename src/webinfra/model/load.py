"""Read a topology file (TOML) into a `Topology`, or raise one-line `TopologyError`s.

`DEFAULT_TOPOLOGY` is the built-in topology used when no file is given: the hardened design (LB pair,
HA database, HTTPS, firewall) plus a monitoring host. The design as drawn is examples/seed.toml.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from webinfra.model.checks import check_topology
from webinfra.model.errors import NO_VALUE, TopologyError
from webinfra.model.topology import Topology

DEFAULT_TOPOLOGY_NAME = "<built-in default>"


def _default_text() -> str:
    return resources.files("webinfra.model").joinpath("default.toml").read_text()


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # A quoted TOML key may hold a newline or tab: quote it so the error stays on one line.
            text = str(part) if str(part).isprintable() else repr(str(part))
            out += ("." if out else "") + text
    return out


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return NO_VALUE
    return data


# Bounds that keep validation quick and a mistaken file (a generated list gone wrong) from hanging a command:
# far above what one machine can emulate, far below what would take long to check.
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_HOSTS = 4096


def _pydantic_errors(exc: ValidationError, data: Any, source: str) -> list[TopologyError]:
    errors = []
    found = [
        (tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))), e) for e in exc.errors()
    ]
    for loc, err in found:
        # pydantic also counts a list whose items failed as too short: that is not a problem of its own.
        if err["type"] == "too_short" and any(other[: len(loc)] == loc and len(other) > len(loc) for other, _ in found):
            continue
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        errors.append(TopologyError(source, _field_path(loc) or "(top level)", _lookup(data, loc), message))
    return errors


def parse_topology(text: str, source: str = "<string>") -> Topology:
    """Parse and validate TOML text. `source` names the file in error messages. The `TopologyError` raised
    names the first problem and carries the others (`.all_errors`)."""
    if len(text) > MAX_FILE_BYTES:
        raise TopologyError(source, "", NO_VALUE, f"{len(text)} bytes: a topology file is at most {MAX_FILE_BYTES}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(source, "", NO_VALUE, f"invalid TOML: {exc}") from None
    hosts = data.get("hosts")
    if isinstance(hosts, list) and len(hosts) > MAX_HOSTS:
        raise TopologyError(source, "hosts", NO_VALUE, f"{len(hosts)} hosts: at most {MAX_HOSTS}")
    try:
        topo = Topology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError.of_all(_pydantic_errors(exc, data, source)) from None
    problems = check_topology(topo)
    if problems:
        raise TopologyError.of_all([TopologyError(source, field, value, message) for field, value, message in problems])
    return topo


def load_topology(path: str | Path | None) -> Topology:
    """Load a topology file, or the built-in default when `path` is None."""
    if path is None:
        return parse_topology(_default_text(), DEFAULT_TOPOLOGY_NAME)
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TopologyError(str(p), "", NO_VALUE, f"{size} bytes: a topology file is at most {MAX_FILE_BYTES}")
        text = p.read_text()
    except FileNotFoundError:
        raise TopologyError(str(p), "", NO_VALUE, "file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise TopologyError(str(p), "", NO_VALUE, f"cannot read: {exc.__class__.__name__}") from None
    return parse_topology(text, str(p))


DEFAULT_TOPOLOGY = _default_text
