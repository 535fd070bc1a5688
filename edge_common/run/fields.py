"""Typed reads of one parsed JSON object, each failure naming the field (`data.n_train`).

The run manifest's records are built through this, so a wrong type is one message that says
where, not a KeyError or TypeError far from the file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_MISSING = object()


class ManifestError(ValueError):
    """A manifest field is missing or has the wrong type or value (the message names it)."""


def kind(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


class Fields:
    """One JSON object's fields, read with their types checked."""

    def __init__(self, value: object, where: str = "") -> None:
        if not isinstance(value, dict):
            raise ManifestError(f"{where or 'the manifest'} is a JSON {kind(value)}, not an object")
        self.d: dict[str, Any] = value
        self.where = where

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def raw(self, key: str, optional: bool = False) -> Any:
        value = self.d.get(key, _MISSING)
        if value is _MISSING or (optional and value is None):
            if optional:
                return None
            raise ManifestError(f"no '{self.name(key)}'")
        return value

    def _bad(self, key: str, expected: str, value: object) -> ManifestError:
        return ManifestError(f"'{self.name(key)}' must be {expected}, not a JSON {kind(value)}")

    def text(self, key: str, optional: bool = False) -> str | None:
        value = self.raw(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self._bad(key, "a string", value)
        return value

    def integer(self, key: str, lo: int | None = None) -> int:
        value = self.raw(key)
        if not is_int(value):
            raise self._bad(key, "an integer", value)
        if lo is not None and value < lo:
            raise ManifestError(f"'{self.name(key)}' must be >= {lo}, not {value}")
        return value

    def number(self, key: str, optional: bool = False) -> float | None:
        value = self.raw(key, optional)
        if value is None and optional:
            return None
        if not is_number(value):
            raise self._bad(key, "a finite number", value)
        return float(value)

    def flag(self, key: str, default: bool | None = None) -> bool:
        """A boolean; with a `default`, the key may be absent (a field added later)."""
        value = self.raw(key, optional=default is not None)
        if value is None and default is not None:
            return default
        if not isinstance(value, bool):
            raise self._bad(key, "true or false", value)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.array(key)
        if not all(isinstance(v, str) for v in value):
            raise ManifestError(f"'{self.name(key)}' must be a list of strings")
        return tuple(value)

    def numbers(self, key: str, lo: float, hi: float) -> tuple[float, ...]:
        value = self.array(key)
        if not all(is_number(v) and lo <= v <= hi for v in value):
            raise ManifestError(f"'{self.name(key)}' must be a list of numbers in [{lo}, {hi}]")
        return tuple(float(v) for v in value)

    def array(self, key: str) -> list:
        value = self.raw(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list", value)
        return value

    def obj(self, key: str, optional: bool = False) -> Fields | None:
        value = self.raw(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            raise self._bad(key, "an object", value)
        return Fields(value, self.name(key))

    def mapping(self, key: str, optional: bool = False) -> Mapping[str, Any] | None:
        """A free-form JSON object (a report, the history), kept as it was parsed."""
        obj = self.obj(key, optional)
        return None if obj is None else obj.d

    def objects(self, key: str) -> list[Fields]:
        """A list of JSON objects."""
        name = self.name(key)
        return [Fields(v, f"{name}[{i}]") for i, v in enumerate(self.array(key))]


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
