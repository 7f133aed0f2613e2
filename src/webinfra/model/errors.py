"""The one error a bad topology raises: it names the file, the field and the value, on one line."""

from __future__ import annotations

import json
from typing import Any

from webinfra.errors import EXIT_USAGE, WebinfraError


class TopologyError(WebinfraError, ValueError):
    """A topology that cannot be used. `str()` is the single line the CLI prints before exiting 2."""

    exit_code = EXIT_USAGE

    def __init__(self, source: str, field: str, value: Any, message: str) -> None:
        self.source = source
        self.field = field
        self.value = value
        self.message = message
        # The other problems of the same file (`webinfra validate` prints them all; other commands the first).
        self.more: tuple[TopologyError, ...] = ()
        super().__init__(str(self))

    @classmethod
    def of_all(cls, errors: list[TopologyError]) -> TopologyError:
        first = errors[0]
        first.more = tuple(errors[1:])
        return first

    @property
    def all_errors(self) -> tuple[TopologyError, ...]:
        return (self, *self.more)

    def to_json(self) -> dict[str, Any]:
        value = None if self.value is _NO_VALUE else self.value
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        return {"file": self.source, "field": self.field, "value": value, "message": self.message}

    def __str__(self) -> str:
        where = f"{self.source}: {self.field}" if self.field else self.source
        if self.value is _NO_VALUE:
            return f"{where}: {self.message}"
        return f"{where} = {_short(self.value)}: {self.message}"


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


_NO_VALUE: Any = _NoValue()
NO_VALUE: Any = _NO_VALUE


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
