"""Reading the fields of a decoded JSON object by hand, noting every problem rather than stopping at one.

The upstream's replies are read with this (upstream_replies.py) instead of pydantic, which the Lambdas
off the API path cannot afford to import. A problem reads "<where>: <what would fit>", for example
"data.taskId: must be 1 to 128 letters, digits, '_' or '-'".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MISSING: Any = object()


class InvalidReply(ValueError):
    """A document that does not have the shape we read: `problems` lists each field that does not fit."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems) or ["does not have the expected shape"]
        super().__init__("; ".join(self.problems))


class Refused(Exception):
    """A value that does not fit its field; the message says what would."""


def kind(value: Any) -> str:
    """The JSON kind of a decoded value, as a problem names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def refused(rule: str, value: Any, *kinds: type) -> Refused:
    """Refused with the rule, naming what was given when its kind is not one the field reads at all."""
    wrong_kind = not isinstance(value, kinds) or isinstance(value, bool)
    return Refused(f"{rule}, not {kind(value)}" if wrong_kind else rule)


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path and key else path or key


class Fields:
    """One JSON object's fields. Each field is named by its keys: aliases, the first one present wins."""

    def __init__(self, document: Any, path: str, problems: list[str]) -> None:
        self._path = path
        self._problems = problems
        self._before = len(problems)
        self._document: dict[str, Any] | None = document if isinstance(document, dict) else None
        if self._document is None:  # nothing else is looked at: its fields cannot be missing or wrong
            self._note("", f"must be an object, not {kind(document)}")

    @property
    def clean(self) -> bool:
        """No problem found in this object (nor in the objects read inside it)."""
        return len(self._problems) == self._before

    def _note(self, key: str, rule: str) -> None:
        where = _where(self._path, key)
        self._problems.append(f"{where}: {rule}" if where else rule)

    def _lookup(self, keys: tuple[str, ...]) -> tuple[str, Any]:
        for key in keys:
            if self._document is not None and key in self._document:
                return key, self._document[key]
        return keys[0], _MISSING

    def read[T](self, keys: tuple[str, ...], convert: Callable[[Any], T], default: T) -> T:
        """The field converted; the default when it is absent, or (noted) when it does not fit."""
        key, value = self._lookup(keys)
        if value is _MISSING:
            return default
        try:
            return convert(value)
        except Refused as problem:
            self._note(key, str(problem))
            return default

    def require[T](self, keys: tuple[str, ...], convert: Callable[[Any], T]) -> T | None:
        key, value = self._lookup(keys)
        if value is _MISSING:
            if self._document is not None:
                self._note(key, "is required")
            return None
        return self.read(keys, convert, None)

    def nested[T](
        self,
        keys: tuple[str, ...],
        reader: Callable[[Any, str, list[str]], T | None],
        *,
        nullable: bool,
    ) -> T | None:
        """An object inside this one, read by `reader` (which notes its own problems under this path)."""
        key, value = self._lookup(keys)
        if value is _MISSING:
            if not nullable and self._document is not None:
                self._note(key, "is required")
            return None
        if value is None and nullable:
            return None
        return reader(value, _where(self._path, key), self._problems)

    def strings(self, keys: tuple[str, ...]) -> list[str] | None:
        """An optional array of strings; each item that is not one is noted as [index]."""
        key, value = self._lookup(keys)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, list):
            self._note(key, f"must be an array of strings, not {kind(value)}")
            return None
        wrong = [index for index, item in enumerate(value) if not isinstance(item, str)]
        for index in wrong:
            self._note(f"{key}[{index}]", f"must be a string, not {kind(value[index])}")
        return None if wrong else list(value)
