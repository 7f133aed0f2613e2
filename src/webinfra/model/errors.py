"""The one error a bad topology raises: it names the file, the field and the value, on one line."""

from __future__ import annotations

from typing import Any


class TopologyError(ValueError):
    """A topology that cannot be used. `str()` is the single line the CLI prints before exiting 2."""

    def __init__(self, source: str, field: str, value: Any, message: str) -> None:
        self.source = source
        self.field = field
        self.value = value
        self.message = message
        super().__init__(str(self))

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
