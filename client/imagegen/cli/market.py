"""A Market model's ``input`` object from the command line: ``--input-json``, the prompt and each
``--input KEY=VALUE``, typed by the model's fields in the catalogue (GET /models) when it could be read."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# JSON Schema's name for each kind of JSON value (an integer is a number too)
_KINDS: tuple[tuple[type, tuple[str, ...]], ...] = (
    (bool, ("boolean",)),
    (int, ("integer", "number")),
    (float, ("number",)),
    (str, ("string",)),
    (list, ("array",)),
    (dict, ("object",)),
    (type(None), ("null",)),
)


def input_pair(text: str) -> tuple[str, str]:
    """``--input KEY=VALUE``, VALUE as written (it is typed once the model's fields are known)."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def input_json(text: str) -> dict[str, Any]:
    """``--input-json``: a JSON object, given inline or as @path."""
    source = text
    if text.startswith("@"):
        try:
            source = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]!r}: {exc.strerror or exc}") from None
    try:
        parsed = json.loads(source)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of the model's input fields")
    return parsed


def build_input(
    given: dict[str, Any] | None,
    prompt: str | None,
    pairs: Sequence[tuple[str, str]],
    schema: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """``--input-json`` (``given``), then the prompt as ``prompt``, then each ``--input`` over them; None
    when there is none of them. ``schema`` (the model's ``input`` in GET /models, None when unknown) types
    each VALUE: see :func:`typed_value`. A field that takes an array gets a lone VALUE as its one item,
    and the same KEY given again adds an item."""
    if given is None and prompt is None and not pairs:
        return None
    built = dict(given or {})
    if prompt is not None:
        built["prompt"] = prompt
    fields = (schema or {}).get("properties") or {}
    seen: set[str] = set()
    for key, text in pairs:
        field = fields.get(key)
        value = typed_value(text, field)
        if field is not None and "array" in json_types(field):
            items = value if isinstance(value, list) else [value]
            value = [*built[key], *items] if key in seen and isinstance(built.get(key), list) else items
        built[key] = value
        seen.add(key)
    return built


def typed_value(text: str, field: dict[str, Any] | None) -> Any:
    """VALUE of ``--input KEY=VALUE``: its JSON value when it parses (``4``, ``true``, ``["https://..."]``),
    else the text itself; but the text itself when the field takes a string and not that kind of value
    (``seed=42`` for a seed written as text), and one item typed by the items of a field that takes an
    array."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if field is None:
        return parsed
    types = json_types(field)
    if not types or _kind_allowed(parsed, types):
        return parsed
    if "array" in types:
        return typed_value(text, field.get("items"))
    if "string" in types:
        return text
    return parsed


def json_types(field: dict[str, Any]) -> set[str]:
    """The JSON types a field's schema allows (``type``, or those of its ``anyOf`` options)."""
    found: set[str] = set()
    for option in [field, *field.get("anyOf", [])]:
        kind = option.get("type")
        found.update(kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else [])
        if "enum" in option and "type" not in option:
            found.update(_json_type(value) for value in option["enum"])
    return found


def _json_type(value: Any) -> str:
    return next(names[0] for python, names in _KINDS if isinstance(value, python))


def _kind_allowed(value: Any, types: set[str]) -> bool:
    names = next(names for python, names in _KINDS if isinstance(value, python))
    return bool(set(names) & types)
