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

from webinfra.model.errors import NO_VALUE, TopologyError
from webinfra.model.topology import Topology, check_topology

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


def parse_topology(text: str, source: str = "<string>") -> Topology:
    """Parse and validate TOML text. `source` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(source, "", NO_VALUE, f"invalid TOML: {exc}") from None
    try:
        topo = Topology.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        raise TopologyError(source, _field_path(loc) or "(top level)", _lookup(data, loc), message) from None
    problems = check_topology(topo)
    if problems:
        field, value, message = problems[0]
        raise TopologyError(source, field, value, message)
    return topo


def load_topology(path: str | Path | None) -> Topology:
    """Load a topology file, or the built-in default when `path` is None."""
    if path is None:
        return parse_topology(_default_text(), DEFAULT_TOPOLOGY_NAME)
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise TopologyError(str(p), "", NO_VALUE, "file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise TopologyError(str(p), "", NO_VALUE, f"cannot read: {exc.__class__.__name__}") from None
    return parse_topology(text, str(p))


DEFAULT_TOPOLOGY = _default_text
